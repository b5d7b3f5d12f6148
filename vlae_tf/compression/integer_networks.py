"""The portable codec's networks: a trained VLAE's encoder, context network, PixelCNN and AF prior
evaluated in fixed point (`fixed_point`), the same integers on every machine.

Supported (`supports`): the architecture of gin/mnist_vlae.gin and the shipped static_mnist model,

    BinaryResNetEncoder -> DiagonalGaussianPosterior,  AutoregressiveFlowPrior(shift_only=True),
    BinaryResNetDecoder (context network) -> GatedResNetPixelCNN, Bernoulli pixels,

with weight norm folded into the weights (`_weight_normed`, `_tied`), every ELU, sigmoid, tanh
and softplus a table, every residual scale an integer multiplier. Each network mirrors its float
counterpart line by line (encoders.py, context_networks.py, gated_resnet_pixelcnn.py,
flows.py); tests/compression/integer_networks_test.py checks that they agree with it to the
fixed-point resolution.

Because the arithmetic is exact, the PixelCNN's parallel pass (every pixel at once, used when
compressing) and its pixel-by-pixel pass (`decode_pixels`, used when decompressing) give the same
integers: the float codec had to take both from the cached sampler for want of that.

The AF prior becomes a bijection of the latent grid (an integer discrete flow, Hoogeboom et al.
2019): each shift-only MAF step is z_i = eps_i + S_i(z_<i) with S the MADE's output rounded to
the grid, whose inverse eps = z - S(z) is exact. So p(z) on the grid is the base N(0, I) mass of
eps = f^-1(z): no Jacobian, no local bits-back, and no float Cholesky factor are needed.
"""

import numpy as np

from vlae_tf import errors
from vlae_tf.compression import fixed_point as fxp

GRID_BITS = fxp.FRACTION_BITS   # Latents live on the grid k * 2^-12: z at F = 12 is k itself.


def supports(model) -> bool:
  """Whether `model` has the architecture these networks implement (module docstring)."""
  names = dict(encoder=type(model.encoder).__name__, posterior=type(model.posterior).__name__,
               prior=type(model.prior).__name__,
               context=type(model.context_network).__name__,
               decoder=type(model.decoder).__name__, likelihood=type(model.likelihood).__name__)
  return (names == dict(encoder='BinaryResNetEncoder', posterior='DiagonalGaussianPosterior',
                        prior='AutoregressiveFlowPrior', context='BinaryResNetDecoder',
                        decoder='GatedResNetPixelCNN', likelihood='Bernoulli')
          and model.prior.shift_only and model.encoder._context_size is None  # pylint: disable=protected-access
          and len(model.latent_shape) == 1)


# -- Weights from the float32 variables (deterministic float64 operations, no TensorFlow) ----------


def _numpy(variable):
  return np.asarray(variable.numpy(), np.float64)


def _weight_normed(layer):
  """(kernel, bias, activation name) of a Keras layer, weight-normed (g * v / ||v||) or plain."""
  inner = getattr(layer, 'layer', layer)
  if hasattr(layer, 'v'):
    v, g = _numpy(layer.v), _numpy(layer.g)
    axes = [int(axis) % v.ndim for axis in np.asarray(layer.kernel_norm_axes)]
    filter_axis = layer.filter_axis % v.ndim
    shape = [1] * v.ndim
    shape[filter_axis] = -1
    kernel = v / fxp.channel_norms(v, axes) * g.reshape(shape)
  else:
    kernel = _numpy(inner.kernel)
  activation = getattr(inner.activation, '__name__', 'linear')
  return kernel, _numpy(inner.bias), activation


def _tied(use):
  """(kernel [k, k, C, O], bias map or vector) of a `tied_conv.TiedConv2D`: direction * scale."""
  shared = use.shared
  v = _numpy(shared.kernel) * np.asarray(shared.mask.numpy(), np.float64)
  kernel = v / fxp.channel_norms(v, [0, 1, 2]) * _numpy(use.scale)
  return kernel, _numpy(use.bias)


def _elu_if(activation, x):
  if activation == 'elu':
    return fxp.elu(x)
  if activation == 'linear':
    return x
  raise errors.UnsupportedModelError(f'the portable codec has no table for {activation}.')


