"""Tests of blocks.py: sizes after halving, block shapes, configs that round-trip."""

from absl.testing import parameterized
import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import blocks as blocks_lib
from vlae_tf.layers import weight_norm


class BlocksTest(tf.test.TestCase, parameterized.TestCase):

  def test_halved_sizes(self):
    self.assertEqual(blocks_lib.halved_sizes((28, 28), 3), [(28, 28), (14, 14), (7, 7), (4, 4)])
    self.assertEqual(blocks_lib.halved_sizes((12, 5), 2), [(12, 5), (6, 3), (3, 2)])


  def test_block_configs_round_trip(self):
    blocks = [blocks_lib.ResNetBlock(4, residual_scale=0.2, use_weight_norm=False),
              blocks_lib.DenseNetBlock(4, growth_rate=2, num_steps=2),
              blocks_lib.Upsample(3, (5, 7), kernel_size=1),
              weight_norm.wn(keras.layers.Conv2D(3, 2))]
    for block in blocks:
      config = block.get_config()
      self.assertEqual(type(block).from_config(config).get_config(), config)


  @parameterized.named_parameters(
      ('resnet', lambda: blocks_lib.ResNetBlock(3, use_weight_norm=False), (2, 5, 7, 3)),
      ('densenet', lambda: blocks_lib.DenseNetBlock(3, growth_rate=2, num_steps=2,
                                                     use_weight_norm=False), (2, 5, 7, 3)),
      ('upsample', lambda: blocks_lib.Upsample(4, (9, 13), use_weight_norm=False), (2, 9, 13, 4)))
  def test_output_shapes(self, make, want):
    block = make()
    self.assertEqual(tuple(block(tf.ones([2, 5, 7, 3])).shape), want)

  def test_resnet_block_is_the_identity_plus_a_scaled_branch(self):
    block = blocks_lib.ResNetBlock(3, residual_scale=0.0, use_weight_norm=False)
    x = tf.random.stateless_normal([2, 5, 7, 3], seed=[1, 2])
    self.assertAllClose(block(x), x)

  def test_convolutions_are_weight_normed_on_request(self):
    self.assertIsInstance(blocks_lib.conv(3, 3, True), weight_norm.WeightNorm)
    self.assertIsInstance(blocks_lib.dense(3, False), keras.layers.Dense)
