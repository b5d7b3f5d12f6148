"""The small operations every PixelCNN decoder is built of: 1x1 convolutions, gates, residual sums.

The decoders (pixelcnn.py, gated_pixelcnn.py, gated_resnet_pixelcnn.py) compose them in `call`,
and their cached samplers (autoregressive_sampling.py) read the layers' effective weights with
`kernel_and_bias` to evaluate one pixel at a time.
"""

import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import masked
from vlae_tf.layers import weight_norm


def conv1x1(filters: int, use_weight_norm: bool) -> keras.layers.Layer:
  return weight_norm.wn(keras.layers.Conv2D(filters, 1), use_weight_norm)


def kernel_and_bias(layer: keras.layers.Layer):
  """The effective (normalized, masked) kernel and the bias of a conv layer, weight norm or not."""
  inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
  # float32 from the float32 variables, whatever the layer's compute dtype (precision.py).
  kernel = tf.convert_to_tensor(inner.kernel, tf.float32)
  if isinstance(inner, masked.MaskedConv2D):
    kernel *= inner.mask
  return kernel, tf.convert_to_tensor(inner.bias, tf.float32)


def gate(pre_activation: tf.Tensor) -> tf.Tensor:
  """Gated activation unit: tanh(a) * sigmoid(b) for pre_activation = [a, b]."""
  # [..., 2 * filters] -> [..., filters]
  value, gate = tf.split(pre_activation, 2, axis=-1)
  return tf.tanh(value) * tf.sigmoid(gate)


def residual_add(shortcut: tf.Tensor, branch: tf.Tensor) -> tf.Tensor:
  """shortcut + branch, written as shortcut - (-branch) for grappler's remapper.

  In a pre-activation residual stack, h' = h + conv(elu(h)) + bias feeds both elu(h') and the
  next sum. The remapper fuses Conv2D + BiasAdd + Add + Elu into one node that outputs only
  elu(h'), drops h' and then fails ("remapper failed: INVALID_ARGUMENT: Mutation::Apply error:
  fanout ... exist for missing node ...", an ERROR line on every run), after which it leaves the
  whole function unfused. A subtraction is not one of its fusion patterns; the result is the same
  to the last bit (x - (-y) == x + y in IEEE arithmetic).
  """
  return shortcut - tf.negative(branch)
