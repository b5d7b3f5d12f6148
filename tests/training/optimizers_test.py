"""Tests of optimizers.py: FusedAdamax computes tf_keras's Adamax in fewer ops, same checkpoints."""

import numpy as np
import tensorflow as tf
import tf_keras as keras

import doubles

from vlae_tf.training import optimizers

SHAPES = ((3, 3, 2, 4), (4,), ())


def _variables(strategy, seed):
  rng = np.random.default_rng(seed)
  with strategy.scope():
    return [tf.Variable(rng.normal(size=shape).astype(np.float32)) for shape in SHAPES]


def _gradients(step):
  rng = np.random.default_rng(100 + step)
  # Some exact zeros: u = max(beta_2 * u, |g|) keeps decaying there.
  return [np.where(rng.random(shape) < 0.2, 0.0, rng.normal(size=shape)).astype(np.float32)
          for shape in SHAPES]


def _train(optimizer_cls, strategy, steps=6):
  """`steps` updates with fixed gradients, two per tf.function call (unrolled in its graph)."""
  variables = _variables(strategy, seed=0)
  with strategy.scope():
    optimizer = optimizer_cls(learning_rate=0.01)
    optimizer.build(variables)

  @tf.function
  def two_steps(first, second):
    for gradients in (first, second):
      strategy.run(lambda g: optimizer.apply_gradients(zip(g, variables)), args=(gradients,))

  for i in range(0, steps, 2):
    two_steps([tf.constant(g) for g in _gradients(i)], [tf.constant(g) for g in _gradients(i + 1)])
  return optimizer, variables


def _ops_per_variable(optimizer_cls):
  """The graph ops that one more variable adds to `apply_gradients`."""
  counts = []
  for copies in (1, 2):
    variables = _variables(tf.distribute.get_strategy(), seed=0) * copies
    optimizer = optimizer_cls(learning_rate=0.01)
    optimizer.build(variables)
    gradients = [tf.constant(g) for g in _gradients(0)] * copies
    graph = tf.function(lambda g, o=optimizer, v=variables: o.apply_gradients(zip(g, v))
                        ).get_concrete_function(gradients).graph
    counts.append(len(graph.get_operations()))
  return (counts[1] - counts[0]) / len(SHAPES)


class FusedAdamaxTest(tf.test.TestCase):

  def test_updates_equal_keras_adamax_on_two_replicas(self):
    strategy = doubles.two_replicas()
    want_optimizer, want = _train(keras.optimizers.Adamax, strategy)
    got_optimizer, got = _train(optimizers.FusedAdamax, strategy)
    self.assertEqual(int(got_optimizer.iterations.numpy()), 6)
    moved = max(np.abs(v.numpy() - w.numpy()).max()
                for v, w in zip(_variables(strategy, seed=0), want))
    self.assertGreater(moved, 1e-3)  # The optimizer moved the weights: not a vacuous comparison.
    for name in ('_m', '_u'):
      for a, b in zip(getattr(got_optimizer, name), getattr(want_optimizer, name)):
        self.assertAllClose(a, b, rtol=1e-6, atol=1e-7)
    for variable, expected in zip(got, want):
      for copy in strategy.experimental_local_results(variable):
        self.assertAllClose(copy, expected, rtol=1e-6, atol=1e-7)

  def test_is_adamax_with_fewer_ops(self):
    self.assertIsInstance(optimizers.FusedAdamax(), keras.optimizers.Adamax)
    fused = _ops_per_variable(optimizers.FusedAdamax)
    unfused = _ops_per_variable(keras.optimizers.Adamax)
    self.assertLessEqual(fused * 4, unfused, (fused, unfused))  # 4 against 30 (tf_keras 2.21).

  def test_checkpoints_restore_across_the_two_classes(self):
    strategy = tf.distribute.get_strategy()
    for saved_cls, restored_cls in ((keras.optimizers.Adamax, optimizers.FusedAdamax),
                                    (optimizers.FusedAdamax, keras.optimizers.Adamax)):
      saved_optimizer, saved = _train(saved_cls, strategy, steps=2)
      path = tf.train.Checkpoint(optimizer=saved_optimizer, variables=saved).write(
          f'{self.get_temp_dir()}/{saved_cls.__name__}')
      variables = _variables(strategy, seed=1)
      optimizer = restored_cls(learning_rate=0.01)
      optimizer.build(variables)
      tf.train.Checkpoint(optimizer=optimizer, variables=variables).read(
          path).assert_existing_objects_matched().assert_consumed()
      self.assertEqual(int(optimizer.iterations.numpy()), 2)
      for name in ('_m', '_u'):
        for restored, want in zip(getattr(optimizer, name), getattr(saved_optimizer, name)):
          self.assertAllEqual(restored, want)

  def test_sparse_gradients_take_the_keras_path(self):
    variable = tf.Variable(tf.ones([4, 2]))
    optimizer = optimizers.FusedAdamax(learning_rate=0.1)
    optimizer.apply_gradients([(tf.IndexedSlices(tf.ones([1, 2]), tf.constant([2])), variable)])
    moved = np.any(variable.numpy() != 1.0, axis=1)
    self.assertAllEqual(moved, [False, False, True, False])


if __name__ == '__main__':
  tf.test.main()