class _Layer:
  """A weight-normed Conv2D / Dense / Conv2DTranspose in fixed point, with its activation."""

  def __init__(self, layer):
    kernel, bias, self.activation = _weight_normed(layer)
    inner = getattr(layer, 'layer', layer)
    kind = type(inner).__name__
    if kind == 'Conv2DTranspose':
      self.op = fxp.ConvTranspose(kernel, bias)
    elif kind == 'Conv2D':
      self.op = fxp.Conv(kernel, bias, stride=inner.strides[0])
    elif kind == 'Dense':
      self.op = fxp.Linear(kernel, bias)
    else:
      raise errors.UnsupportedModelError(f'the portable codec has no {kind} layer.')

  def __call__(self, x):
    return _elu_if(self.activation, self.op(x))


class _ResNetBlock:
  """y = x + 0.1 * conv_2(elu(conv_1(elu(x)))) (blocks.ResNetBlock)."""

  def __init__(self, block):
    self.conv_1, self.conv_2 = _Layer(block.conv_1), _Layer(block.conv_2)
    self.residual_scale = block.residual_scale

  def __call__(self, x):
    return x + fxp.scale_by(self.conv_2(self.conv_1(fxp.elu(x))), self.residual_scale)


class Encoder:
  """x -> (loc, scale) of q(z|x) at 2^-24 (encoders.BinaryResNetEncoder)."""

  def __init__(self, encoder):
    self.stem = _Layer(encoder.stem)
    self.downsamples = [_Layer(layer) for layer in encoder.downsamples]
    self.stages = [[_ResNetBlock(block) for block in stage] for stage in encoder.stages]
    self.hidden = _Layer(encoder.hidden)
    self.head = _Layer(encoder.posterior)
    self.epsilon = float(fxp.quantize(encoder.scale_epsilon, fxp.LATENT_BITS))

  def __call__(self, network_input):
    x = self.stem(network_input)
    for downsample, blocks in zip(self.downsamples, self.stages):
      x = downsample(fxp.elu(x))
      for block in blocks:
        x = block(x)
    hidden = self.hidden(fxp.elu(x).reshape(len(x), -1))
    loc, raw_scale = np.split(self.head(hidden), 2, axis=-1)
    extra = fxp.LATENT_BITS - fxp.FRACTION_BITS
    scale = fxp.softplus(raw_scale, fxp.LATENT_BITS) + self.epsilon
    return (loc * 2.0 ** extra).astype(np.int64), scale.astype(np.int64)


class ContextNetwork:
  """z (grid integers) -> the context map [B, H, W, K] at F = 12 (BinaryResNetDecoder)."""

  def __init__(self, network):
    self.hidden = _Layer(network.hidden)
    self.projection = _Layer(network.projection)
    self.upsamples = [(_Layer(up.conv), up.output_size) for up in network.upsamples]
    self.stages = [[_ResNetBlock(block) for block in stage] for stage in network.stages]
    self.head = _Layer(network.head)
    self.input_size = (*network._input_size, network.filters[0])  # pylint: disable=protected-access

  def __call__(self, z):
    hidden = self.hidden(np.asarray(z, np.float64))
    x = self.projection(hidden).reshape(len(hidden), *self.input_size)
    for (upsample, size), blocks in zip(self.upsamples, self.stages):
      x = upsample(fxp.elu(x))[:, :size[0], :size[1]]
      for block in blocks:
        x = block(x)
    return self.head(fxp.elu(x))


class _MaskedUse:
  """One `TiedConv2D` use of a 3x3 (or 1x1) kernel: a `Linear` on patches, plus its bias map."""

  def __init__(self, use, height, width):
    kernel, bias = _tied(use)
    self.kernel_size = kernel.shape[0]
    self.linear = fxp.Linear(kernel.reshape(-1, kernel.shape[-1]), None)
    self.bias = fxp.quantize(np.broadcast_to(bias.reshape(-1, kernel.shape[-1]) if bias.ndim == 1
                                             else bias[0], (height, width, kernel.shape[-1])))

  def parallel(self, x):
    """[B, H, W, C] -> [B, H, W, O]: every pixel."""
    if self.kernel_size == 1:
      return self.linear(x) + self.bias
    return self.linear(fxp.patches(x, 3)) + self.bias

  def at(self, padded, row, col):
    """The output at (row, col) from the layer's input map padded by one pixel: [B, O]."""
    if self.kernel_size == 1:
      return self.linear(padded[:, row + 1, col + 1]) + self.bias[row, col]
    patch = padded[:, row:row + 3, col:col + 3].reshape(len(padded), -1)
    return self.linear(patch) + self.bias[row, col]


