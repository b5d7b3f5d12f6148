"""Tests of weight_norm.py on bare layers: the switch, the data init and its contract, restore.

The networks built of these layers are tested with weight norm in encoders_test.py (data init
under MirroredStrategy, no retracing, restore before build, SavedModel).
"""

import os
import warnings

import numpy as np
import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import masked
from vlae_tf.layers import weight_norm
from vlae_tf.models import gated_pixelcnn
from vlae_tf.models import pixelcnn


class WeightNormTest(tf.test.TestCase):

  def test_wn_switch(self):
    dense = keras.layers.Dense(3)
    self.assertIs(weight_norm.wn(dense, use_weight_norm=False), dense)
    self.assertIsInstance(weight_norm.wn(keras.layers.Dense(3)), weight_norm.WeightNorm)


  def test_initialize_refuses_replica_context(self):
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    with strategy.scope():
      layer = weight_norm.wn(keras.layers.Dense(3))
    with self.assertRaisesRegex(RuntimeError, 'cross-replica'):
      strategy.run(lambda: weight_norm.initialize(layer, tf.ones([2, 4])))


  def test_data_init_normalizes_the_first_batch(self):
    layer = weight_norm.wn(keras.layers.Conv2D(3, 2))
    inputs = tf.random.stateless_normal([5, 7, 4, 2], seed=[1, 2]) * 3.0 + 1.0
    outputs = weight_norm.initialize(layer, inputs)  # [5, 6, 3, 3]
    self.assertAllClose(tf.reduce_mean(outputs, [0, 1, 2]), np.zeros(3), atol=1e-4)
    self.assertAllClose(tf.math.reduce_std(outputs, [0, 1, 2]), np.ones(3), atol=1e-3)
    self.assertEmpty(weight_norm.uninitialized_weight_norms(layer))
    self.assertAllClose(layer(inputs), outputs, atol=1e-5)  # Later calls assign nothing.

  def test_kernel_is_g_times_the_normalized_direction(self):
    layer = weight_norm.wn(keras.layers.Dense(3))
    weight_norm.initialize(layer, tf.random.stateless_normal([8, 4], seed=[3, 4]))
    kernel = tf.convert_to_tensor(layer.layer.kernel)  # [4, 3]
    direction = layer.v / tf.norm(layer.v, axis=0, keepdims=True)
    self.assertAllClose(kernel, direction * layer.g)

  def test_restore_before_build_keeps_the_checkpoint(self):
    inputs = tf.random.stateless_normal([6, 4], seed=[5, 6])
    layer = weight_norm.wn(keras.layers.Dense(3))
    weight_norm.initialize(layer, inputs)
    path = tf.train.Checkpoint(layer=layer).save(os.path.join(self.get_temp_dir(), 'ckpt'))
    restored = weight_norm.wn(keras.layers.Dense(3))
    status = tf.train.Checkpoint(layer=restored).restore(path)
    other = 5.0 * tf.random.stateless_normal([6, 4], seed=[7, 8])  # Would re-init differently.
    weight_norm.initialize(restored, other)
    status.assert_consumed()
    self.assertAllClose(restored(other), layer(other))

  def test_initialize_refuses_graph_mode(self):
    layer = weight_norm.wn(keras.layers.Dense(3))
    with self.assertRaisesRegex(RuntimeError, 'eagerly'):
      tf.function(lambda x: weight_norm.initialize(layer, x))(tf.ones([2, 4]))

  def test_wn_wraps_a_masked_convolution_without_warning(self):
    with warnings.catch_warnings():
      warnings.simplefilter('error')
      wrapped = weight_norm.wn(masked.MaskedConv2D(4, 3, mask_type='A'))
    self.assertIsInstance(wrapped, weight_norm.WeightNorm)

  def test_the_decoders_use_the_one_wrapper(self):
    images = tf.zeros([2, 5, 7, 1])
    context = tf.zeros([2, 5, 7, 3])
    decoders = [pixelcnn.DepthLimitedPixelCNN(num_outputs=1, num_masked_layers=2, filters=4),
                gated_pixelcnn.GatedPixelCNN(num_outputs=1, window_size=(3, 3), filters=4,
                                             num_blocks=1)]
    for decoder in decoders:
      decoder(images, context)
      wrappers = [layer for layer in decoder.submodules
                  if isinstance(layer, keras.layers.Wrapper)]
      self.assertNotEmpty(wrappers)
      for wrapper in wrappers:
        self.assertIsInstance(wrapper, weight_norm.WeightNorm)
