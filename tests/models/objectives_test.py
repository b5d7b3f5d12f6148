"""Tests for vlae_tf.objectives."""

import math

from absl.testing import parameterized
import gin
import numpy as np
import tensorflow as tf

from vlae_tf.models import objectives

MNIST_DIMS = 784  # 28 x 28: the paper's threshold 0.01 * 784 = 7.84 nats


@gin.configurable('objectives_test.consumer')
def _consumer(soft_free_bits, kl_fn):
  return soft_free_bits, kl_fn


class FreeBitsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('below', [1., 2., 3., 6.], 7.84, [0., 0., 0., 0.]),
      ('above', [5., 9., 11., 15.], 10., [0.25, 0.25, 0.25, 0.25]))
  def test_value_and_gradient(self, kl, expected, expected_gradient):
    kl = tf.constant(kl)
    with tf.GradientTape() as tape:
      tape.watch(kl)
      value = objectives.free_bits_kl(kl, 0.01, MNIST_DIMS)
    self.assertAllClose(value, expected)
    # d/d mean(KL) is 0 below the threshold and 1 above; per example that is 1 / B.
    self.assertAllClose(tape.gradient(value, kl), expected_gradient)

  def test_eager_equals_function(self):
    kl = tf.constant([3., 20.])
    self.assertAllClose(tf.function(objectives.free_bits_kl)(kl, 0.01, MNIST_DIMS),
                        objectives.free_bits_kl(kl, 0.01, MNIST_DIMS))


class SoftFreeBitsTest(tf.test.TestCase):

  def test_starts_at_one_and_loss(self):
    soft = objectives.SoftFreeBits(num_dims=MNIST_DIMS)
    self.assertAllClose(soft.target, 7.84)
    self.assertAllClose(soft.gamma, 1.)
    self.assertFalse(soft.gamma.trainable)
    self.assertEqual(soft.gamma.aggregation, tf.VariableAggregation.ONLY_FIRST_REPLICA)
    soft.gamma.assign(0.5)
    self.assertAllClose(soft.loss(tf.constant([100., 90.]), tf.constant([10., 4.])), [105., 92.])

  def test_gamma_moves_in_the_documented_direction(self):
    soft = objectives.SoftFreeBits(num_dims=MNIST_DIMS)  # target 7.84, upper 8.232
    soft.update(20.)  # KL well above target: gamma up, but capped at 1
    self.assertAllClose(soft.gamma, 1.)
    soft.update(5.)  # KL below target: gamma down
    self.assertAllClose(soft.gamma, 1. / 1.1)
    soft.update(8.)  # within [target, 1.05 target]: unchanged
    self.assertAllClose(soft.gamma, 1. / 1.1)
    soft.update(7.)
    soft.update(7.)
    self.assertAllClose(soft.gamma, 1.1 ** -3)
    soft.update(8.3)  # above 1.05 target: up
    self.assertAllClose(soft.gamma, 1.1 ** -2)

  def test_gamma_stays_in_unit_interval(self):
    soft = objectives.SoftFreeBits(num_dims=MNIST_DIMS)

    @tf.function
    def repeat_update(kl, times):
      for _ in tf.range(times):
        soft.update(kl)

    repeat_update(0., 1200)  # 1.1 ** -1200 underflows float32
    self.assertGreater(soft.gamma.numpy(), 0.)
    self.assertAllClose(soft.gamma, 1e-6)
    repeat_update(100., 200)
    self.assertAllClose(soft.gamma, 1.)

  def test_checkpoint_round_trip(self):
    soft = objectives.SoftFreeBits(num_dims=MNIST_DIMS)
    soft.gamma.assign(0.25)
    path = tf.train.Checkpoint(soft=soft).save(self.get_temp_dir() + '/ckpt')
    restored = objectives.SoftFreeBits(num_dims=MNIST_DIMS)
    tf.train.Checkpoint(soft=restored).restore(path).assert_consumed()
    self.assertAllClose(restored.gamma, 0.25)

  def test_gin_binding(self):
    try:
      gin.parse_config('''
          objectives_test.consumer.soft_free_bits = @vlae_tf.objectives.SoftFreeBits()
          objectives_test.consumer.kl_fn = @vlae_tf.objectives.free_bits_kl
          vlae_tf.objectives.SoftFreeBits.num_dims = 3072
          vlae_tf.objectives.SoftFreeBits.lambda_per_dim = 0.1
      ''')
      soft, kl_fn = _consumer()
      self.assertAllClose(soft.target, 307.2)
      self.assertAllClose(kl_fn(tf.constant([1.]), 0.01, MNIST_DIMS), 7.84)
    finally:
      gin.clear_config()

  def test_mirrored_strategy_two_replicas(self):
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    self.assertEqual(strategy.num_replicas_in_sync, 2)
    with strategy.scope():
      soft = objectives.SoftFreeBits(num_dims=MNIST_DIMS)
      soft.gamma.assign(0.5)
    # Replica 0 sees KL 2, replica 1 sees KL 20: the mean 11 > 1.05 * 7.84, so gamma goes up.
    kl = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([2., 20.])[ctx.replica_id_in_sync_group:][:1])
    recon = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([100.]))

    @tf.function
    def cross_replica_step(recon, kl):
      losses = strategy.run(soft.loss, args=(recon, kl))
      soft.update(strategy.reduce(tf.distribute.ReduceOp.MEAN, kl, axis=0))
      return losses

    losses = strategy.experimental_local_results(cross_replica_step(recon, kl))
    self.assertAllClose(losses, [[101.], [110.]])  # gamma 0.5 during the step
    self.assertAllClose(strategy.experimental_local_results(soft.gamma), [0.55, 0.55])

    @tf.function
    def replica_step(kl):  # the first replica's update (KL 2: gamma down) wins
      strategy.run(lambda value: soft.update(value[0]), args=(kl,))

    replica_step(kl)
    self.assertAllClose(strategy.experimental_local_results(soft.gamma), [0.5, 0.5])


class UnitsTest(tf.test.TestCase):

  def test_bits_per_dim(self):
    nats = np.array([2.95 * 3072 * math.log(2.), 79.03])
    self.assertAllClose(objectives.bits_per_dim(nats, 3072),
                        [2.95, 79.03 / (3072 * math.log(2.))])
    self.assertAllClose(objectives.bits_per_dim(tf.constant(nats), 3072),
                        nats / (math.log(2.) * 3072))
    self.assertAllClose(objectives.nats_to_bits(math.log(2.)), 1.)
    self.assertAllClose(objectives.nats_to_bits(13.3), 19.188, atol=1e-3)  # the paper: 19.2 bits


if __name__ == '__main__':
  tf.test.main()
