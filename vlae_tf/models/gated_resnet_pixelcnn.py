"""The first author's binary-image decoder: a gated-ResNet PixelCNN with kernel-only tying.

`GatedResNetPixelCNN` is `ConvAR(depth=6, nr_channels=12, block="gated_resnet", extra_nins=4,
tieweight=True, pixel_bias=True, context_dim=4)` from Xi Chen's scripts (florensacc/rllab-curriculum
at 33af5b82, infogan/misc/distributions.py ConvAR and custom_ops.py; docs/authors_code.md, section 1
"The decoder: ConvAR"), written again as a Keras layer. With F = filters, `num_stages` = 6 and
`extra_nins` = 4:

    h = elu(MaskedConvA_3x3([x, context]))                  # [B, H, W, F]; stage 0
    repeat extra_nins times: h = h + 0.1 * elu(Conv1x1(h))  # "NIN" residual layers
    for stages 1 .. num_stages - 1:
      a = MaskedConvB_3x3(h)                                # [B, H, W, 2F]
      g = sigmoid(a[..., :F]) * tanh(a[..., F:])            # gated activation (*)
      r = MaskedConvB_3x3(g)                                # [B, H, W, F]
      h = elu(h + 0.1 * r)                                  # post-activation residual
      repeat extra_nins times: h = h + 0.1 * elu(Conv1x1(h))
    params = MaskedConvB_3x3(h)                             # [B, H, W, num_outputs]: logits

(*) computed as two convolutions with the kernel's two halves (the same values; no slices).

Every convolution is a `tied_conv.TiedConv2D`: weight-normalised with data init to output std 0.1,
with a bias per pixel and channel ([1, H, W, C_out], `pixel_bias`), and with `tie_weights` the
kernel direction (only) is shared by name, as in his code:

    kernel            shape              uses
    stem (mask A)     [3, 3, C + K, F]   1
    gated (mask B)    [3, 3, F, 2F]      num_stages - 1  (one per block if untied)
    post (mask B)     [3, 3, F, F]       num_stages - 1
    nin_k, k < 4      [1, 1, F, F]       num_stages      (tied across stages)
    output (mask B)   [3, 3, F, P]       1

Each use has its own scale [C_out] and bias. Trainable parameters, tied, per-pixel biases, images
H x W x C, context K channels, outputs P, S stages, N NINs per stage:

    9 (C + K) F + 9 * 2F^2 + 9 F^2 + N F^2 + 9 F P  +  (1 + H W) (F + 3 (S - 1) F + S N F + P)

= 5,112 + 481 + 377,104 = 382,697 for the paper's 28 x 28 x 1, K = 4, F = 12, P = 1.

Window: one type-A and 2 (S - 1) + 1 type-B masked 3x3 convolutions (12 for S = 6); 1x1 layers
and residual shortcuts add no offsets, so the window is their Minkowski sum: num_stages * 2 rows
above and as many pixels to the left, 246 pixels for S = 6 (`window()`).

How z enters (as in his code): the context map [B, H, W, K] computed from z (the VLAE's context
network; K = `context_networks.BinaryResNetDecoder.context_channels` = 4) is concatenated with the
pixels along channels and goes through the type-A mask, so the context at a pixel itself is never
seen, only at the window's offsets. `zero_context=True` multiplies the context by 0 (his `sanity2`,
the "no latent" runs of vlae_final.py): the same decoder and parameters, z ignored exactly. With
`context=None` (a VLAE without encoder) the first convolution reads the pixels alone.

Departures from his code:
* Pixels arrive as the likelihood's `network_input` (2x - 1 for `likelihoods.Bernoulli`), not raw
  x in {0, 1}. With per-pixel biases the two are the same model family (an affine map of the input
  changes the first layer's scale and adds a position-dependent constant, which the per-pixel bias
  absorbs); only the starting point of the data init differs.
* Per-pixel biases are created for the image size of the first call; other sizes raise
  `errors.ImageSizeError` (his graph was built for one size too).
* His no-op input dropout (keep 1) and constant input mask (1) are left out. His sampler ran the
  whole network once per pixel; `autoregress` caches rows (same results, O(1) work per pixel).
"""

