"""The layers the encoders and context networks are built of: ResNet and DenseNet blocks, upsampling.

The conventions of every encoder (encoders.py) and context network (context_networks.py):

* Weight norm everywhere: every convolution and dense layer goes through `weight_norm.wn`
  (Salimans and Kingma 2016, with data-dependent init, as in the paper); build and initialize a
  network with `weight_norm.initialize(network, first_batch)`.
* Pre-activation streams: the tensor passed between blocks is a pre-activation, and every
  convolution that reads it applies ELU first, `conv(elu(x))`. Only the stem (which reads the
  image, or z) is applied to its raw input.
* Downsampling: a stride-2 k x k convolution with 'same' padding, `conv(elu(x))`; a side of n
  pixels becomes ceil(n / 2) (28 -> 14 -> 7 -> 4, 12 -> 6 -> 3 -> 2), so every image size works.
* Upsampling (`Upsample`): context networks take the target image size (`output_shape`) and derive
  every intermediate size by the same ceil-halving, so their stages have the encoder's sizes in
  reverse.

The blocks:

* ResNet block (`ResNetBlock`), width-preserving, residual branch scaled by 0.1 (paper scripts):

      y = x + residual_scale * conv_2(elu(conv_1(elu(x))))

  Both convolutions are k x k, 'same' padding, `filters` maps. With data init the branch output
  has unit variance per channel at initialization, so the block starts as x + 0.1 * N(0, 1).
* DenseNet block (`DenseNetBlock`), `num_steps` steps then a 1x1 transition back to the width:

      x_0 = x;   x_s = concat(x_{s-1}, conv_s(elu(x_{s-1})))   # + growth_rate maps per step
      y   = conv_1x1(elu(x_num_steps))                         # [.., filters]

* Upsampling (`Upsample`): a stride-2 k x k transposed convolution ('same' padding, exactly doubles
  each side) followed by a crop of the bottom rows / right columns to the target size: 4 -> 8 -> 7.
* `halved_sizes`: the sizes after each stride-2 'same' convolution, ceil(n / 2) per halving.

Gin and Keras know these classes by this module's name (`blocks.ResNetBlock`, package
'vlae_tf.blocks'); configs of older runs that say `networks.ResNetBlock` are read through
`gin_parsing.current_names`.
"""

import math
from typing import List, Optional, Sequence, Tuple

import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import weight_norm


def conv(filters: int, kernel_size: int, use_weight_norm: bool, strides: int = 1,
         activation: Optional[str] = None) -> keras.layers.Layer:
  """A k x k 'same' convolution, weight-normed unless `use_weight_norm` is False."""
  return weight_norm.wn(keras.layers.Conv2D(filters, kernel_size, strides=strides, padding='same',
                                            activation=activation), use_weight_norm)


def dense(units: int, use_weight_norm: bool, activation: Optional[str] = None):
  """A dense layer, weight-normed unless `use_weight_norm` is False."""
  return weight_norm.wn(keras.layers.Dense(units, activation=activation), use_weight_norm)


def halved_sizes(size: Sequence[int], num_halvings: int) -> List[Tuple[int, int]]:
  """[(h, w), (ceil(h/2), ceil(w/2)), ...]: the sizes after each stride-2 'same' convolution.

  Example: halved_sizes((28, 28), 3) == [(28, 28), (14, 14), (7, 7), (4, 4)].
  """
  sizes = [tuple(int(s) for s in size)]
  for _ in range(num_halvings):
    sizes.append(tuple(math.ceil(s / 2) for s in sizes[-1]))
  return sizes


