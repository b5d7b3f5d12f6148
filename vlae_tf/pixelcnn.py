"""Local-window PixelCNN decoders p(x | z): the part of a VLAE that models texture.

A VLAE decoder is autoregressive but sees only a small window of earlier pixels, so that global
structure has to travel through z (Chen et al. 2017, section 3). Two decoders are provided; both map
pixels x and a context map computed from z to the parameters of a pixel likelihood:

    params[b, i, j] = f(x[b, (i, j) + window], context[b, (i, j) + context window])

* `DepthLimitedPixelCNN`, the paper's decoder for binary 28x28 images: masked 3x3 convolutions
  (first type A, then type B, weights optionally tied) in ResNet blocks, 1x1 ResNet blocks in
  between. Its window is limited by depth only and has PixelCNN's blind spot (pixels up and to the
  right of the diagonal are never seen).
* `GatedPixelCNN`, the decoder of the CIFAR-10 experiments: gated vertical and horizontal stacks
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

Channel-autoregressive RGB outputs live in the likelihood (`vlae_tf.likelihoods`): the parameters
here are per pixel, and the likelihood conditions channel c on channels < c of the same pixel.

`window()` returns the exact set of relative offsets (drow, dcol) of the pixels an output sees,
computed from the configured layers by window arithmetic (`vlae_tf.masked`); the tests check it
against the window measured by perturbation.
"""

import math
import warnings
from typing import List, Optional, Tuple

import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf import masked
from vlae_tf import weight_norm

# Luma weights of ITU-R BT.601, the paper's grayscale window.
GRAYSCALE_WEIGHTS = (0.299, 0.587, 0.114)


def _weight_norm(layer: keras.layers.Layer, use_weight_norm: bool) -> keras.layers.Layer:
  """Weight normalization with data-dependent init (`weight_norm.wn`), or the bare layer."""
  with warnings.catch_warnings():
    # TFP warns for any class but Dense/Conv2D/Conv2DTranspose; MaskedConv2D is a Conv2D that
    # masks the kernel it is given, which is exactly what the wrapper needs.
    warnings.filterwarnings('ignore', message='`WeightNorm` is tested only for')
    return weight_norm.wn(layer, use_weight_norm)


def _conv1x1(filters: int, use_weight_norm: bool) -> keras.layers.Layer:
  return _weight_norm(keras.layers.Conv2D(filters, 1), use_weight_norm)


def _kernel_and_bias(layer: keras.layers.Layer):
  """The effective (normalized, masked) kernel and the bias of a conv layer, weight norm or not."""
  inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
  kernel = tf.convert_to_tensor(inner.kernel)
  if isinstance(inner, masked.MaskedConv2D):
    kernel *= inner.mask
  return kernel, inner.bias


def _gate(pre_activation: tf.Tensor) -> tf.Tensor:
  """Gated activation unit: tanh(a) * sigmoid(b) for pre_activation = [a, b]."""
  # [..., 2 * filters] -> [..., filters]
  value, gate = tf.split(pre_activation, 2, axis=-1)
  return tf.tanh(value) * tf.sigmoid(gate)


