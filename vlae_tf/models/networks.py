"""ResNet / DenseNet encoders and upsampling context networks.

Every convolution and dense layer of this module goes through `weight_norm.wn(layer)`: weight
normalization (Salimans and Kingma 2016) with data-dependent initialization, as in the paper
("weight normalization with data-dependent init everywhere"); build and initialize a network with
`weight_norm.initialize(network, first_batch)` (weight_norm.py has the contract). Conventions
shared by all networks:

* Pre-activation streams. The tensor passed between blocks is a pre-activation; every convolution
  that reads it applies ELU first: `conv(elu(x))`. Only the stem (which reads the image, or z) is
  applied to its raw input.
* Blocks (blocks.py): `ResNetBlock`, y = x + 0.1 * conv_2(elu(conv_1(elu(x)))), and
  `DenseNetBlock`, both width-preserving.
* Downsampling: a stride-2 k x k convolution with 'same' padding, `conv(elu(x))`; a side of n
  pixels becomes ceil(n / 2) (28 -> 14 -> 7 -> 4, 12 -> 6 -> 3 -> 2, 5 -> 3 -> 2), so every image
  size works.
* Upsampling (`blocks.Upsample`): a stride-2 transposed convolution cropped to the target size.
  Decoders take the target image size (`output_shape`) and derive every intermediate size by the
  same ceil-halving as the encoders, so decoder stages have the encoder's sizes, in reverse.
"""

import collections
from typing import Optional, Sequence

import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import blocks as blocks_lib

EncoderOutput = collections.namedtuple('EncoderOutput', ['loc', 'scale', 'context'])
EncoderOutput.__doc__ = """What an encoder returns.

Fields:
  loc: mean of the diagonal Gaussian posterior q(z|x), the shape of z.
  scale: its standard deviation, > 0, the shape of z.
  context: features of x for an IAF / convolutional AF posterior ([B, C] or [B, h, w, C]).
"""


def _softplus_scale(raw: tf.Tensor, epsilon: float) -> tf.Tensor:
  return tf.nn.softplus(raw) + epsilon


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
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
    loc, raw_scale = tf.split(self.posterior(hidden), 2, axis=-1)  # 2 x [batch, latent_size]
    context = hidden if self.context_projection is None else self.context_projection(hidden)
    return EncoderOutput(loc, _softplus_scale(raw_scale, self.scale_epsilon), context)

  def get_config(self):
    config = super().get_config()
    config.update(latent_size=self.latent_size, filters=self.filters,
                  blocks_per_stage=self.blocks_per_stage, hidden_size=self.hidden_size,
                  context_size=self._context_size, kernel_size=self.kernel_size,
                  residual_scale=self.residual_scale, scale_epsilon=self.scale_epsilon,
                  use_weight_norm=self.use_weight_norm)
    return config


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
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


class _SpatialNetwork(keras.layers.Layer):
  """What the spatial encoders and decoders share: stages of width-preserving blocks.

  A subclass names its block class (`block_class`, `ResNetBlock` or `DenseNetBlock`) and the
  constructor arguments it passes on to every block (`block_arguments`); this class stores them,
  makes the blocks and puts them in `get_config`, so that the four CIFAR-10 networks differ only
  in their signatures and docstrings.
  """

  block_class = None
  block_arguments = ()

  def __init__(self, filters, blocks, kernel_size, use_weight_norm, **kwargs):
    block_kwargs = {name: kwargs.pop(name) for name in self.block_arguments}
    super().__init__(**kwargs)
    if len(filters) != len(blocks):
      raise ValueError(f'filters {filters} and blocks {blocks} differ in length.')
    self.filters = tuple(filters)
    self.blocks = tuple(blocks)
    self.kernel_size = kernel_size
    self.use_weight_norm = use_weight_norm
    for name, value in block_kwargs.items():
      setattr(self, name, value)

  def _make_stages(self):
    """[[block(width) for each block of the stage] for each stage]."""
    block_kwargs = {name: getattr(self, name) for name in self.block_arguments}
    return [[self.block_class(width, kernel_size=self.kernel_size,
                              use_weight_norm=self.use_weight_norm, **block_kwargs)
             for _ in range(count)] for width, count in zip(self.filters, self.blocks)]

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, blocks=self.blocks, kernel_size=self.kernel_size,
                  use_weight_norm=self.use_weight_norm,
                  **{name: getattr(self, name) for name in self.block_arguments})
    return config


class _SpatialEncoder(_SpatialNetwork):
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
    loc, raw_scale = tf.split(self.posterior(features), 2, axis=-1)  # 2 x [b, h, w, latent]
    context = (features if self.context_projection is None
               else self.context_projection(features))
    return EncoderOutput(loc, _softplus_scale(raw_scale, self.scale_epsilon), context)

  def get_config(self):
    config = super().get_config()
    config.update(latent_channels=self.latent_channels, context_channels=self.context_channels,
                  scale_epsilon=self.scale_epsilon)
    return config


class _SpatialDecoder(_SpatialNetwork):
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


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
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


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
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


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
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


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
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
