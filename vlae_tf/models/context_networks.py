"""ResNet / DenseNet context networks (the paper's "decoders" of z): z -> a context map the size of
the image, which conditions the autoregressive decoder p(x|z).

The conventions of every network (pre-activation streams, weight norm everywhere, upsampling to
the encoder's sizes in reverse) are in blocks.py's docstring. Gin and Keras know these classes by
this module's name (`context_networks.BinaryResNetDecoder`, package 'vlae_tf.context_networks');
configs of older runs that say `networks.BinaryResNetDecoder` are read through
`gin_parsing.current_names`.
"""

from typing import Sequence

import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import blocks as blocks_lib
from vlae_tf.models import spatial_network

@gin.register(module='vlae_tf.context_networks')
@keras.saving.register_keras_serializable(package='vlae_tf.context_networks')
class BinaryResNetDecoder(keras.layers.Layer):
  """Upsampling ResNet: z [B, latent] -> context map [B, H, W, context_channels].

      z -> dense hidden_size, ELU -> dense h0 * w0 * filters[0] -> reshape   # [B, 4, 4, 32]
        -> per stage i: Upsample to filters[i] and the stage size, blocks_per_stage ResNetBlocks
                                                   # 7x7x32 -> 14x14x32 -> 28x28x16
        -> conv k x k of elu -> context_channels                            # [B, 28, 28, 4]

  The stage sizes are `halved_sizes(output_shape, len(filters))` in reverse (4 -> 7 -> 14 -> 28
  for 28x28; 2 -> 3 -> 6 -> 12 by 2 -> 3 -> 5 -> 10 for 12x10).
  """

  def __init__(self, output_shape: Sequence[int] = (28, 28), context_channels: int = 4,
               filters: Sequence[int] = (32, 32, 16), blocks_per_stage: int = 1,
               hidden_size: int = 450, kernel_size: int = 3, residual_scale: float = 0.1,
               use_weight_norm: bool = True, **kwargs):
    """Makes the decoder.

    Args:
      output_shape: (height, width) of the context map (the image size).
      context_channels: channels of the context map (4 in the paper).
      filters: width of each upsampling stage, from the lowest resolution; filters[0] is also
        the width of the reshaped dense output.
      blocks_per_stage: ResNet blocks after each upsampling.
      hidden_size: units of the dense ELU layer.
      kernel_size: side of every square kernel.
      residual_scale: multiplies every residual branch.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(**kwargs)
    self._output_hw = tuple(int(s) for s in output_shape)
    self.context_channels = context_channels
    self.filters = tuple(filters)
    self.blocks_per_stage = blocks_per_stage
    self.hidden_size = hidden_size
    self.kernel_size = kernel_size
    self.residual_scale = residual_scale
    self.use_weight_norm = use_weight_norm
    sizes = blocks_lib.halved_sizes(self._output_hw, len(self.filters))[::-1]  # lowest resolution first
    self._input_size = sizes[0]
    self.hidden = blocks_lib.dense(hidden_size, use_weight_norm, activation='elu')
    self.projection = blocks_lib.dense(sizes[0][0] * sizes[0][1] * self.filters[0], use_weight_norm)
    self.upsamples = [blocks_lib.Upsample(width, size, kernel_size, use_weight_norm)
                      for width, size in zip(self.filters, sizes[1:])]
    self.stages = [[blocks_lib.ResNetBlock(width, kernel_size, residual_scale, use_weight_norm)
                    for _ in range(blocks_per_stage)] for width in self.filters]
    self.head = blocks_lib.conv(context_channels, kernel_size, use_weight_norm)

  def call(self, inputs, training=None):
    del training  # Unused.
    hidden = self.hidden(inputs)  # [batch, hidden_size]
    x = tf.reshape(self.projection(hidden), [-1, *self._input_size, self.filters[0]])
    for upsample, blocks in zip(self.upsamples, self.stages):
      x = upsample(x)  # [batch, stage height, stage width, filters[i]]
      for block in blocks:
        x = block(x)
    return self.head(tf.nn.elu(x))  # [batch, height, width, context_channels]

  def get_config(self):
    config = super().get_config()
    config.update(output_shape=self._output_hw, context_channels=self.context_channels,
                  filters=self.filters, blocks_per_stage=self.blocks_per_stage,
                  hidden_size=self.hidden_size, kernel_size=self.kernel_size,
                  residual_scale=self.residual_scale, use_weight_norm=self.use_weight_norm)
    return config


class _SpatialDecoder(spatial_network.SpatialNetwork):
  """z [B, h, w, latent] -> context map [B, H, W, context_channels]; mirrors `_SpatialEncoder`.

      z -> conv 1x1 (filters[0]) -> stage 0 blocks
        -> per later stage i: Upsample to filters[i] and the stage size, stage i blocks
        -> conv k x k of elu -> context_channels

  The stage sizes are `halved_sizes(output_shape, len(filters) - 1)` in reverse; z must have
  the smallest (8x8 for 32x32).
  """

  def __init__(self, output_shape, context_channels, filters, blocks, kernel_size,
               use_weight_norm, **kwargs):
    super().__init__(filters, blocks, kernel_size, use_weight_norm, **kwargs)
    self._output_hw = tuple(int(s) for s in output_shape)
    self.context_channels = context_channels
    sizes = blocks_lib.halved_sizes(self._output_hw, len(self.filters) - 1)[::-1]
    self._input_size = sizes[0]
    self.stem = blocks_lib.conv(self.filters[0], 1, use_weight_norm)
    self.upsamples = [blocks_lib.Upsample(width, size, kernel_size, use_weight_norm)
                      for width, size in zip(self.filters[1:], sizes[1:])]
    self.stages = self._make_stages()
    self.head = blocks_lib.conv(context_channels, kernel_size, use_weight_norm)

  def build(self, input_shape):
    if tuple(input_shape[1:3]) != self._input_size:
      raise ValueError(f'z must be {self._input_size} for output {self._output_hw}; got '
                       f'{tuple(input_shape[1:3])}.')
    super().build(input_shape)

  def call(self, inputs, training=None):
    del training  # Unused.
    x = self.stem(inputs)  # [batch, h, w, filters[0]]
    for i, blocks in enumerate(self.stages):
      if i > 0:
        x = self.upsamples[i - 1](x)  # [batch, stage height, stage width, filters[i]]
      for block in blocks:
        x = block(x)
    return self.head(tf.nn.elu(x))  # [batch, height, width, context_channels]

  def get_config(self):
    config = super().get_config()
    config.update(output_shape=self._output_hw, context_channels=self.context_channels)
    return config


@gin.register(module='vlae_tf.context_networks')
@keras.saving.register_keras_serializable(package='vlae_tf.context_networks')
class SpatialResNetDecoder(_SpatialDecoder):
  """CIFAR-10 ResNet decoder, the encoder mirrored: z [B, 8, 8, 16] -> [B, 32, 32, channels].

      1x1 (96) @8 -> 3 x ResNetBlock(96) -> Upsample (96) @16 -> 2 x ResNetBlock(96)
        -> Upsample (48) @32 -> 2 x ResNetBlock(48) -> 3x3 of elu -> context_channels
  """

  block_class = blocks_lib.ResNetBlock
  block_arguments = ('residual_scale',)

  def __init__(self, output_shape: Sequence[int] = (32, 32), context_channels: int = 64,
               filters: Sequence[int] = (96, 96, 48), blocks: Sequence[int] = (3, 2, 2),
               kernel_size: int = 3, residual_scale: float = 0.1, use_weight_norm: bool = True,
               **kwargs):
    """Makes the decoder.

    Args:
      output_shape: (height, width) of the context map (the image size).
      context_channels: channels of the context map fed to the PixelCNN++ decoder.
      filters: width of each stage, lowest resolution first; an Upsample between stages.
      blocks: ResNet blocks per stage.
      kernel_size: side of every square kernel but the 1x1 stem.
      residual_scale: multiplies every residual branch.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(output_shape, context_channels, filters, blocks, kernel_size,
                     use_weight_norm, residual_scale=residual_scale, **kwargs)