@gin.register(module='vlae_tf.pixelcnn')
class DepthLimitedPixelCNN(keras.layers.Layer):
  """The paper's binary-image decoder: masked convolutions whose depth bounds the window.

      h = MaskedConvA(x) + Conv1x1(context)
      repeat num_masked_layers - 1 times:
        h = h + MaskedConvB(elu(h))          # 3x3, one kernel shared by all blocks if tied
        h = h + Conv1x1(elu(h))              # the 1x1 ResNet block in between
      params = Conv1x1(elu(h))

  Paper settings (section 5.1): 6 masked 3x3 layers of 12 filters, weights tied, the image
  concatenated with a 4-channel context map. The context enters through a 1x1 convolution instead
  of being concatenated under the type-A mask, so the context at the pixel itself is visible
  (it depends on z only, never on x).
  """

  def __init__(self, num_outputs: int, num_masked_layers: int = 6, filters: int = 12,
               kernel_size: int = 3, tie_weights: bool = True, use_weight_norm: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    if num_masked_layers < 1:
      raise ValueError(f'num_masked_layers must be >= 1, got {num_masked_layers}.')
    self.num_outputs = num_outputs
    self.num_masked_layers = num_masked_layers
    self.filters = filters
    self.kernel_size = kernel_size
    self.tie_weights = tie_weights
    self.use_weight_norm = use_weight_norm

    self.input_conv = _weight_norm(
        masked.MaskedConv2D(filters, kernel_size, mask_type='A'), use_weight_norm)
    self.context_conv = _conv1x1(filters, use_weight_norm)
    num_blocks = num_masked_layers - 1
    if tie_weights and num_blocks:
      shared = _weight_norm(masked.MaskedConv2D(filters, kernel_size, mask_type='B'),
                            use_weight_norm)
      self.masked_convs = [shared] * num_blocks
    else:
      self.masked_convs = [
          _weight_norm(masked.MaskedConv2D(filters, kernel_size, mask_type='B'), use_weight_norm)
          for _ in range(num_blocks)]
    self.pointwise_convs = [_conv1x1(filters, use_weight_norm) for _ in range(num_blocks)]
    self.output_conv = _conv1x1(num_outputs, use_weight_norm)

  def call(self, inputs: tf.Tensor, context: Optional[tf.Tensor] = None, training=None):
    """Parameters of p(x_ij | window, z) for every pixel.

    Args:
      inputs: [batch, height, width, channels] pixels, already scaled for the network.
      context: [batch, height, width, context_channels] map computed from z, or None.
      training: unused.

    Returns:
      [batch, height, width, num_outputs] likelihood parameters.
    """
    hidden = self.input_conv(inputs)  # [batch, height, width, filters]
    if context is not None:
      hidden += self.context_conv(context)
    for masked_conv, pointwise_conv in zip(self.masked_convs, self.pointwise_convs):
      hidden += masked_conv(tf.nn.elu(hidden))
      hidden += pointwise_conv(tf.nn.elu(hidden))
    return self.output_conv(tf.nn.elu(hidden))

  def sample(self, context: Optional[tf.Tensor], likelihood, noise, shape) -> tf.Tensor:
    """Draws images pixel by pixel with cached activations: O(1) work per pixel.

    The same maths as `sample_sequential` (and so the same images for the same noise), but each
    step evaluates every layer at the new pixel only, from caches of the previous row and of the
    pixels already drawn in the current one (fast PixelCNN generation, Ramachandran et al. 2017).
    Each masked kxk layer is split into its rows above the centre, applied to the whole previous
    row at once, and its centre row, applied pixel by pixel.

    Args:
      context: [B, H, W, K] context map, or None.
      likelihood: the pixel likelihood whose parameters this decoder outputs.
      noise: `likelihood.noise(shape, seed)`.
      shape: [B, H, W, C], static.

    Returns:
      [B, H, W, C] images.
    """
    batch, height, width, channels = shape
    radius = self.kernel_size // 2
    if radius != 1:
      raise NotImplementedError('The cached sampler supports 3x3 masked kernels; use '
                                'sample_fixed_point for other kernel sizes.')
    input_kernel, input_bias = _kernel_and_bias(self.input_conv)  # [3, 3, C, F]
    block_kernels = [_kernel_and_bias(conv) for conv in self.masked_convs]
    pointwise = [_kernel_and_bias(conv) for conv in self.pointwise_convs]
    output_kernel, output_bias = _kernel_and_bias(self.output_conv)
    # [B, H, W, F] context term of the first layer, plus its bias.
    first_term = tf.zeros([batch, height, width, self.filters]) + input_bias
    if context is not None:
      first_term += self.context_conv(context)
    noise_rows = tf.nest.map_structure(lambda n: tf.transpose(n, [1, 0, 2, 3]), noise)

    def above(row, kernel):
      """Contribution of the kernel's top row to every pixel of the next row: [B, W, F]."""
      # row: [B, W, Cin] -> [B, 1, W, Cin]; kernel[0]: [3, Cin, F] -> [1, 3, Cin, F]
      return tf.nn.conv2d(row[:, None], kernel[:1], strides=1, padding='SAME')[:, 0]

    def step_row(previous_x, previous_features, first_row, noise_row):
      """Draws one row given the previous row of pixels and of every layer's input."""
      first_above = above(previous_x, input_kernel) + first_row  # [B, W, F]
      block_above = [above(features, kernel) + bias
                     for features, (kernel, bias) in zip(previous_features, block_kernels)]
      pixels, features = [], [[] for _ in block_kernels]
      left_x = tf.zeros([batch, channels])
      lefts = [tf.zeros([batch, self.filters]) for _ in block_kernels]
      for col in range(width):
        hidden = first_above[:, col] + tf.matmul(left_x, input_kernel[1, 0])
        for index, ((kernel, _), (pw_kernel, pw_bias)) in enumerate(
            zip(block_kernels, pointwise)):
          activation = tf.nn.elu(hidden)
          features[index].append(activation)
          hidden += (block_above[index][:, col] + tf.matmul(lefts[index], kernel[1, 0])
                     + tf.matmul(activation, kernel[1, 1]))
          lefts[index] = activation
          hidden += tf.matmul(tf.nn.elu(hidden), pw_kernel[0, 0]) + pw_bias
        params = tf.matmul(tf.nn.elu(hidden), output_kernel[0, 0]) + output_bias
        pixel_noise = tf.nest.map_structure(lambda n: n[:, col][:, None, None], noise_row)
        pixel = likelihood.sample_from_noise(params[:, None, None], pixel_noise)[:, 0, 0]
        pixels.append(pixel)
        left_x = likelihood.network_input(pixel)
      return tf.stack(pixels, 1), [tf.stack(f, 1) for f in features]

    rows = tf.TensorArray(tf.float32, size=height)
    previous_x = tf.zeros([batch, width, channels])
    previous_features = [tf.zeros([batch, width, self.filters]) for _ in block_kernels]
    for row in tf.range(height):
      previous_x_network = tf.where(
          row > 0, likelihood.network_input(previous_x), tf.zeros_like(previous_x))
      new_x, previous_features = step_row(
          previous_x_network, previous_features, first_term[:, row],
          tf.nest.map_structure(lambda n: n[row], noise_rows))
      rows = rows.write(row, new_x)
      previous_x = new_x
    return tf.transpose(rows.stack(), [1, 0, 2, 3])

  def window(self) -> masked.Window:
    """Offsets (drow, dcol) of the pixels that the output at (0, 0) sees."""
    first = masked.mask_offsets(masked.causal_mask((self.kernel_size,) * 2, 'A'))
    block = masked.IDENTITY | masked.mask_offsets(
        masked.causal_mask((self.kernel_size,) * 2, 'B'))
    return masked.compose(first, *[block] * (self.num_masked_layers - 1))

  def get_config(self):
    config = super().get_config()
    config.update(num_outputs=self.num_outputs, num_masked_layers=self.num_masked_layers,
                  filters=self.filters, kernel_size=self.kernel_size,
                  tie_weights=self.tie_weights, use_weight_norm=self.use_weight_norm)
    return config


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


@gin.register(module='vlae_tf.pixelcnn')
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
    make_conv = lambda conv: _weight_norm(conv, use_weight_norm)
    self.vertical_convs = [masked.ShiftedConv2D(2 * filters, make_conv=make_conv, **settings)
                           for settings in vertical]
    self.horizontal_convs = [masked.ShiftedConv2D(2 * filters, make_conv=make_conv, **settings)
                             for settings in horizontal]
    self.vertical_context = [_conv1x1(2 * filters, use_weight_norm) for _ in vertical]
    self.horizontal_context = [_conv1x1(2 * filters, use_weight_norm) for _ in horizontal]
    self.vertical_to_horizontal = _conv1x1(filters, use_weight_norm)
    self.block_convs = [_conv1x1(2 * filters, use_weight_norm) for _ in range(num_blocks)]
    self.block_context = [_conv1x1(2 * filters, use_weight_norm) for _ in range(num_blocks)]
    self.block_vector = [keras.layers.Dense(2 * filters) for _ in range(num_blocks)]
    self.block_outputs = [_conv1x1(filters, use_weight_norm) for _ in range(num_blocks)]
    self.output_conv = _conv1x1(num_outputs, use_weight_norm)

  def _stack(self, inputs, convs, context_convs, context):
    hidden = None
    for conv, context_conv in zip(convs, context_convs):
      pre_activation = conv(inputs if hidden is None else hidden)
      if context is not None:
        pre_activation += context_conv(context)
      update = _gate(pre_activation)  # [batch, height, width, filters]
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
      hidden += output(_gate(pre_activation))
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
      kernel, bias = _kernel_and_bias(conv.conv)  # [kh, kw, in, 2F]
      inputs = strip if hidden is None else hidden
      padded = tf.pad(inputs, [[0, 0], [0, 0], [conv.cols_left, max(conv.cols_right, 0)],
                               [0, 0]])
      # A 'valid' convolution over the rows given: kh - 1 fewer rows come out.
      pre_activation = tf.nn.bias_add(
          tf.nn.convolution(padded, kernel, padding='VALID'), bias)[:, :, :width]
      if term is not None:
        pre_activation += tf.slice(term, [0, row + num_layers - rows, 0, 0],
                                   [-1, rows, -1, -1])
      update = _gate(pre_activation)  # [B, rows, W, F]
      hidden = update if hidden is None else hidden[:, 1:] + update
      # Rows above the image are the next layer's zero padding, not features.
      inside = tf.range(rows) + row - rows + 1 >= 0
      hidden = tf.where(inside[None, :, None, None], hidden, tf.zeros_like(hidden))
    return hidden[:, -1]

  def sample(self, context: Optional[tf.Tensor], likelihood, noise, shape,
             vector: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Draws images pixel by pixel, computing for each pixel only what its window needs.

    The same maths as `sample_sequential` (and so the same images for the same noise): pixel p
    is `likelihood.sample_from_noise` of this decoder's parameters at p given the pixels before
    it. The architecture makes this cheap:

    * the vertical stack at row i depends on rows i - B .. i - 1 only, so at the start of each
      row it is evaluated once, in a vectorized pass over the whole row, on the B rows above
      (each of its n layers only at the rows the next one needs);
    * the horizontal layers are [1, 1] (the pixel on the left) or [1, 2] (left and current)
      kernels: each keeps its value at the previous column, so a new column costs one matrix
      product per layer (as `DepthLimitedPixelCNN.sample` does);
    * the gated blocks and the output layer are 1x1: matrix products on [B, filters] vectors;
    * the context and vector terms (1x1 convolutions of the context map) are computed once.

    Rows and columns are `tf.while_loop`s: the column loop is not unrolled, so the graph (and the
    tracing and graph-optimization time) does not grow with the width. On the CIFAR-10 model an
    unrolled column loop was no faster per call and took 2-3 times longer on the first call.
    The per-pixel arithmetic mirrors `call` operation by operation (1x1 convolutions as matrix
    products, a [1, 2] kernel on [left; current] as one product, the same order of additions).
    Matrix products and convolutions may still round differently in the last bit, which would
    flip a pixel only when its noise falls within that distance of a decision boundary; the
    tests and 100 CIFAR-10 images (102,400 pixels) gave exactly the images of `sample_sequential`
    (checked there through `sample_fixed_point`, which returns the same).

    Args:
      context: [B, H, W, K] context map, or None.
      likelihood: the pixel likelihood whose parameters this decoder outputs.
      noise: `likelihood.noise(shape, seed)` (a tensor or a structure of tensors [B, H, W, ...]).
      shape: [B, H, W, C], static.
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
      kernel, bias = _kernel_and_bias(layer)
      return tf.reshape(kernel, [-1, kernel.shape[-1]]), bias

    to_horizontal_kernel, to_horizontal_bias = _kernel_and_bias(self.vertical_to_horizontal)
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
        update = _gate(pre_activation)
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
        merged += dense(_gate(pre_activation), out_kernel, out_bias)
      return dense(tf.nn.elu(merged), output_kernel, output_bias), values

    def columns(tensor):  # [B, W, ...] -> [W, B, ...]
      return tf.transpose(tensor, [1, 0] + list(range(2, tensor.shape.rank)))

    # Not converted by autograph: the loops below are over Python lists or explicit.
    @tf.autograph.experimental.do_not_convert
    def draw_row(row, buffer):
      """Draws row `row` given the network inputs of the rows above; returns [B, W, C]."""
      strip = tf.slice(buffer, [0, row, 0, 0], [-1, window_height, -1, -1])
      vertical_row = self._vertical_row(strip, row, vertical_terms)  # [B, W, F]
      vertical = columns(tf.nn.bias_add(tf.nn.convolution(
          vertical_row[:, None], to_horizontal_kernel, padding='VALID'),
          to_horizontal_bias)[:, 0])  # [W, B, F]
      at_row = lambda term: None if term is None else columns(tf.gather(term, row, axis=1))
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
      return columns(pixels.stack())

    # Network inputs of the drawn rows below window_height rows of zeros (the padding above the
    # image): rows r - window_height .. r - 1 of the image are rows r .. r + window_height - 1.
    buffer = tf.zeros([batch, window_height + height, width, 1 if self.grayscale else channels])
    images = tf.TensorArray(tf.float32, size=height)
    for row in tf.range(height):
      new_row = draw_row(row, buffer)  # [B, W, C]
      images = images.write(row, new_row)
      drawn = tf.range(window_height + height) == row + window_height
      buffer = tf.where(drawn[None, :, None, None],
                        self._network_input(likelihood, new_row)[:, None], buffer)
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


@gin.register(module='vlae_tf.pixelcnn')
class FactorizedDecoder(keras.layers.Layer):
  """The plain-VAE baseline: p(x|z) factorizes over pixels, params = Conv1x1(context).

  Its window is empty: every pixel depends on z alone, so all the structure must go through z.
  """

  def __init__(self, num_outputs: int, use_weight_norm: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.num_outputs = num_outputs
    self.use_weight_norm = use_weight_norm
    self.output_conv = _conv1x1(num_outputs, use_weight_norm)

  def call(self, inputs: tf.Tensor, context: Optional[tf.Tensor] = None, training=None):
    if context is None:
      raise ValueError('FactorizedDecoder needs a context map from z: a factorized decoder '
                       'without a latent variable models nothing.')
    return self.output_conv(context)

  def window(self) -> masked.Window:
    return frozenset()

  def get_config(self):
    config = super().get_config()
    config.update(num_outputs=self.num_outputs, use_weight_norm=self.use_weight_norm)
    return config


def sample_sequential(params_fn, likelihood, noise, shape) -> tf.Tensor:
  """Draws images pixel by pixel in raster order: one decoder pass per pixel (the naive sampler).

  Pixel p is taken from `likelihood.sample_from_noise(params_fn(x), noise)` after pixels < p are
  fixed, so with the same `noise` this returns the same images as `sample_fixed_point`.

  Args:
    params_fn: maps images [B, H, W, C] to likelihood parameters [B, H, W, P]; the parameters of
      pixel p must depend only on pixels before p in raster order.
    likelihood: a pixel likelihood (`vlae_tf.likelihoods`).
    noise: `likelihood.noise(shape, seed)`.
    shape: [B, H, W, C], static.

  Returns:
    [B, H, W, C] images.
  """
  batch, height, width, channels = shape
  images = tf.zeros(shape, tf.float32)
  for index in tf.range(height * width):
    # One-hot [1, H, W, 1] selector of pixel `index`.
    selector = tf.reshape(tf.one_hot(index, height * width), [1, height, width, 1])
    drawn = likelihood.sample_from_noise(params_fn(images), noise)
    images = images + selector * (drawn - images)
  del batch, channels
  return images


def sample_fixed_point(params_fn, likelihood, noise, shape, max_iterations=None):
  """Draws the same images as `sample_sequential` by fixed-point iteration, usually far faster.

  With the noise fixed, an image is a sample exactly when every pixel equals the value drawn from
  its own conditional: x = S(x), with S(x) = likelihood.sample_from_noise(params_fn(x), noise).
  Starting from zeros, after t iterations of x <- S(x) every pixel whose dependency chain has
  length < t is final, so at most H*W iterations reach the fixed point, and the solution is
  unique (pixels are determined one after another in raster order). In practice local windows stop
  changing after far fewer passes; the loop ends at the first pass that changes nothing (Jacobi
  iteration of an autoregressive model, Song et al. 2021).

  Args:
    params_fn, likelihood, noise, shape: as `sample_sequential`.
    max_iterations: a bound on passes, default H*W + 1 (always enough).

  Returns:
    (images [B, H, W, C], number of decoder passes).
  """
  batch, height, width, channels = shape
  del batch, channels
  if max_iterations is None:
    max_iterations = height * width + 1
  images = likelihood.sample_from_noise(params_fn(tf.zeros(shape, tf.float32)), noise)
  passes = tf.constant(1)
  changed = tf.constant(True)
  while changed and passes < max_iterations:
    updated = likelihood.sample_from_noise(params_fn(images), noise)
    changed = tf.reduce_any(tf.not_equal(updated, images))
    images = updated
    passes += 1
  return images, passes