@gin.register(module='vlae_tf.blocks')
@keras.saving.register_keras_serializable(package='vlae_tf.blocks')
class ResNetBlock(keras.layers.Layer):
  """Pre-activation residual block: y = x + residual_scale * conv_2(elu(conv_1(elu(x)))).

  Width-preserving: x and y are [batch, height, width, filters].
  """

  def __init__(self, filters: int, kernel_size: int = 3, residual_scale: float = 0.1,
               use_weight_norm: bool = True, **kwargs):
    """Makes the block.

    Args:
      filters: channels of the input, the hidden layer and the output.
      kernel_size: side of both square kernels.
      residual_scale: multiplies the residual branch (0.1 in the paper scripts).
      use_weight_norm: weight normalization with data-dependent init on both convolutions.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.residual_scale = residual_scale
    self.use_weight_norm = use_weight_norm
    self.conv_1 = conv(filters, kernel_size, use_weight_norm, activation='elu')
    self.conv_2 = conv(filters, kernel_size, use_weight_norm)

  def build(self, input_shape):
    if input_shape[-1] != self.filters:
      raise ValueError(f'ResNetBlock({self.filters}) got {input_shape[-1]} input channels.')
    super().build(input_shape)

  def call(self, inputs, training=None):
    del training  # Unused.
    branch = self.conv_2(self.conv_1(tf.nn.elu(inputs)))  # [batch, height, width, filters]
    return inputs + self.residual_scale * branch

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size,
                  residual_scale=self.residual_scale, use_weight_norm=self.use_weight_norm)
    return config


@gin.register(module='vlae_tf.blocks')
@keras.saving.register_keras_serializable(package='vlae_tf.blocks')
class DenseNetBlock(keras.layers.Layer):
  """DenseNet block: `num_steps` concatenating steps, then a 1x1 transition back to `filters`.

      x_0 = x                                          # [B, H, W, filters]
      x_s = concat(x_{s-1}, conv_s(elu(x_{s-1})))      # [B, H, W, filters + s * growth_rate]
      y   = conv_1x1(elu(x_num_steps))                 # [B, H, W, filters]
  """

  def __init__(self, filters: int, growth_rate: int = 32, num_steps: int = 3,
               kernel_size: int = 3, use_weight_norm: bool = True, **kwargs):
    """Makes the block.

    Args:
      filters: channels of the input and of the output (the stage width).
      growth_rate: maps added by each step.
      num_steps: concatenating steps (3 in the paper).
      kernel_size: side of the square kernel of each step.
      use_weight_norm: weight normalization with data-dependent init on every convolution.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(**kwargs)
    self.filters = filters
    self.growth_rate = growth_rate
    self.num_steps = num_steps
    self.kernel_size = kernel_size
    self.use_weight_norm = use_weight_norm
    self.steps = [conv(growth_rate, kernel_size, use_weight_norm) for _ in range(num_steps)]
    self.transition = conv(filters, 1, use_weight_norm)

  def build(self, input_shape):
    if input_shape[-1] != self.filters:
      raise ValueError(f'DenseNetBlock({self.filters}) got {input_shape[-1]} input channels.')
    super().build(input_shape)

  def call(self, inputs, training=None):
    del training  # Unused.
    features = inputs
    for step in self.steps:
      # [batch, height, width, filters + (s + 1) * growth_rate]
      features = tf.concat([features, step(tf.nn.elu(features))], axis=-1)
    return self.transition(tf.nn.elu(features))  # [batch, height, width, filters]

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, growth_rate=self.growth_rate, num_steps=self.num_steps,
                  kernel_size=self.kernel_size, use_weight_norm=self.use_weight_norm)
    return config


@gin.register(module='vlae_tf.blocks')
@keras.saving.register_keras_serializable(package='vlae_tf.blocks')
class Upsample(keras.layers.Layer):
  """y = crop(conv_transpose_stride_2(elu(x))): doubles each side, then crops to `output_size`.

  The crop removes the bottom rows and right columns (at most one of each when the sizes come
  from `halved_sizes`): [B, h, w, C] -> [B, 2h, 2w, filters] -> [B, H, W, filters].
  """

  def __init__(self, filters: int, output_size: Sequence[int], kernel_size: int = 3,
               use_weight_norm: bool = True, **kwargs):
    """Makes the layer.

    Args:
      filters: output channels.
      output_size: (H, W) after the crop; needs H <= 2h and W <= 2w.
      kernel_size: side of the square transposed-convolution kernel.
      use_weight_norm: weight normalization with data-dependent init.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(**kwargs)
    self.filters = filters
    self.output_size = tuple(int(s) for s in output_size)
    self.kernel_size = kernel_size
    self.use_weight_norm = use_weight_norm
    self.conv = weight_norm.wn(
        keras.layers.Conv2DTranspose(filters, kernel_size, strides=2, padding='same'),
        use_weight_norm)

  def build(self, input_shape):
    height, width = input_shape[1], input_shape[2]
    if 2 * height < self.output_size[0] or 2 * width < self.output_size[1]:
      raise ValueError(f'Cannot upsample {height}x{width} to {self.output_size} by 2.')
    super().build(input_shape)

  def call(self, inputs, training=None):
    del training  # Unused.
    outputs = self.conv(tf.nn.elu(inputs))  # [batch, 2 * height, 2 * width, filters]
    return outputs[:, :self.output_size[0], :self.output_size[1], :]

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, output_size=self.output_size,
                  kernel_size=self.kernel_size, use_weight_norm=self.use_weight_norm)
    return config


