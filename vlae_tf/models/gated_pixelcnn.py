"""The gated PixelCNN decoder with an exact A x B window (the CIFAR-10 experiments).

`GatedPixelCNN`, the decoder of the CIFAR-10 experiments: gated vertical and horizontal stacks
(van den Oord et al. 2016, no blind spot) whose layers are arranged so that pixel (i, j) sees
exactly an A x B window, as defined in the paper:

      the A (wide) x B (tall) block directly above the pixel, columns j - L .. j + R,
      plus L = ceil((A - 1) / 2) pixels to its left, where R = A - 1 - L.

B - 1 vertical layers (the first sees 2 rows, every later one adds a row; B = 1 uses one layer
of height 1) and L horizontal layers (each adds one pixel on the left), which gives the paper's
layer counts: 4x2 = 1 vertical + 2 horizontal, 5x3 = 2 + 2, 7x4 = 3 + 3. The two stacks merge
after their window layers; the gated ResNet blocks that follow are 1x1, so they add no pixels.
With `grayscale=True` the stacks see only 0.299 R + 0.587 G + 0.114 B of each window pixel (the
paper's grayscale window), so colour has to go through z.

The shared pieces are decoder_ops.py's (gates, 1x1 convolutions) and autoregressive_sampling.py's
(the samplers and their loops); the binary decoders are pixelcnn.py's. Gin
knows this class as `gated_pixelcnn.GatedPixelCNN` (older runs' `pixelcnn.GatedPixelCNN` is read
through `gin_parsing.current_names`).
"""

import math
from typing import List, Optional, Tuple

import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import masked
from vlae_tf.layers import weight_norm
from vlae_tf.models import autoregressive_sampling
from vlae_tf.models import decoder_ops

# Luma weights of ITU-R BT.601, the paper's grayscale window.
GRAYSCALE_WEIGHTS = (0.299, 0.587, 0.114)


def window_layers(width: int, height: int) -> Tuple[List[dict], List[dict]]:
  """Shifted-convolution settings of the vertical and horizontal stacks of an A x B window.

  Args:
    width: A, the number of columns of the block above the pixel.
    height: B, the number of rows of the block above the pixel.

  Returns:
    (vertical, horizontal): lists of `masked.ShiftedConv2D` keyword arguments (without filters).
    The vertical list composes to rows -B..-1, columns -L..R; the horizontal one to row 0, columns
    -L..-1, with L = ceil((A - 1) / 2) and R = A - 1 - L.

  Raises:
    ValueError: unless width >= 1 and height >= 1.
  """
  if width < 1 or height < 1:
    raise ValueError(f'A window needs width >= 1 and height >= 1, got {width}x{height}.')
  left = math.ceil((width - 1) / 2)
  right = width - 1 - left
  num_vertical = max(1, height - 1)
  # Every vertical layer after the first adds one row and, while columns remain, one column on
  # each side; the first layer takes what is left.
  later_left = [1 if k < left else 0 for k in range(num_vertical - 1)]
  later_right = [1 if k < right else 0 for k in range(num_vertical - 1)]
  first_height = 1 if height == 1 else 2
  vertical = [dict(kernel_height=first_height, rows_above=first_height,
                   cols_left=left - sum(later_left), cols_right=right - sum(later_right))]
  vertical += [dict(kernel_height=2, rows_above=1, cols_left=l, cols_right=r)
               for l, r in zip(later_left, later_right)]
  # The first horizontal layer sees the pixel on the left; every later one adds one more.
  horizontal = [dict(kernel_height=1, rows_above=0, cols_left=1, cols_right=-1)]
  horizontal += [dict(kernel_height=1, rows_above=0, cols_left=1, cols_right=0)] * (left - 1)
  return vertical, horizontal[:left]