@gin.register(module='vlae_tf.context_networks')
@keras.saving.register_keras_serializable(package='vlae_tf.context_networks')
class SpatialDenseNetDecoder(_SpatialDecoder):
  """CIFAR-10 DenseNet decoder: `SpatialResNetDecoder` with DenseNet blocks (blocks=(2, 1, 1))."""

  block_class = blocks_lib.DenseNetBlock
  block_arguments = ('growth_rate', 'num_steps')

  def __init__(self, output_shape: Sequence[int] = (32, 32), context_channels: int = 64,
               filters: Sequence[int] = (96, 96, 48), blocks: Sequence[int] = (2, 1, 1),
               growth_rate: int = 32, num_steps: int = 3, kernel_size: int = 3,
               use_weight_norm: bool = True, **kwargs):
    """Makes the decoder.

    Args:
      output_shape: (height, width) of the context map (the image size).
      context_channels: channels of the context map fed to the PixelCNN++ decoder.
      filters: width of each stage, lowest resolution first; an Upsample between stages.
      blocks: DenseNet blocks per stage.
      growth_rate: maps added by each DenseNet step.
      num_steps: steps per DenseNet block.
      kernel_size: side of every square kernel but the 1x1 stem.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(output_shape, context_channels, filters, blocks, kernel_size,
                     use_weight_norm, growth_rate=growth_rate, num_steps=num_steps, **kwargs)