class PixelCNN:
  """The gated-ResNet PixelCNN (gated_resnet_pixelcnn.GatedResNetPixelCNN) in fixed point."""

  def __init__(self, decoder, image_shape):
    height, width, self.channels = image_shape
    self.shape = (height, width)
    use = lambda conv: _MaskedUse(conv, height, width)
    self.stem = use(decoder.stem)
    self.gated = [use(conv) for conv in decoder.gated_convs]
    self.post = [use(conv) for conv in decoder.post_convs]
    self.nins = [[use(conv) for conv in stage] for stage in decoder.nin_convs]
    self.output = use(decoder.output_conv)
    self.residual_scale = decoder.residual_scale
    self.filters = decoder.filters
    self.zero_context = decoder.zero_context

  def _stem_input(self, pixels, context):
    network_input = (2.0 * pixels - 1.0) * fxp.ONE  # Bernoulli.network_input: 2x - 1.
    if self.zero_context:
      context = context * 0.0
    return np.concatenate([network_input, context], axis=-1)

  def _gate(self, pre_activation):
    half = pre_activation.shape[-1] // 2
    return fxp.product(fxp.sigmoid(pre_activation[..., :half]),
                       fxp.tanh(pre_activation[..., half:]))

  def _nin(self, hidden, value):
    """A NIN residual layer: hidden + 0.1 * elu(value), value = the 1x1 convolution of hidden."""
    return hidden + fxp.scale_by(fxp.elu(value), self.residual_scale)

  def logits(self, pixels, context):
    """Every pixel's logit [B, H, W, 1] at F = 12 from known pixels {0, 1} [B, H, W, 1]."""
    hidden = fxp.elu(self.stem.parallel(self._stem_input(pixels, context)))
    for stage, nins in enumerate(self.nins):
      if stage:
        gated = self._gate(self.gated[stage - 1].parallel(hidden))
        residual = self.post[stage - 1].parallel(gated)
        hidden = fxp.elu(hidden + fxp.scale_by(residual, self.residual_scale))
      for nin in nins:
        hidden = self._nin(hidden, nin.parallel(hidden))
    return self.output.parallel(hidden)

  def decode_pixels(self, context, choose_pixel):
    """Pixels in raster order, `choose_pixel(logits [B, 1], row, col) -> [B]` picking each.

    Each layer's input map is kept (padded by one pixel) and each layer evaluated at the new
    pixel only, from its 3x3 patch: the same integers as `logits` (exact arithmetic)."""
    batch = len(context)
    height, width = self.shape

    def padded(channels):
      return np.zeros((batch, height + 2, width + 2, channels))

    stem_map = np.pad(self._stem_input(np.zeros((batch, height, width, self.channels)), context),
                      ((0, 0), (1, 1), (1, 1), (0, 0)))
    stem_map[..., :self.channels] = 0.0  # Pixels not yet decoded (masked out: any value works).
    gated_maps = [padded(self.filters) for _ in self.gated]
    post_maps = [padded(self.filters) for _ in self.post]
    output_map = padded(self.filters)
    pixels = np.zeros((batch, height, width, self.channels))
    for row in range(height):
      for col in range(width):
        hidden = fxp.elu(self.stem.at(stem_map, row, col))
        for stage, nins in enumerate(self.nins):
          if stage:
            gated_maps[stage - 1][:, row + 1, col + 1] = hidden
            gated = self._gate(self.gated[stage - 1].at(gated_maps[stage - 1], row, col))
            post_maps[stage - 1][:, row + 1, col + 1] = gated
            residual = self.post[stage - 1].at(post_maps[stage - 1], row, col)
            hidden = fxp.elu(hidden + fxp.scale_by(residual, self.residual_scale))
          for nin in nins:
            hidden = self._nin(hidden, nin.linear(hidden) + nin.bias[row, col])
        output_map[:, row + 1, col + 1] = hidden
        logits = self.output.at(output_map, row, col)  # [B, 1]
        pixel = choose_pixel(logits, row, col)  # [B]
        pixels[:, row, col, 0] = pixel
        stem_map[:, row + 1, col + 1, 0] = (2.0 * pixel - 1.0) * fxp.ONE
    return pixels