@gin.register(module='vlae_tf.gated_pixelcnn')
class GatedPixelCNN(keras.layers.Layer):
  """Gated PixelCNN with vertical and horizontal stacks and an exact A x B window.

      v_1 = gate(VConv_1(x) + C_1(context))          # rows above only
      v_k = v_{k-1} + gate(VConv_k(v_{k-1}) + C_k(context))
      h_1 = gate(HConv_1(x) + D_1(context))          # pixels on the left only
      h_k = h_{k-1} + gate(HConv_k(h_{k-1}) + D_k(context))
      u = Conv1x1(v_last) + h_last
      repeat num_blocks: u = u + Conv1x1(gate(Conv1x1(elu(u)) + E(context) + F(vector)))
      params = Conv1x1(elu(u))

  The vertical stack joins the horizontal one only after the window layers, so that horizontal
  layers do not widen the block above (as a link at every layer would).
  Paper settings (CIFAR-10): 4 gated ResNet blocks of 64 maps; windows 4x2, 5x3, 7x4.
  """

  def __init__(self, num_outputs: int, window_size: Tuple[int, int] = (7, 4),
               filters: int = 64, num_blocks: int = 4, grayscale: bool = False,
               use_weight_norm: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.num_outputs = num_outputs
    self.window_size = tuple(window_size)
    self.filters = filters
    self.num_blocks = num_blocks
    self.grayscale = grayscale
    self.use_weight_norm = use_weight_norm

    vertical, horizontal = window_layers(*self.window_size)
    make_conv = lambda conv: weight_norm.wn(conv, use_weight_norm)
    self.vertical_convs = [masked.ShiftedConv2D(2 * filters, make_conv=make_conv, **settings)
                           for settings in vertical]
    self.horizontal_convs = [masked.ShiftedConv2D(2 * filters, make_conv=make_conv, **settings)
                             for settings in horizontal]
    conv1x1 = decoder_ops.conv1x1
    self.vertical_context = [conv1x1(2 * filters, use_weight_norm) for _ in vertical]
    self.horizontal_context = [conv1x1(2 * filters, use_weight_norm) for _ in horizontal]
    self.vertical_to_horizontal = conv1x1(filters, use_weight_norm)
    self.block_convs = [conv1x1(2 * filters, use_weight_norm) for _ in range(num_blocks)]
    self.block_context = [conv1x1(2 * filters, use_weight_norm) for _ in range(num_blocks)]
    self.block_vector = [keras.layers.Dense(2 * filters) for _ in range(num_blocks)]
    self.block_outputs = [decoder_ops.conv1x1(filters, use_weight_norm) for _ in range(num_blocks)]
    self.output_conv = decoder_ops.conv1x1(num_outputs, use_weight_norm)

  def _stack(self, inputs, convs, context_convs, context):
    hidden = None
    for conv, context_conv in zip(convs, context_convs):
      pre_activation = conv(inputs if hidden is None else hidden)
      if context is not None:
        pre_activation += context_conv(context)
      update = decoder_ops.gate(pre_activation)  # [batch, height, width, filters]
      hidden = update if hidden is None else hidden + update
    return hidden

  def call(self, inputs: tf.Tensor, context: Optional[tf.Tensor] = None,
           vector: Optional[tf.Tensor] = None, training=None):
    """Parameters of p(x_ij | A x B window, z) for every pixel.

    Args:
      inputs: [batch, height, width, channels] pixels, already scaled for the network.
      context: [batch, height, width, context_channels] map computed from z, or None.
      vector: [batch, vector_size] global conditioning, or None.
      training: unused.

    Returns:
      [batch, height, width, num_outputs] likelihood parameters.
    """
    if self.grayscale:
      weights = tf.constant(GRAYSCALE_WEIGHTS, inputs.dtype)
      inputs = tf.reduce_sum(inputs * weights, axis=-1, keepdims=True)  # [b, h, w, 1]
    vertical = self._stack(inputs, self.vertical_convs, self.vertical_context, context)
    hidden = self.vertical_to_horizontal(vertical)
    if self.horizontal_convs:
      hidden += self._stack(inputs, self.horizontal_convs, self.horizontal_context, context)
    for conv, context_conv, vector_dense, output in zip(
        self.block_convs, self.block_context, self.block_vector, self.block_outputs):
      pre_activation = conv(tf.nn.elu(hidden))  # [batch, height, width, 2 * filters]
      if context is not None:
        pre_activation += context_conv(context)
      if vector is not None:
        pre_activation += vector_dense(vector)[:, None, None, :]
      hidden += output(decoder_ops.gate(pre_activation))
    return self.output_conv(tf.nn.elu(hidden))

  def _network_input(self, likelihood, pixels: tf.Tensor) -> tf.Tensor:
    """What the stacks see of drawn pixels [..., C]: network_input(x), or its luma [..., 1]."""
    inputs = likelihood.network_input(pixels)
    if self.grayscale:
      weights = tf.constant(GRAYSCALE_WEIGHTS, inputs.dtype)
      inputs = tf.reduce_sum(inputs * weights, axis=-1, keepdims=True)
    return inputs

  def _vertical_row(self, strip, row, context_terms):
    """The vertical stack at row `row` from the network inputs of the rows above it.

    Evaluates each vertical layer only at the rows that the last layer's row `row` needs: the
    last layer at row `row`, each earlier one at one more row above (n - k rows for the k-th
    of n layers, counting from 1); the first layer reads the B rows above. Rows above the image
    are zero, as the zero padding of `masked.ShiftedConv2D` makes them in `call`.

    Args:
      strip: [B, window_height, W, Cin] network inputs of rows row - window_height .. row - 1,
        zeros for rows above the image.
      row: scalar int, the row being drawn.
      context_terms: per vertical layer, its context term [B, n - 1 + H, W, 2F] padded on top
        with n - 1 rows, or None.

    Returns:
      [B, W, F] the vertical stack's output at row `row`.
    """
    width = strip.shape[2]
    num_layers = len(self.vertical_convs)
    first, later = self.vertical_convs[0], self.vertical_convs[1:]
    if (first.rows_above != first.kernel_height or first.kernel_height != min(2, strip.shape[1])
        or any((conv.kernel_height, conv.rows_above) != (2, 1) for conv in later)):
      raise NotImplementedError('The cached sampler expects the layers of `window_layers`.')
    hidden = None
    for index, (conv, term) in enumerate(zip(self.vertical_convs, context_terms)):
      rows = num_layers - index  # This layer is needed at rows row - rows + 1 .. row.
      kernel, bias = decoder_ops.kernel_and_bias(conv.conv)  # [kh, kw, in, 2F]
      inputs = strip if hidden is None else hidden
      padded = tf.pad(inputs, [[0, 0], [0, 0], [conv.cols_left, max(conv.cols_right, 0)],
                               [0, 0]])
      # A 'valid' convolution over the rows given: kh - 1 fewer rows come out.
      pre_activation = tf.nn.bias_add(
          tf.nn.convolution(padded, kernel, padding='VALID'), bias)[:, :, :width]
      if term is not None:
        pre_activation += tf.slice(term, [0, row + num_layers - rows, 0, 0],
                                   [-1, rows, -1, -1])
      update = decoder_ops.gate(pre_activation)  # [B, rows, W, F]
      hidden = update if hidden is None else hidden[:, 1:] + update
      # Rows above the image are the next layer's zero padding, not features.
      inside = tf.range(rows) + row - rows + 1 >= 0
      hidden = tf.where(inside[None, :, None, None], hidden, tf.zeros_like(hidden))
    return hidden[:, -1]

  def sample(self, context: Optional[tf.Tensor], likelihood, noise, shape,
             vector: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Draws images pixel by pixel, computing for each pixel only what its window needs.

    The same maths as `autoregressive_sampling.sample_sequential` (and so the same images for the
    same noise): pixel p is `likelihood.sample_from_noise` of this decoder's parameters at p given
    the pixels before it. The architecture makes this cheap:

    * the vertical stack at row i depends on rows i - B .. i - 1 only, so at the start of each
      row it is evaluated once, in a vectorized pass over the whole row, on the B rows above
      (each of its n layers only at the rows the next one needs);
    * the horizontal layers are [1, 1] (the pixel on the left) or [1, 2] (left and current)
      kernels: each keeps its value at the previous column, so a new column costs one matrix
      product per layer (as `pixelcnn.DepthLimitedPixelCNN.sample` does);
    * the gated blocks and the output layer are 1x1: matrix products on [B, filters] vectors;
    * the context and vector terms (1x1 convolutions of the context map) are computed once.

    Rows and columns are `tf.while_loop`s: the column loop is not unrolled, so the graph (and the
    tracing and graph-optimization time) does not grow with the width. On the CIFAR-10 model an
    unrolled column loop was no faster per call and took 2-3 times longer on the first call.
    The per-pixel arithmetic mirrors `call` operation by operation (1x1 convolutions as matrix
    products, a [1, 2] kernel on [left; current] as one product, the same order of additions).
    Matrix products and convolutions may still round differently in the last bit, which would
    flip a pixel only when its noise falls within that distance of a decision boundary; the
    tests and 100 CIFAR-10 images (102,400 pixels) gave exactly the images of
    `autoregressive_sampling.sample_sequential` (checked there through
    `autoregressive_sampling.sample_fixed_point`, which returns the same).

    Args:
      context: [B, H, W, K] context map, or None.
      likelihood: the pixel likelihood whose parameters this decoder outputs.
      noise: `likelihood.noise(shape, seed)` (a tensor or a structure of tensors [B, H, W, ...]).
      shape: [B, H, W, C]; H, W, C static, B may be a scalar tensor.
      vector: [B, V] global conditioning, or None (as given to `call`).

    Returns:
      [B, H, W, C] images.

    Raises:
      ValueError: if the decoder has not been built (called once) yet.
    """
    if not self.built:
      raise ValueError('GatedPixelCNN.sample needs a built decoder: call it once first.')
    batch, height, width, channels = shape
    window_height = self.window_size[1]
    num_vertical = len(self.vertical_convs)

    # Context and vector terms of every layer, computed once as `call` computes them.
    def terms(convs):
      return [None if context is None else conv(context) for conv in convs]  # [B, H, W, 2F]
    vertical_terms = [
        None if term is None else tf.pad(term, [[0, 0], [num_vertical - 1, 0], [0, 0], [0, 0]])
        for term in terms(self.vertical_context)]
    horizontal_terms = terms(self.horizontal_context)
    block_terms = terms(self.block_context)
    vector_terms = [None if vector is None else layer(vector)  # [B, 2F]
                    for layer in self.block_vector]

    def matrix(layer):  # A 1x1 (or [1, kw]) convolution as a matrix [kw * in, out] and a bias.
      kernel, bias = decoder_ops.kernel_and_bias(layer)
      return tf.reshape(kernel, [-1, kernel.shape[-1]]), bias

    to_horizontal_kernel, to_horizontal_bias = decoder_ops.kernel_and_bias(
        self.vertical_to_horizontal)
    # [1, kw, in, 2F] kernels, kw = 1 (the pixel on the left) or 2 (left and current); the
    # [left; current] channels of a [1, 2] kernel form one reduction axis, as in the convolution.
    horizontal = [matrix(conv.conv) for conv in self.horizontal_convs]
    blocks = [(matrix(conv), matrix(output))
              for conv, output in zip(self.block_convs, self.block_outputs)]
    output_kernel, output_bias = matrix(self.output_conv)

    def dense(inputs, kernel, bias):  # [B, in] -> [B, out]: a 1x1 convolution at one pixel
      return tf.nn.bias_add(tf.matmul(inputs, kernel), bias)

    def pixel_params(vertical, lefts, horizontal_here, block_here):
      """Parameters [B, P] at one column and the horizontal layers' outputs there.

      Args:
        vertical: [B, F] the vertical stack's contribution at this pixel.
        lefts: [B, Cin] the input on the left, then [B, F] the output of horizontal layer k
          on the left for k = 1 .. L - 1 (zeros at column 0: the layers' zero padding).
        horizontal_here, block_here: per layer, its context term [B, 2F] here, or None.
      """
      hidden, values = None, []
      for index, ((kernel, bias), term) in enumerate(zip(horizontal, horizontal_here)):
        # The first layer sees the input on the left; later ones their input's left and current.
        inputs = lefts[0] if index == 0 else tf.concat([lefts[index], hidden], axis=-1)
        pre_activation = dense(inputs, kernel, bias)
        if term is not None:
          pre_activation += term
        update = decoder_ops.gate(pre_activation)
        hidden = update if hidden is None else hidden + update
        values.append(hidden)
      merged = vertical if hidden is None else vertical + hidden
      for ((kernel, bias), (out_kernel, out_bias)), term, vector_term in zip(
          blocks, block_here, vector_terms):
        pre_activation = dense(tf.nn.elu(merged), kernel, bias)
        if term is not None:
          pre_activation += term
        if vector_term is not None:
          pre_activation += vector_term
        merged += dense(decoder_ops.gate(pre_activation), out_kernel, out_bias)
      return dense(tf.nn.elu(merged), output_kernel, output_bias), values

    # Not converted by autograph: the loops below are over Python lists or explicit.
    @tf.autograph.experimental.do_not_convert
    def draw_row(row, buffer):
      """Draws row `row` given the network inputs of the rows above; returns [B, W, C]."""
      strip = tf.slice(buffer, [0, row, 0, 0], [-1, window_height, -1, -1])
      vertical_row = self._vertical_row(strip, row, vertical_terms)  # [B, W, F]
      vertical = autoregressive_sampling.columns(tf.nn.bias_add(tf.nn.convolution(
          vertical_row[:, None], to_horizontal_kernel, padding='VALID'),
          to_horizontal_bias)[:, 0])  # [W, B, F]
      at_row = lambda term: (None if term is None
                             else autoregressive_sampling.columns(tf.gather(term, row, axis=1)))
      horizontal_row = [at_row(term) for term in horizontal_terms]  # [W, B, 2F]
      block_row = [at_row(term) for term in block_terms]
      noise_row = tf.nest.map_structure(at_row, noise)  # [W, B, ...]
      # The left neighbour of column 0 is every layer's zero padding.
      lefts = [tf.zeros([batch, strip.shape[-1]])]
      lefts += [tf.zeros([batch, self.filters])] * (len(horizontal) - 1)

      def draw_pixel(col, lefts):
        at = lambda term: None if term is None else tf.gather(term, col)
        params, values = pixel_params(at(vertical), lefts, [at(t) for t in horizontal_row],
                                      [at(t) for t in block_row])
        pixel_noise = tf.nest.map_structure(lambda n: at(n)[:, None, None], noise_row)
        pixel = likelihood.sample_from_noise(params[:, None, None], pixel_noise)[:, 0, 0]
        return pixel, [self._network_input(likelihood, pixel)] + values[:-1]

      def body(col, lefts, pixels):
        pixel, lefts = draw_pixel(col, lefts)
        return col + 1, lefts, pixels.write(col, pixel)
      _, _, pixels = tf.while_loop(
          lambda col, *_: col < width, body,
          (tf.constant(0), lefts, tf.TensorArray(tf.float32, size=width)))
      return autoregressive_sampling.rows_of(pixels)

    # Network inputs of the drawn rows below window_height rows of zeros (the padding above the
    # image): rows r - window_height .. r - 1 of the image are rows r .. r + window_height - 1.
    buffer = tf.zeros([batch, window_height + height, width, 1 if self.grayscale else channels])

    def next_row(row, images, buffer):
      new_row = draw_row(row, buffer)  # [B, W, C]
      drawn = tf.range(window_height + height) == row + window_height
      buffer = tf.where(drawn[None, :, None, None],
                        self._network_input(likelihood, new_row)[:, None], buffer)
      return row + 1, images.write(row, new_row), buffer

    # Explicit loops (callers may trace without autograph).
    _, images, _ = tf.while_loop(
        lambda row, *_: row < height, next_row,
        (tf.constant(0), tf.TensorArray(tf.float32, size=height), buffer))
    return tf.transpose(images.stack(), [1, 0, 2, 3])

  def window(self) -> masked.Window:
    """Offsets (drow, dcol) of the pixels that the output at (0, 0) sees."""
    def stack_window(convs):
      if not convs:
        return frozenset()
      later = [masked.IDENTITY | conv.window() for conv in convs[1:]]
      return masked.compose(convs[0].window(), *later)
    return stack_window(self.vertical_convs) | stack_window(self.horizontal_convs)

  def get_config(self):
    config = super().get_config()
    config.update(num_outputs=self.num_outputs, window_size=self.window_size,
                  filters=self.filters, num_blocks=self.num_blocks, grayscale=self.grayscale,
                  use_weight_norm=self.use_weight_norm)
    return config


def paper_window(width: int, height: int) -> masked.Window:
  """The A x B window as the paper defines it, straight from the definition."""
  left = math.ceil((width - 1) / 2)
  right = width - 1 - left
  block = masked.shifted_offsets((-height, -1), (-left, right))
  return block | frozenset((0, -c) for c in range(1, left + 1))
