"""The 8-bit portable codec's encoder and context network: encoders.SpatialResNetEncoder and
context_networks.SpatialResNetDecoder (gin/models/cifar10_vlae_resnet.gin) in fixed point, with
the layers of `integer_networks` (weight norm folded in, 'SAME' convolutions, stride-2 and
transposed convolutions, ELU tables, residual scales as integer multipliers).

    encoder:  x -> stem -> stages (stride 2 of elu between them) -> 1x1 of elu
                -> loc, scale = softplus(.) + epsilon       [B, h, w, C] at 2^-24 (int64)
    context:  z (grid integers, F = 12) [B, h, w, C] -> 1x1 -> stages (Upsample of elu between
                them, cropped) -> k x k of elu               [B, H, W, K] at F = 12
"""

import numpy as np

from vlae_tf import errors
from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import integer_networks

_Layer = integer_networks._Layer  # pylint: disable=protected-access
_ResNetBlock = integer_networks._ResNetBlock  # pylint: disable=protected-access


def _stages(network):
  kinds = {type(block).__name__ for stage in network.stages for block in stage}
  if kinds - {'ResNetBlock'}:
    raise errors.UnsupportedModelError(
        f'the portable codec implements ResNet blocks, not {", ".join(sorted(kinds))}.')
  return [[_ResNetBlock(block) for block in stage] for stage in network.stages]


class SpatialEncoder:
  """x (network input at F = 12) -> (loc, scale) of q(z|x) at 2^-24, [B, h, w, C] int64."""

  def __init__(self, encoder):
    if encoder.context_projection is not None:
      raise errors.UnsupportedModelError('the portable codec takes an encoder without context.')
    self.stem = _Layer(encoder.stem)
    self.downsamples = [_Layer(layer) for layer in encoder.downsamples]
    self.stages = _stages(encoder)
    self.head = _Layer(encoder.posterior)
    self.epsilon = float(fxp.quantize(encoder.scale_epsilon, fxp.LATENT_BITS))

  def __call__(self, network_input):
    x = self.stem(network_input)
    for index, blocks in enumerate(self.stages):
      if index:
        x = self.downsamples[index - 1](fxp.elu(x))
      for block in blocks:
        x = block(x)
    loc, raw_scale = np.split(self.head(fxp.elu(x)), 2, axis=-1)
    scale = fxp.softplus(raw_scale, fxp.LATENT_BITS) + self.epsilon
    extra = fxp.LATENT_BITS - fxp.FRACTION_BITS
    return (loc * 2.0 ** extra).astype(np.int64), scale.astype(np.int64)


class SpatialContextNetwork:
  """z (grid integers at F = 12) [B, h, w, C] -> the context map [B, H, W, K] at F = 12."""

  def __init__(self, network):
    self.stem = _Layer(network.stem)
    self.upsamples = [(_Layer(up.conv), up.output_size) for up in network.upsamples]
    self.stages = _stages(network)
    self.head = _Layer(network.head)

  def __call__(self, z):
    x = self.stem(np.asarray(z, np.float64))
    for index, blocks in enumerate(self.stages):
      if index:
        upsample, size = self.upsamples[index - 1]
        x = upsample(fxp.elu(x))[:, :size[0], :size[1]]
      for block in blocks:
        x = block(x)
    return self.head(fxp.elu(x))