from typing import Optional

import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import masked
from vlae_tf.layers import tied_conv
from vlae_tf.models import autoregressive_sampling


@gin.register(module='vlae_tf.gated_resnet_pixelcnn')
@keras.saving.register_keras_serializable(package='vlae_tf.gated_resnet_pixelcnn')
class GatedResNetPixelCNN(keras.layers.Layer):
  """The first author's ConvAR decoder (module docstring): gated ResNet stages, NINs, tying.

  Attributes:
    stem, gated_convs, post_convs, nin_convs, output_conv: the `TiedConv2D` uses, in order;
      nin_convs[stage][k].
    kernels: every distinct `SharedKernel`.
  """

  def __init__(self, num_outputs: int, num_stages: int = 6, filters: int = 12,
               extra_nins: int = 4, tie_weights: bool = True, pixel_bias: bool = True,
               zero_context: bool = False, residual_scale: float = 0.1, init_scale: float = 0.1,
               **kwargs):
    """Makes the decoder's kernels and their uses.

    Args:
      num_outputs: likelihood parameters per pixel (1 Bernoulli logit).
      num_stages: his `depth`: the type-A stem, then num_stages - 1 gated blocks.
      filters: hidden channels F (his `nr_channels`); the gate's convolution has 2F.
      extra_nins: 1x1 residual layers after every stage.
      tie_weights: share kernel directions by name across stages (his `tieweight`).
      pixel_bias: biases [1, H, W, C_out] on every convolution, else [C_out].
      zero_context: multiply the context map by 0 (his `sanity2`): a decoder without z.
      residual_scale: multiplies every residual branch (0.1).
      init_scale: output standard deviation of every convolution after the data init (0.1).
      **kwargs: `keras.layers.Layer` arguments.
    """
    super().__init__(**kwargs)
    if num_stages < 1:
      raise ValueError(f'num_stages must be >= 1, got {num_stages}.')
    self.num_outputs = num_outputs
    self.num_stages = num_stages
    self.filters = filters
    self.extra_nins = extra_nins
    self.tie_weights = tie_weights
    self.pixel_bias = pixel_bias
    self.zero_context = zero_context
    self.residual_scale = residual_scale
    self.init_scale = init_scale
    num_blocks = num_stages - 1

    def kernels(count, name, filters, kernel_size, mask_type):
      if tie_weights:
        shared = tied_conv.SharedKernel(filters, kernel_size, mask_type, name=name)
        return [shared] * count
      return [tied_conv.SharedKernel(filters, kernel_size, mask_type, name=f'{name}_{i}')
              for i in range(count)]

    def use(kernel, name):
      return tied_conv.TiedConv2D(kernel, pixel_bias, init_scale, name=name)

    stem_kernel = tied_conv.SharedKernel(filters, 3, 'A', name='stem_kernel')
    gated_kernels = kernels(num_blocks, 'gated_kernel', 2 * filters, 3, 'B')
    post_kernels = kernels(num_blocks, 'post_kernel', filters, 3, 'B')
    nin_kernels = [kernels(num_stages, f'nin{k}_kernel', filters, 1, None)
                   for k in range(extra_nins)]  # nin_kernels[k][stage]
    output_kernel = tied_conv.SharedKernel(num_outputs, 3, 'B', name='output_kernel')
    unique = {}
    for kernel in [stem_kernel, *gated_kernels, *post_kernels,
                   *[k for row in nin_kernels for k in row], output_kernel]:
      unique.setdefault(id(kernel), kernel)
    self.kernels = list(unique.values())

    self.stem = use(stem_kernel, 'stem')
    self.gated_convs = [use(k, f'gated_{i + 1}') for i, k in enumerate(gated_kernels)]
    self.post_convs = [use(k, f'post_{i + 1}') for i, k in enumerate(post_kernels)]
    self.nin_convs = [[use(nin_kernels[k][stage], f'nin_{stage}_{k}') for k in range(extra_nins)]
                      for stage in range(num_stages)]
    self.output_conv = use(output_kernel, 'output')

  # -- The parallel pass ------------------------------------------------------------------------

  def _first_input(self, inputs: tf.Tensor, context: Optional[tf.Tensor]) -> tf.Tensor:
    """[x, context] along channels ([B, H, W, C + K]), the context zeroed with zero_context."""
    if context is None:
      return inputs
    if self.zero_context:
      context = context * 0.
    return tf.concat([inputs, tf.cast(context, inputs.dtype)], axis=-1)

  def _nins(self, stage: int, hidden: tf.Tensor) -> tf.Tensor:
    for nin in self.nin_convs[stage]:
      hidden = hidden + self.residual_scale * tf.nn.elu(nin(hidden))
    return hidden

  def _gate(self, pre_activation: tf.Tensor) -> tf.Tensor:
    # [..., 2F] -> [..., F]: sigmoid of the first half times tanh of the second (his order).
    return tf.sigmoid(pre_activation[..., :self.filters]) * tf.tanh(
        pre_activation[..., self.filters:])

  def call(self, inputs: tf.Tensor, context: Optional[tf.Tensor] = None, training=None):
    """Parameters of p(x_ij | window, z) for every pixel.

    Args:
      inputs: [batch, height, width, channels] pixels, already scaled for the network.
      context: [batch, height, width, context_channels] map computed from z, or None.
      training: unused.

    Returns:
      [batch, height, width, num_outputs] likelihood parameters.

    Raises:
      errors.ImageSizeError: per-pixel biases were built for another image size.
    """
    del training  # Unused.
    self.stem.check_size(inputs.shape[1], inputs.shape[2], self.name)
    hidden = tf.nn.elu(self.stem(self._first_input(inputs, context)))  # [B, H, W, F]
    hidden = self._nins(0, hidden)
    for stage in range(1, self.num_stages):
      # The gate's two halves as two convolutions (`TiedConv2D(num_parts=2)`): the same values
      # as slicing one [B, H, W, 2F] output, without the slices' copies.
      sigmoid_input, tanh_input = self.gated_convs[stage - 1](hidden, num_parts=2)
      gated = tf.sigmoid(sigmoid_input) * tf.tanh(tanh_input)  # [B, H, W, F]
      residual = self.post_convs[stage - 1](gated)  # [B, H, W, F]
      hidden = tf.nn.elu(hidden + self.residual_scale * residual)
      hidden = self._nins(stage, hidden)
    return self.output_conv(hidden)  # [B, H, W, num_outputs]

  # -- Generation -------------------------------------------------------------------------------

  def sample(self, context: Optional[tf.Tensor], likelihood, noise, shape) -> tf.Tensor:
    """Draws images pixel by pixel with cached activations (as `DepthLimitedPixelCNN.sample`).

    Args:
      context: [B, H, W, K] context map, or None.
      likelihood: the pixel likelihood whose parameters this decoder outputs.
      noise: `likelihood.noise(shape, seed)`.
      shape: [B, H, W, C]; H, W, C static, B may be a scalar tensor.

    Returns:
      [B, H, W, C] images, the same as `autoregressive_sampling.sample_sequential` draws with this
      noise.
    """
    return autoregressive_sampling.sample_by_autoregress(self, context, likelihood, noise, shape)

  def autoregress(self, context: Optional[tf.Tensor], likelihood, choose_pixel, shape) -> tf.Tensor:
    """Generates images in raster order, `choose_pixel` picking each pixel from its parameters.

    The interface of `DepthLimitedPixelCNN.autoregress` (sampling and the bits-back codec). Each
    step evaluates every layer at the new pixel only. A masked 3x3 layer's output at (i, j) is

        sum_{dc in -1..1} in[i-1, j+dc] K[0, 1+dc]  +  in[i, j-1] K[1, 0]  (+ in[i, j] K[1, 1], B)
          + bias[i, j]

    so the first sum is computed for a whole row at once from the previous row's cached layer
    inputs, and the rest pixel by pixel from the cached left input. The context part of the stem
    (a linear function of z only) is computed for all pixels at once.

    Args:
      context: [B, H, W, K] context map, or None.
      likelihood: the pixel likelihood whose parameters this decoder outputs.
      choose_pixel: `(params [B, P], row, col) -> [B, C]` pixels; `row` and `col` are scalar int32
        tensors. Called in raster order.
      shape: [B, H, W, C]; H, W, C static, B may be a scalar tensor.

    Returns:
      [B, H, W, C] the chosen pixels.

    Raises:
      ValueError: the decoder is not built (call it once on images first).
      errors.ImageSizeError: per-pixel biases were built for another image size.
    """
    if not self.built or not self.stem.built:
      raise ValueError(f'{self.name}: the cached sampler needs a built decoder: call it once on '
                       'images (or run the model\'s data init) first.')
    batch, height, width, channels = shape
    self.stem.check_size(height, width, self.name)
    filters = self.filters
    stem_kernel = self.stem.effective_kernel()  # [3, 3, C (+ K), F]
    image_kernel = stem_kernel[:, :, :channels]  # [3, 3, C, F]
    masked_uses = [conv for pair in zip(self.gated_convs, self.post_convs) for conv in pair]
    masked_uses.append(self.output_conv)  # In order: gated_1, post_1, ..., output.
    masked_kernels = [conv.effective_kernel() for conv in masked_uses]
    nin_kernels = [[conv.effective_kernel()[0, 0] for conv in stage] for stage in self.nin_convs]
    # The centre row's left and centre taps, taken once rather than at every pixel.
    image_left = image_kernel[1, 0]  # [C, F]
    masked_lefts = [kernel[1, 0] for kernel in masked_kernels]  # [C_in, C_out] each
    masked_centres = [kernel[1, 1] for kernel in masked_kernels]

    def bias_map(conv):
      """[1 or B, H, W, C_out] bias of a use at every pixel."""
      return tf.broadcast_to(conv.bias, [1, height, width, conv.shared.filters])

    # [B, H, W, F]: stem bias plus the stem applied to the context (masked A, all pixels).
    stem_term = tf.zeros([batch, height, width, filters]) + bias_map(self.stem)
    if context is not None:
      context = tf.cast(context, tf.float32)  # The cached path computes in float32.
      context_input = context * 0. if self.zero_context else context
      stem_term += tf.nn.conv2d(context_input, stem_kernel[:, :, channels:], 1, 'SAME')
    masked_biases = [bias_map(conv)[0] for conv in masked_uses]  # [H, W, C_out] each
    nin_biases = [[bias_map(conv)[0] for conv in stage] for stage in self.nin_convs]

    def above(row_values, kernel):
      """The kernel's top row applied to a whole previous row: [B, W, C_in] -> [B, W, C_out]."""
      return tf.nn.conv2d(row_values[:, None], kernel[:1], strides=1, padding='SAME')[:, 0]

    def step_row(row, previous_x, previous_inputs):
      """Chooses one row given the previous row of pixels and of every masked layer's input."""
      # Column-major [W, ...]: a column is then a slice of the first axis.
      stem_above = autoregressive_sampling.columns(
          above(previous_x, image_kernel) + stem_term[:, row])
      layer_above = [  # [W, B, C_out] each
          autoregressive_sampling.columns(above(values, kernel) + bias[row])
          for values, kernel, bias in zip(previous_inputs, masked_kernels, masked_biases)]
      row_nin_biases = [[bias[row] for bias in stage] for stage in nin_biases]  # [W, C] each

      def nins(stage, hidden, col):
        for kernel, bias in zip(nin_kernels[stage], row_nin_biases[stage]):
          hidden = hidden + self.residual_scale * tf.nn.elu(tf.matmul(hidden, kernel) + bias[col])
        return hidden

      def step_column(col, left_x, lefts, pixels, inputs):
        """Chooses the pixel at (row, col); caches every masked layer's input there."""
        lefts, inputs = list(lefts), list(inputs)

        def masked_at(index, value):
          """Layer `index` at (row, col) given its input there."""
          inputs[index] = inputs[index].write(col, value)
          out = (layer_above[index][col] + tf.matmul(lefts[index], masked_lefts[index])
                 + tf.matmul(value, masked_centres[index]))
          lefts[index] = value
          return out

        hidden = tf.nn.elu(stem_above[col] + tf.matmul(left_x, image_left))
        hidden = nins(0, hidden, col)
        for stage in range(1, self.num_stages):
          gated = self._gate(masked_at(2 * stage - 2, hidden))
          residual = masked_at(2 * stage - 1, gated)
          hidden = tf.nn.elu(hidden + self.residual_scale * residual)
          hidden = nins(stage, hidden, col)
        params = masked_at(len(masked_kernels) - 1, hidden)  # [B, P]
        pixel = tf.ensure_shape(choose_pixel(params, row, col), [None, channels])
        return (col + 1, likelihood.network_input(pixel), lefts, pixels.write(col, pixel),
                inputs)

      # The left neighbour of column 0 is every layer's zero padding.
      start = (tf.constant(0), tf.zeros([batch, channels]),
               [tf.zeros([batch, kernel.shape[2]]) for kernel in masked_kernels],
               tf.TensorArray(tf.float32, size=width),
               [tf.TensorArray(tf.float32, size=width) for _ in masked_kernels])
      _, _, _, pixels, inputs = autoregressive_sampling.column_loop(step_column, start, width)
      return (autoregressive_sampling.rows_of(pixels),
              [autoregressive_sampling.rows_of(values) for values in inputs])

    def next_row(row, rows, previous_x, previous_inputs):
      previous_x_network = tf.where(
          row > 0, likelihood.network_input(previous_x), tf.zeros_like(previous_x))
      new_x, new_inputs = step_row(row, previous_x_network, previous_inputs)
      return row + 1, rows.write(row, new_x), new_x, new_inputs

    # Explicit loops over rows and columns (callers may trace without autograph; `column_loop`).
    start = (tf.constant(0), tf.TensorArray(tf.float32, size=height),
             tf.zeros([batch, width, channels]),
             [tf.zeros([batch, width, kernel.shape[2]]) for kernel in masked_kernels])
    _, rows, _, _ = tf.while_loop(lambda row, *_: row < height, next_row, start)
    return tf.transpose(rows.stack(), [1, 0, 2, 3])

  # -- Description ------------------------------------------------------------------------------

  def window(self) -> masked.Window:
    """Offsets (drow, dcol) of the pixels that the output at (0, 0) sees."""
    type_a = masked.mask_offsets(masked.causal_mask((3, 3), 'A'))
    type_b = masked.mask_offsets(masked.causal_mask((3, 3), 'B'))
    # A gated block: identity shortcut | two stacked type-B convolutions.
    block = masked.IDENTITY | masked.compose(type_b, type_b)
    return masked.compose(type_a, *[block] * (self.num_stages - 1), type_b)

  def get_config(self):
    config = super().get_config()
    config.update(num_outputs=self.num_outputs, num_stages=self.num_stages,
                  filters=self.filters, extra_nins=self.extra_nins,
                  tie_weights=self.tie_weights, pixel_bias=self.pixel_bias,
                  zero_context=self.zero_context, residual_scale=self.residual_scale,
                  init_scale=self.init_scale)
    return config
