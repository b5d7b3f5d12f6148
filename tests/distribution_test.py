"""Tests of distribution.py: replica splitting and distributed evaluation on two replicas."""

import functools
import pathlib
import types

import numpy as np
import tensorflow as tf

import doubles

from vlae_tf import errors
from vlae_tf.data import batching
from vlae_tf import distribution


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

  def test_per_worker_batches_of_one_worker_cut_the_global_batches(self):
    """One worker, two replicas: replica r gets rows [2r, 2r + 2) of each global batch of 4, as
    `split_for_replicas` gave it (a one-worker run keeps its data order)."""
    strategy = doubles.two_replicas()
    numbers = tf.data.Dataset.range(10).map(lambda i: tf.fill([1, 1, 1], tf.cast(i, tf.float32)))
    batches = functools.partial(batching.training_batches, numbers, 4, 3, 2)
    iterator = iter(batching.per_worker_batches(strategy, batches, 4))
    for want in batches().take(4):
      local = strategy.experimental_local_results(next(iterator))
      self.assertAllEqual(local[0], want[:2])
      self.assertAllEqual(local[1], want[2:])

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

  def test_lost_worker_error_names_the_lost_task_and_the_checkpoint(self):
    """The messages of a peer killed (connection reset) and of a peer that stopped sending
    heartbeats (coordination service), as a surviving worker 0 / 1 received them."""
    cluster = tf.train.ClusterSpec({'worker': ['127.0.0.1:1001', '127.0.0.1:1002']})
    model_dir = self.get_temp_dir()
    (pathlib.Path(model_dir) / 'checkpoint').write_text('model_checkpoint_path: "ckpt-7"\n')
    (pathlib.Path(model_dir) / 'ckpt-7.index').write_bytes(b'')
    reset = ('{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/replica:0/task:1/'
             'device:CPU:0}} Collective ops is aborted by: recvmsg:Connection reset by peer\n'
             'Additional GRPC error information from remote target /job:worker/replica:0/task:0 '
             'while calling /tensorflow.WorkerService/CompleteInstance:')
    silent = ('Collective ops is aborted by: Error reported from /job:worker/task:1: The following '
              'tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\n')
    leader = ('Graph execution error:\n\nDetected at node while/CollectiveReduceV2_4 defined at '
              '(most recent call last):\n  File "bin/train", line 19, in <module>\n\nCollective '
              'ops is aborted by: Deadline Exceeded\n\nRPC: /tensorflow.CoordinationService/'
              'Heartbeat\n\t [[{{node while/CollectiveReduceV2_4}}]] [Op:__inference_fn_1]')
    for own, message, lost in ((1, reset, 'worker 0 (127.0.0.1:1001)'),
                               (0, silent, 'worker 1 (127.0.0.1:1002)'),
                               (1, leader, 'worker 0 (127.0.0.1:1001)')):
      strategy = types.SimpleNamespace(cluster_resolver=types.SimpleNamespace(
          task_type='worker', task_id=own, cluster_spec=lambda: cluster))
      error = distribution.lost_worker_error(
          tf.errors.UnavailableError(None, None, message), strategy, model_dir)
      self.assertIsInstance(error, errors.LostWorkerError)
      text = str(error)
      self.assertNotIn('\n', text)
      self.assertTrue(text.startswith(f'Lost {lost}: this worker {own} stopped '
                                      '(UnavailableError: Collective ops is aborted by'), text)
      self.assertTrue(text.endswith(f'resume from {model_dir}/ckpt-7.'), text)

  def test_one_process_is_one_chief_worker(self):
    strategy = doubles.one_replica()
    self.assertTrue(distribution.is_chief(strategy))
    self.assertEqual(distribution.num_workers(strategy), 1)
    self.assertEqual(strategy.num_replicas_in_sync, 1)
    self.assertEqual(doubles.two_replicas().num_replicas_in_sync, 2)
