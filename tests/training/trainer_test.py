"""Tests of trainer.py: Polyak averaging and loss scaling under 2 replicas, and the factory.

The averaging and scaling cases use a noiseless contract double (doubles.DeterministicVLAE), so
that replica seeds do not matter; the factory cases build the tiny real VLAE from gin.
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tf_keras as keras

import doubles

from vlae_tf import distribution
from vlae_tf import gin_parsing
from vlae_tf.models import objectives
from vlae_tf.training import averaging
from vlae_tf.training import trainer as trainer_lib
from vlae_tf.training import settings


class PolyakAveragingTest(tf.test.TestCase):

  def test_averages_match_hand_computed_ema_on_both_replicas(self):
    decay = 0.9
    trainer = doubles.deterministic_trainer(doubles.two_replicas(), ema_decay=decay)
    dataset = tf.data.Dataset.from_tensor_slices(doubles.binary_images(12, seed=1)).batch(4).repeat()
    iterator = iter(dataset)
    weights = [v.numpy() for v in trainer.model.variables]
    expected = [w.copy() for w in weights]
    for _ in range(3):
      trainer.train_loop(iterator, 1)
      weights = [v.numpy() for v in trainer.model.variables]
      expected = [decay * e + (1 - decay) * w if v.trainable else w
                  for e, w, v in zip(expected, weights, trainer.model.variables)]
    # The model moved, so the test is not vacuous.
    self.assertGreater(
        max(np.abs(a - w).max() for a, w in zip(expected, weights)), 1e-4)
    for average, want in zip(trainer.averaged_model.variables, expected):
      copies = trainer.strategy.experimental_local_results(average)
      self.assertLen(copies, 2)
      for copy in copies:
        self.assertAllClose(copy.numpy(), want, rtol=1e-6, atol=1e-6)

  def test_warmup_uses_the_smaller_early_decay(self):
    decay = 0.9
    trainer = doubles.deterministic_trainer(doubles.two_replicas(), ema_decay=decay)
    trainer.ema_warmup = True
    iterator = iter(tf.data.Dataset.from_tensor_slices(doubles.binary_images(12, seed=2)).batch(4).repeat())
    expected = [v.numpy() for v in trainer.model.variables]
    for step in range(1, 3):
      trainer.train_loop(iterator, 1)
      weights = [v.numpy() for v in trainer.model.variables]
      step_decay = min(decay, (1 + step) / (10 + step))  # 0.18, then 0.25.
      expected = [step_decay * e + (1 - step_decay) * w if v.trainable else w
                  for e, w, v in zip(expected, weights, trainer.model.variables)]
    for average, want in zip(trainer.averaged_model.variables, expected):
      for copy in trainer.strategy.experimental_local_results(average):
        self.assertAllClose(copy.numpy(), want, rtol=1e-5, atol=1e-6)

  def test_loop_of_three_steps_equals_three_single_steps(self):
    looped = doubles.deterministic_trainer(doubles.two_replicas())
    stepped = doubles.deterministic_trainer(doubles.two_replicas())
    batches = tf.data.Dataset.from_tensor_slices(doubles.binary_images(12, seed=2)).batch(4)
    looped.train_loop(iter(batches), 3)
    iterator = iter(batches)
    for _ in range(3):
      stepped.train_loop(iterator, 1)
    self.assertEqual(int(looped.step.numpy()), 3)
    for a, b in zip(looped.averaged_model.variables, stepped.averaged_model.variables):
      self.assertAllClose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)

  def test_mismatched_models_are_refused(self):
    small = doubles.DeterministicVLAE(latent_size=2)
    large = doubles.DeterministicVLAE(latent_size=3)
    small.initialize(doubles.binary_images(1))
    large.initialize(doubles.binary_images(1))
    with self.assertRaisesRegex(ValueError, 'Cannot average'):
      averaging.ExponentialMovingAverage(small.variables, large.variables, 0.9)


class LossScalingTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('kl_above_threshold', 0.0),
      ('kl_below_threshold', 10.0))
  def test_two_replicas_give_the_one_replica_gradient(self, free_bits_lambda):
    batch = doubles.binary_images(4, seed=3)
    one = doubles.deterministic_trainer(doubles.one_replica(), free_bits_lambda)
    two = doubles.deterministic_trainer(doubles.two_replicas(), free_bits_lambda)
    gradients_one, loss_one = one.gradients(batch)
    gradients_two, loss_two = two.gradients(batch)
    self.assertAllClose(loss_one, loss_two, rtol=1e-5)
    for g1, g2 in zip(gradients_one, gradients_two):
      self.assertAllClose(g1, g2, rtol=1e-5, atol=1e-6)
    # The global loss is mean reconstruction + max(mean KL, lambda * D).
    outputs = one.model.elbo(batch, None)
    threshold = free_bits_lambda * one.model.num_dims
    want = (-np.mean(outputs['log_px_z']) + max(np.mean(outputs['kl']), threshold))
    self.assertAllClose(loss_two, want, rtol=1e-5)

  def test_steps_agree_across_replica_counts(self):
    one = doubles.deterministic_trainer(doubles.one_replica())
    two = doubles.deterministic_trainer(doubles.two_replicas())
    batches = tf.data.Dataset.from_tensor_slices(doubles.binary_images(8, seed=4)).batch(4)
    metrics_one = one.train_loop(iter(batches), 2)
    metrics_two = two.train_loop(iter(batches), 2)
    for key in ('loss', 'elbo', 'kl', 'log_px_z', 'gradient_norm'):
      self.assertAllClose(metrics_one[key], metrics_two[key], rtol=1e-5)
    for a, b in zip(one.model.variables, two.model.variables):
      self.assertAllClose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)

  def test_batch_must_split_evenly(self):
    trainer = doubles.deterministic_trainer(doubles.two_replicas(), global_batch_size=3)
    with self.assertRaisesRegex(ValueError, 'multiple of the number of replicas'):
      trainer.train_loop(
          iter(tf.data.Dataset.from_tensor_slices(doubles.binary_images(3)).batch(3, drop_remainder=True)), 1)


class MakeTrainerTest(tf.test.TestCase):

  def build(self, *bindings, experiment='mnist_vlae.gin'):
    gin_parsing.parse_gin([experiment, 'testing/tiny.gin'], list(bindings))
    return trainer_lib.make_trainer(distribution.make_strategy(['/cpu:0']), global_batch_size=4,
                                    **settings.trainer_settings())

  def test_builds_what_train_is_configured_with(self):
    trainer = self.build('train.learning_rate = 0.005', 'train.ema_decay = 0.5',
                         'train.ema_warmup = False', 'train.free_bits_lambda = 0.02')
    self.assertAllClose(trainer.optimizer.learning_rate.numpy(), 0.005)
    self.assertIsInstance(trainer.optimizer, keras.optimizers.Adamax)
    self.assertEqual((trainer.ema_decay, trainer.ema_warmup, trainer.free_bits_lambda),
                     (0.5, False, 0.02))
    self.assertIsNone(trainer.soft_free_bits)
    self.assertIsNot(trainer.model, trainer.averaged_model)

  def test_defaults_are_trains_with_ema_warmup(self):
    """bin/benchmark used to build its own trainer without the EMA warm-up."""
    trainer = self.build()
    self.assertTrue(trainer.ema_warmup)
    self.assertEqual(trainer.ema_decay, 0.998)

  def test_a_soft_free_bits_binding_takes_effect(self):
    trainer = self.build('train.soft_free_bits = True', 'train.free_bits_lambda = 0.02',
                         'SoftFreeBits.rate = 2.0', 'SoftFreeBits.tolerance = 0.5')
    soft = trainer.soft_free_bits
    self.assertIsInstance(soft, objectives.SoftFreeBits)
    self.assertEqual((soft.rate, soft.tolerance), (2.0, 0.5))
    self.assertAllClose(soft.target, 0.02 * 784)  # num_dims and lambda come from the factory.
    soft.gamma.assign(0.25)
    soft.update(1.4 * soft.target)  # Within the bound tolerance: gamma stays.
    self.assertAllClose(soft.gamma.numpy(), 0.25)
    soft.update(2.0 * soft.target)  # Above it: gamma * rate.
    self.assertAllClose(soft.gamma.numpy(), 0.5)
    self.assertIs(trainer.checkpoint().soft_free_bits, soft)  # Checkpointed, as before.

  def test_initialize_averages_start_at_the_weights(self):
    trainer = self.build()
    trainer.initialize(doubles.binary_images(4, shape=(28, 28, 1)))
    for weight, average in zip(trainer.model.variables, trainer.averaged_model.variables):
      self.assertAllEqual(weight.numpy(), average.numpy())
    self.assertEqual(int(trainer.step.numpy()), 0)
