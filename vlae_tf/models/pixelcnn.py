"""Local-window PixelCNN decoders p(x | z): the part of a VLAE that models texture.

A VLAE decoder is autoregressive but sees only a small window of earlier pixels, so that global
structure has to travel through z (Chen et al. 2017, section 3). Every decoder maps pixels x and a
context map computed from z to the parameters of a pixel likelihood:

    params[b, i, j] = f(x[b, (i, j) + window], context[b, (i, j) + context window])

* `DepthLimitedPixelCNN`, the paper's decoder for binary 28x28 images: masked 3x3 convolutions
  (first type A, then type B, weights optionally tied) in ResNet blocks, 1x1 ResNet blocks in
  between. Its window is limited by depth only and has PixelCNN's blind spot (pixels up and to the
  right of the diagonal are never seen).
* `FactorizedDecoder`, the plain-VAE baseline: an empty window, every pixel from z alone.

The other decoders have their own modules: `GatedPixelCNN` (gated_pixelcnn.py), the decoder of the
CIFAR-10 experiments, with exact A x B windows, and `GatedResNetPixelCNN`
(gated_resnet_pixelcnn.py), the first author's binary-image decoder.

Channel-autoregressive RGB outputs live in the likelihood (`vlae_tf.likelihoods`): the parameters
here are per pixel, and the likelihood conditions channel c on channels < c of the same pixel.

The operations the decoders share are decoder_ops.py's; the samplers (naive, fixed-point, and the
loops of the cached ones) are autoregressive_sampling.py's.

`window()` returns the exact set of relative offsets (drow, dcol) of the pixels an output sees,
computed from the configured layers by window arithmetic (`vlae_tf.masked`); the tests check it
against the window measured by perturbation.
"""

from typing import Optional