class _MADE:
  """A shift-only MADE (tfb.AutoregressiveNetwork, ReLU) in fixed point: z -> shift in grid units."""

  def __init__(self, network):
    dense = [layer for layer in network._network.layers  # pylint: disable=protected-access
             if type(layer).__name__ == 'Dense']
    masks = network._masks  # pylint: disable=protected-access
    if network._conditional or len(dense) != len(masks):  # pylint: disable=protected-access
      raise errors.UnsupportedModelError('the portable codec supports an unconditional MADE.')
    self.layers = [fxp.Linear(_numpy(layer.kernel) * np.asarray(mask, np.float64),
                              _numpy(layer.bias)) for layer, mask in zip(dense, masks)]

  def __call__(self, z):
    x = np.asarray(z, np.float64)
    for index, layer in enumerate(self.layers):
      x = layer(x)
      if index + 1 < len(self.layers):
        x = fxp.relu(x)
    return x


class Flow:
  """The shift-only AF prior as a bijection of the grid (module docstring).

  Steps as flows.AutoregressiveFlowPrior.bijector chains them, acting on eps:
  MAF_0, reverse, MAF_1, ..., MAF_{K-1}, and a last reverse when the reversals are odd."""

  def __init__(self, prior):
    self.mades = [_MADE(network) for network in prior.made_networks]
    self.final_reverse = (len(self.mades) - 1) % 2 == 1

  def inverse(self, z):
    """eps = f^-1(z): one parallel MADE pass per step (grid integers in and out)."""
    y = np.asarray(z, np.float64)
    if self.final_reverse:
      y = y[:, ::-1]
    for index in reversed(range(len(self.mades))):
      y = y - self.mades[index](y)
      if index:
        y = y[:, ::-1]
    return np.ascontiguousarray(y).astype(np.int64)

  def forward(self, eps):
    """z = f(eps): each step's y = x + S(y) by fixed-point iteration, which reaches the unique
    solution within D passes (autoregressive) and stops at the first pass that changes nothing."""
    x = np.asarray(eps, np.float64)
    for index, made in enumerate(self.mades):
      if index:
        x = x[:, ::-1]
      y = x.copy()
      for _ in range(x.shape[1] + 1):
        updated = x + made(y)
        if np.array_equal(updated, y):
          break
        y = updated
      else:
        raise AssertionError('the integer flow did not reach its fixed point.')
      x = y
    if self.final_reverse:
      x = x[:, ::-1]
    return np.ascontiguousarray(x).astype(np.int64)


CHUNK = 16   # Images per parallel pass: the arrays stay in cache (2x faster than 500 at once).


def in_chunks(function, *arrays):
  """function(*arrays) computed CHUNK images at a time and concatenated (the same integers)."""
  parts = [function(*(array[start:start + CHUNK] for array in arrays))
           for start in range(0, len(arrays[0]), CHUNK)]
  if isinstance(parts[0], tuple):
    return tuple(np.concatenate(pieces) for pieces in zip(*parts))
  return np.concatenate(parts)


class IntegerVLAE:
  """The four networks of a supported VLAE (`supports`) in fixed point."""

  def __init__(self, model):
    if not supports(model):
      raise errors.UnsupportedModelError(
          'the portable codec implements the architecture of gin/mnist_vlae.gin (ResNet encoder '
          'and context network, gated-ResNet PixelCNN, shift-only AF prior, Bernoulli pixels).')
    self.image_shape = tuple(model.image_shape)
    self.latent_size = model.latent_shape[0]
    self.encoder = Encoder(model.encoder)
    self.context_network = ContextNetwork(model.context_network)
    self.pixelcnn = PixelCNN(model.decoder, self.image_shape)
    self.flow = Flow(model.prior)

  def posterior(self, images):
    """(loc, scale) of q(z|x) at 2^-24 (int64) for binary images [B, H, W, C]."""
    return in_chunks(self.encoder, (2.0 * np.asarray(images, np.float64) - 1.0) * fxp.ONE)

  def context(self, z):
    """The context map [B, H, W, K] of grid latents z [B, D]."""
    return in_chunks(self.context_network, z)

  def logits(self, images, context):
    """Every pixel's logit [B, H, W, 1] (the PixelCNN's parallel pass)."""
    return in_chunks(self.pixelcnn.logits, np.asarray(images, np.float64), context)
