"""ResNet / DenseNet encoders: x -> the posterior q(z|x) (loc, scale) and a context for an IAF or
convolutional AF posterior.

The conventions of every network (pre-activation streams, weight norm everywhere, ceil-halving
downsampling) are in blocks.py's docstring. Gin and Keras know these classes by this module's
name (`encoders.BinaryResNetEncoder`, package 'vlae_tf.encoders'); configs of older runs that say
`networks.BinaryResNetEncoder` are read through `gin_parsing.current_names`.
"""

import collections
from typing import Optional, Sequence

import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import blocks as blocks_lib
from vlae_tf.models import spatial_network

EncoderOutput = collections.namedtuple('EncoderOutput', ['loc', 'scale', 'context'])
EncoderOutput.__doc__ = """What an encoder returns.

Fields:
  loc: mean of the diagonal Gaussian posterior q(z|x), the shape of z.
  scale: its standard deviation, > 0, the shape of z.
  context: features of x for an IAF / convolutional AF posterior ([B, C] or [B, h, w, C]).
"""


def _softplus_scale(raw: tf.Tensor, epsilon: float) -> tf.Tensor:
  return tf.nn.softplus(raw) + epsilon


@gin.register(module='vlae_tf.encoders')
@keras.saving.register_keras_serializable(package='vlae_tf.encoders')
class BinaryResNetEncoder(keras.layers.Layer):
  """ResNet encoder for binary images: x [B, H, W, C] -> (loc, scale [B, latent], context).

      x -> stem conv k x k (filters[0])                                   # [B, 28, 28, 16]
        -> per stage i: conv stride 2 (filters[i]) of elu, blocks_per_stage ResNetBlocks
                                                          # 14x14x16 -> 7x7x32 -> 4x4x32
        -> flatten(elu) -> dense hidden_size, ELU = hidden                # [B, 450]
        -> dense 2 * latent_size -> loc, scale = softplus(.) + scale_epsilon
      context = hidden if context_size is None, else dense context_size (linear) of hidden.

  Defaults are the paper scripts' binary-image encoder (3x3 kernels, 16/32/32 filters, 450
  hidden units, 64 latent dimensions).
  """

  def __init__(self, latent_size: int = 64, filters: Sequence[int] = (16, 32, 32),
               blocks_per_stage: int = 1, hidden_size: int = 450,
               context_size: Optional[int] = None, kernel_size: int = 3,
               residual_scale: float = 0.1, scale_epsilon: float = 1e-5,
               use_weight_norm: bool = True, **kwargs):
    """Makes the encoder.

    Args:
      latent_size: dimensions of z.
      filters: width of each downsampling stage; one stride-2 convolution per entry.
      blocks_per_stage: ResNet blocks after each downsampling.
      hidden_size: units of the dense ELU layer.
      context_size: None: the context is the hidden layer itself ([B, hidden_size]); an int: a
        linear dense projection of it to that size.
      kernel_size: side of every square kernel.
      residual_scale: multiplies every residual branch.
      scale_epsilon: added to softplus to keep scale > 0.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(**kwargs)
    self.latent_size = latent_size
    self.filters = tuple(filters)
    self.blocks_per_stage = blocks_per_stage
    self.hidden_size = hidden_size
    self._context_size = context_size
    self.kernel_size = kernel_size
    self.residual_scale = residual_scale
    self.scale_epsilon = scale_epsilon
    self.use_weight_norm = use_weight_norm
    self.stem = blocks_lib.conv(self.filters[0], kernel_size, use_weight_norm)
    self.downsamples = [blocks_lib.conv(width, kernel_size, use_weight_norm, strides=2)
                        for width in self.filters]
    self.stages = [[blocks_lib.ResNetBlock(width, kernel_size, residual_scale, use_weight_norm)
                    for _ in range(blocks_per_stage)] for width in self.filters]
    self.hidden = blocks_lib.dense(hidden_size, use_weight_norm, activation='elu')
    self.posterior = blocks_lib.dense(2 * latent_size, use_weight_norm)
    self.context_projection = (None if context_size is None
                               else blocks_lib.dense(context_size, use_weight_norm))

  @property
  def context_size(self) -> int:
    """Size of the context vector."""
    return self.hidden_size if self._context_size is None else self._context_size

  def call(self, inputs, training=None):
    del training  # Unused.
    x = self.stem(inputs)  # [batch, height, width, filters[0]]
    for downsample, blocks in zip(self.downsamples, self.stages):
      x = downsample(tf.nn.elu(x))  # [batch, ceil(height / 2), ceil(width / 2), filters[i]]
      for block in blocks:
        x = block(x)
    flat = tf.reshape(tf.nn.elu(x), [tf.shape(x)[0], x.shape[1] * x.shape[2] * x.shape[3]])
    hidden = self.hidden(flat)  # [batch, hidden_size]
    # float32 from here on, also when the layers compute in bfloat16 (precision.py).
    head = tf.cast(self.posterior(hidden), tf.float32)
    loc, raw_scale = tf.split(head, 2, axis=-1)  # 2 x [batch, latent_size]
    context = hidden if self.context_projection is None else self.context_projection(hidden)
    return EncoderOutput(loc, _softplus_scale(raw_scale, self.scale_epsilon),
                         tf.cast(context, tf.float32))

  def get_config(self):
    config = super().get_config()
    config.update(latent_size=self.latent_size, filters=self.filters,
                  blocks_per_stage=self.blocks_per_stage, hidden_size=self.hidden_size,
                  context_size=self._context_size, kernel_size=self.kernel_size,
                  residual_scale=self.residual_scale, scale_epsilon=self.scale_epsilon,
                  use_weight_norm=self.use_weight_norm)
    return config


class _SpatialEncoder(spatial_network.SpatialNetwork):
  """x [B, H, W, C] -> loc, scale [B, h, w, latent_channels], context [B, h, w, .].

      x -> stem conv k x k (filters[0])
        -> stage 0 blocks; per later stage i: conv stride 2 (filters[i]) of elu, stage i blocks
        -> conv 1x1 of elu -> 2 * latent_channels -> loc, scale = softplus(.) + scale_epsilon
      context = elu(x) if context_channels is None, else conv 1x1 of elu(x).

  h, w = ceil-halving of H, W, len(filters) - 1 times (32 -> 16 -> 8).
  """

  def __init__(self, filters, blocks, latent_channels, context_channels, kernel_size,
               scale_epsilon, use_weight_norm, **kwargs):
    super().__init__(filters, blocks, kernel_size, use_weight_norm, **kwargs)
    self.latent_channels = latent_channels
    self.context_channels = context_channels
    self.scale_epsilon = scale_epsilon
    self.stem = blocks_lib.conv(self.filters[0], kernel_size, use_weight_norm)
    self.downsamples = [blocks_lib.conv(width, kernel_size, use_weight_norm, strides=2)
                        for width in self.filters[1:]]
    self.stages = self._make_stages()
    self.posterior = blocks_lib.conv(2 * latent_channels, 1, use_weight_norm)
    self.context_projection = (None if context_channels is None
                               else blocks_lib.conv(context_channels, 1, use_weight_norm))

  def call(self, inputs, training=None):
    del training  # Unused.
    x = self.stem(inputs)  # [batch, height, width, filters[0]]
    for i, blocks in enumerate(self.stages):
      if i > 0:
        x = self.downsamples[i - 1](tf.nn.elu(x))  # [batch, ceil(h / 2), ceil(w / 2), filters[i]]
      for block in blocks:
        x = block(x)
    features = tf.nn.elu(x)  # [batch, h, w, filters[-1]]
    # float32 from here on, also when the layers compute in bfloat16 (precision.py).
    head = tf.cast(self.posterior(features), tf.float32)
    loc, raw_scale = tf.split(head, 2, axis=-1)  # 2 x [b, h, w, latent]
    context = (features if self.context_projection is None
               else self.context_projection(features))
    return EncoderOutput(loc, _softplus_scale(raw_scale, self.scale_epsilon),
                         tf.cast(context, tf.float32))

  def get_config(self):
    config = super().get_config()
    config.update(latent_channels=self.latent_channels, context_channels=self.context_channels,
                  scale_epsilon=self.scale_epsilon)
    return config


@gin.register(module='vlae_tf.encoders')
@keras.saving.register_keras_serializable(package='vlae_tf.encoders')
class SpatialResNetEncoder(_SpatialEncoder):
  """CIFAR-10 ResNet encoder: x [B, 32, 32, 3] -> loc, scale [B, 8, 8, 16], context [B, 8, 8, .].

  Paper: 2 ResNet blocks, stride-2 conv, 2 blocks, stride-2 conv, 3 blocks, 1x1 conv; 48 channels
  at 32x32, 96 elsewhere:

      stem 3x3 (48) @32 -> 2 x ResNetBlock(48) -> stride 2 (96) @16 -> 2 x ResNetBlock(96)
        -> stride 2 (96) @8 -> 3 x ResNetBlock(96) -> 1x1 -> loc, scale (16 each)
  """

  block_class = blocks_lib.ResNetBlock
  block_arguments = ('residual_scale',)

  def __init__(self, filters: Sequence[int] = (48, 96, 96), blocks: Sequence[int] = (2, 2, 3),
               latent_channels: int = 16, context_channels: Optional[int] = None,
               kernel_size: int = 3, residual_scale: float = 0.1, scale_epsilon: float = 1e-5,
               use_weight_norm: bool = True, **kwargs):
    """Makes the encoder.

    Args:
      filters: width of each stage, full resolution first; a stride-2 convolution between stages.
      blocks: ResNet blocks per stage.
      latent_channels: channels of z.
      context_channels: None: the context is elu of the last stage ([B, h, w, filters[-1]]);
        an int: a 1x1 convolution of it to that many channels.
      kernel_size: side of every square kernel but the 1x1 ones.
      residual_scale: multiplies every residual branch.
      scale_epsilon: added to softplus to keep scale > 0.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(filters, blocks, latent_channels, context_channels, kernel_size,
                     scale_epsilon, use_weight_norm, residual_scale=residual_scale, **kwargs)