import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import masked
from vlae_tf.layers import weight_norm
from vlae_tf.models import autoregressive_sampling
from vlae_tf.models import decoder_ops


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

    self.input_conv = weight_norm.wn(
        masked.MaskedConv2D(filters, kernel_size, mask_type='A'), use_weight_norm)
    self.context_conv = decoder_ops.conv1x1(filters, use_weight_norm)
    num_blocks = num_masked_layers - 1
    if tie_weights and num_blocks:
      shared = weight_norm.wn(masked.MaskedConv2D(filters, kernel_size, mask_type='B'),
                              use_weight_norm)
      self.masked_convs = [shared] * num_blocks
    else:
      self.masked_convs = [
          weight_norm.wn(masked.MaskedConv2D(filters, kernel_size, mask_type='B'), use_weight_norm)
          for _ in range(num_blocks)]
    self.pointwise_convs = [decoder_ops.conv1x1(filters, use_weight_norm)
                            for _ in range(num_blocks)]
    self.output_conv = decoder_ops.conv1x1(num_outputs, use_weight_norm)

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
      hidden = decoder_ops.residual_add(hidden, masked_conv(tf.nn.elu(hidden)))
      hidden = decoder_ops.residual_add(hidden, pointwise_conv(tf.nn.elu(hidden)))
    return self.output_conv(tf.nn.elu(hidden))

  def sample(self, context: Optional[tf.Tensor], likelihood, noise, shape) -> tf.Tensor:
    """Draws images pixel by pixel with cached activations: O(1) work per pixel.

    The same maths as `autoregressive_sampling.sample_sequential` (and so the same images for the
    same noise), but each step evaluates every layer at the new pixel only (see `autoregress`).

    Args:
      context: [B, H, W, K] context map, or None.
      likelihood: the pixel likelihood whose parameters this decoder outputs.
      noise: `likelihood.noise(shape, seed)`.
      shape: [B, H, W, C]; H, W, C static, B may be a scalar tensor.

    Returns:
      [B, H, W, C] images.
    """
    return autoregressive_sampling.sample_by_autoregress(self, context, likelihood, noise, shape)

  def autoregress(self, context: Optional[tf.Tensor], likelihood, choose_pixel, shape) -> tf.Tensor:
    """Generates images in raster order, `choose_pixel` picking each pixel from its parameters.

    Each step evaluates every layer at the new pixel only, from caches of the previous row and of
    the pixels already chosen in the current one (fast PixelCNN generation, Ramachandran et al.
    2017). Each masked kxk layer is split into its rows above the centre, applied to the whole
    previous row at once, and its centre row, applied pixel by pixel. `sample` draws each pixel
    from noise; the bits-back coder (`vlae_tf.bitsback`) decodes it from a compressed stream, or
    returns a known pixel and keeps its parameters.

    Args:
      context: [B, H, W, K] context map, or None.
      likelihood: the pixel likelihood whose parameters this decoder outputs.
      choose_pixel: `(params [B, P], row, col) -> [B, C]` pixels; `row` and `col` are scalar int32
        tensors. Called in raster order.
      shape: [B, H, W, C]; H, W, C static, B may be a scalar tensor.

    Returns:
      [B, H, W, C] the chosen pixels.
    """
    batch, height, width, channels = shape
    radius = self.kernel_size // 2
    if radius != 1:
      raise NotImplementedError('The cached sampler supports 3x3 masked kernels; use '
                                'sample_fixed_point for other kernel sizes.')
    input_kernel, input_bias = decoder_ops.kernel_and_bias(self.input_conv)  # [3, 3, C, F]
    block_kernels = [decoder_ops.kernel_and_bias(conv) for conv in self.masked_convs]
    pointwise = [decoder_ops.kernel_and_bias(conv) for conv in self.pointwise_convs]
    output_kernel, output_bias = decoder_ops.kernel_and_bias(self.output_conv)
    # [B, H, W, F] context term of the first layer, plus its bias.
    first_term = tf.zeros([batch, height, width, self.filters]) + input_bias
    if context is not None:
      first_term += tf.cast(self.context_conv(context), tf.float32)

    # The centre row's left and centre taps and the 1x1 matrices, taken once rather than per pixel.
    input_left = input_kernel[1, 0]  # [C, F]
    block_taps = [(kernel[1, 0], kernel[1, 1]) for kernel, _ in block_kernels]  # [F, F] each
    pointwise_matrices = [(kernel[0, 0], bias) for kernel, bias in pointwise]
    output_matrix = output_kernel[0, 0]  # [F, P]

    def above(row, kernel):
      """Contribution of the kernel's top row to every pixel of the next row: [B, W, F]."""
      # row: [B, W, Cin] -> [B, 1, W, Cin]; kernel[0]: [3, Cin, F] -> [1, 3, Cin, F]
      return tf.nn.conv2d(row[:, None], kernel[:1], strides=1, padding='SAME')[:, 0]

    def step_row(row, previous_x, previous_features, first_row):
      """Chooses one row given the previous row of pixels and of every layer's input."""
      first_above = autoregressive_sampling.columns(  # [W, B, F]
          above(previous_x, input_kernel) + first_row)
      block_above = [autoregressive_sampling.columns(above(features, kernel) + bias)
                     for features, (kernel, bias) in zip(previous_features, block_kernels)]

      def step_column(col, left_x, lefts, pixels, features):
        """Chooses the pixel at (row, col); caches every layer's input there."""
        lefts, features = list(lefts), list(features)
        hidden = first_above[col] + tf.matmul(left_x, input_left)
        for index, ((left, centre), (pw_matrix, pw_bias)) in enumerate(
            zip(block_taps, pointwise_matrices)):
          activation = tf.nn.elu(hidden)
          features[index] = features[index].write(col, activation)
          hidden += (block_above[index][col] + tf.matmul(lefts[index], left)
                     + tf.matmul(activation, centre))
          lefts[index] = activation
          hidden += tf.matmul(tf.nn.elu(hidden), pw_matrix) + pw_bias
        params = tf.matmul(tf.nn.elu(hidden), output_matrix) + output_bias  # [B, P]
        pixel = tf.ensure_shape(choose_pixel(params, row, col), [None, channels])
        return (col + 1, likelihood.network_input(pixel), lefts, pixels.write(col, pixel),
                features)

      # The left neighbour of column 0 is every layer's zero padding.
      start = (tf.constant(0), tf.zeros([batch, channels]),
               [tf.zeros([batch, self.filters]) for _ in block_kernels],
               tf.TensorArray(tf.float32, size=width),
               [tf.TensorArray(tf.float32, size=width) for _ in block_kernels])
      _, _, _, pixels, features = autoregressive_sampling.column_loop(step_column, start, width)
      return (autoregressive_sampling.rows_of(pixels),
              [autoregressive_sampling.rows_of(values) for values in features])

    def next_row(row, rows, previous_x, previous_features):
      previous_x_network = tf.where(
          row > 0, likelihood.network_input(previous_x), tf.zeros_like(previous_x))
      new_x, new_features = step_row(
          row, previous_x_network, previous_features, first_term[:, row])
      return row + 1, rows.write(row, new_x), new_x, new_features

    # Explicit loops over rows and columns (callers may trace without autograph; `column_loop`).
    start = (tf.constant(0), tf.TensorArray(tf.float32, size=height),
             tf.zeros([batch, width, channels]),
             [tf.zeros([batch, width, self.filters]) for _ in block_kernels])
    _, rows, _, _ = tf.while_loop(lambda row, *_: row < height, next_row, start)
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


@gin.register(module='vlae_tf.pixelcnn')
class FactorizedDecoder(keras.layers.Layer):
  """The plain-VAE baseline: p(x|z) factorizes over pixels, params = Conv1x1(context).

  Its window is empty: every pixel depends on z alone, so all the structure must go through z.
  """

  def __init__(self, num_outputs: int, use_weight_norm: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.num_outputs = num_outputs
    self.use_weight_norm = use_weight_norm
    self.output_conv = decoder_ops.conv1x1(num_outputs, use_weight_norm)

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
