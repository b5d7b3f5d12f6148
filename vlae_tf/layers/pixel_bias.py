"""A per-pixel bias: one bias per row, column and channel, b [1, H, W, C].

The first author's binary-image networks add such a bias after every convolution (`pixel_bias=True`
in his custom_ops.py; docs/authors_code.md, section 1.4 "Per-pixel biases"):
y[b, i, j, c] = x[b, i, j, c] + bias[0, i, j, c]. It gives position-specific offsets (image borders,
first rows) for H * W * C parameters, and ties the layer to one image size: `PixelBias` raises
`errors.ImageSizeError` for inputs of another size instead of broadcasting or failing deep inside
TensorFlow.
"""

import tensorflow as tf
import tf_keras as keras

from vlae_tf import errors


def size_message(layer_name: str, built_for, given) -> str:
  """The one-line error for a per-pixel bias of size `built_for` given images of size `given`."""
  return (f'{layer_name}: per-pixel biases were built for {built_for[0]}x{built_for[1]} images, '
          f'got {given[0]}x{given[1]} images; a model with per-pixel biases works at one image '
          f'size only.')


@keras.saving.register_keras_serializable(package='vlae_tf.pixel_bias')
class PixelBias(keras.layers.Layer):
  """outputs[b, i, j, c] = inputs[b, i, j, c] + bias[0, i, j, c].

  The bias is created by build() for the input's (H, W, C); `check_size` and call() refuse
  inputs of another height or width with `errors.ImageSizeError`.
  """

  def __init__(self, bias_initializer='zeros', **kwargs):
    super().__init__(**kwargs)
    self.bias_initializer = keras.initializers.get(bias_initializer)

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    height, width, channels = input_shape[1:]
    if height is None or width is None or channels is None:
      raise ValueError(f'{self.name}: a per-pixel bias needs static height, width and channels, '
                       f'got input shape {input_shape}.')
    # [1, H, W, C]
    self.bias = self.add_weight(name='bias', shape=[1, height, width, channels],
                                initializer=self.bias_initializer, trainable=True)
    super().build(input_shape)

  @property
  def image_size(self):
    """(H, W) the bias was built for."""
    return tuple(int(d) for d in self.bias.shape[1:3])

  def check_size(self, height, width, name=None):
    """Raises `errors.ImageSizeError` unless (height, width) is the size the bias was built for.

    Args:
      height, width: Python ints, or None (unknown sizes are not checked here; the addition
        then fails on its own).
      name: the layer to name in the message, default this one.
    """
    if height is None or width is None:
      return
    if (int(height), int(width)) != self.image_size:
      raise errors.ImageSizeError(size_message(name or self.name, self.image_size, (height, width)))

  def call(self, inputs):
    self.check_size(inputs.shape[1], inputs.shape[2])
    return inputs + self.bias  # [B, H, W, C] + [1, H, W, C]

  def get_config(self):
    config = super().get_config()
    config['bias_initializer'] = keras.initializers.serialize(self.bias_initializer)
    return config