@gin.register(module='vlae_tf.encoders')
@keras.saving.register_keras_serializable(package='vlae_tf.encoders')
class SpatialDenseNetEncoder(_SpatialEncoder):
  """CIFAR-10 DenseNet encoder: `SpatialResNetEncoder` with DenseNet blocks.

  Paper: each pair of ResNet blocks becomes one 3-step DenseNet block. The paper's last stage has
  3 ResNet blocks; the default here rounds up to 2 DenseNet blocks (blocks=(1, 1, 2)).
  """

  block_class = blocks_lib.DenseNetBlock
  block_arguments = ('growth_rate', 'num_steps')

  def __init__(self, filters: Sequence[int] = (48, 96, 96), blocks: Sequence[int] = (1, 1, 2),
               latent_channels: int = 16, context_channels: Optional[int] = None,
               growth_rate: int = 32, num_steps: int = 3, kernel_size: int = 3,
               scale_epsilon: float = 1e-5, use_weight_norm: bool = True, **kwargs):
    """Makes the encoder.

    Args:
      filters: width of each stage, full resolution first; a stride-2 convolution between stages.
      blocks: DenseNet blocks per stage.
      latent_channels: channels of z.
      context_channels: None: the context is elu of the last stage; an int: a 1x1 convolution.
      growth_rate: maps added by each DenseNet step.
      num_steps: steps per DenseNet block.
      kernel_size: side of every square kernel but the 1x1 ones.
      scale_epsilon: added to softplus to keep scale > 0.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(filters, blocks, latent_channels, context_channels, kernel_size,
                     scale_epsilon, use_weight_norm, growth_rate=growth_rate,
                     num_steps=num_steps, **kwargs)
