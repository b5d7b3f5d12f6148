"""Tests of distribution.py: replica splitting and distributed evaluation on two replicas."""

import numpy as np
import tensorflow as tf

import doubles

from vlae_tf.data import batching
from vlae_tf.training import distribution


class DistributionTest(tf.test.TestCase):

  def test_distributed_evaluator_per_example_values_in_dataset_order(self):
    strategy = doubles.two_replicas()
    data = tf.data.Dataset.from_tensor_slices(tf.reshape(tf.range(7.0), [7, 1, 1, 1]))
    evaluator = distribution.DistributedEvaluator(
        strategy, lambda x, seed: {'value': 10.0 * tf.reshape(x, [-1])}, per_example=True)
    totals, values = evaluator(batching.padded_batches(data, 4))
    self.assertEqual(totals['count'], 7)
    self.assertAllClose(values['value'], 10.0 * np.arange(7.0))

  def test_distributed_evaluator_ignores_padding(self):
    strategy = doubles.two_replicas()
    data = tf.data.Dataset.from_tensor_slices(tf.reshape(tf.range(5.0), [5, 1, 1, 1]))
    evaluator = distribution.DistributedEvaluator(
        strategy, lambda x, seed: {'value': tf.reshape(x, [-1])})
    totals = evaluator(batching.padded_batches(data, 4))
    means, errors = distribution.means_from_sums(totals)
    self.assertEqual(totals['count'], 5)
    self.assertAllClose(means['value'], 2.0)
    self.assertAllClose(errors['value'], np.std(np.arange(5.0)) / np.sqrt(5))

  def test_split_for_replicas_gives_each_replica_its_rows(self):
    strategy = doubles.two_replicas()
    rows = tf.reshape(tf.range(12.0), [4, 3])
    split = distribution.split_for_replicas(strategy, {'x': rows})
    local = strategy.experimental_local_results(split)
    self.assertAllEqual(local[0]['x'], rows[:2])
    self.assertAllEqual(local[1]['x'], rows[2:])
    with self.assertRaisesRegex(ValueError, 'multiple of the number of replicas'):
      distribution.split_for_replicas(strategy, tf.zeros([3, 1]))

  def test_seeds_depend_on_batch_and_replica_only(self):
    strategy = doubles.two_replicas()
    data = tf.data.Dataset.from_tensor_slices(tf.zeros([8, 1, 1, 1]))
    evaluator = distribution.DistributedEvaluator(
        strategy, lambda x, seed: {'draw': tf.random.stateless_uniform([tf.shape(x)[0]], seed)},
        seed=3, per_example=True)
    _, first = evaluator(batching.padded_batches(data, 4))
    _, again = evaluator(batching.padded_batches(data, 4))
    self.assertAllEqual(first['draw'], again['draw'])
    self.assertLen(set(np.round(first['draw'], 6)), 8)  # Replicas and batches draw apart.

  def test_one_process_is_one_chief_worker(self):
    strategy = doubles.one_replica()
    self.assertTrue(distribution.is_chief(strategy))
    self.assertEqual(distribution.num_workers(strategy), 1)
    self.assertEqual(strategy.num_replicas_in_sync, 1)
    self.assertEqual(doubles.two_replicas().num_replicas_in_sync, 2)
