"""Tests of batching.py: the data order of a resumed run, strided subsets, padded batches."""

import numpy as np
import tensorflow as tf

from vlae_tf.data import batching
from vlae_tf.data import binarization


class BatchingTest(tf.test.TestCase):

  def test_resumed_order_equals_uninterrupted_order(self):
    numbers = tf.data.Dataset.range(10).map(lambda i: tf.fill([1, 1, 1], tf.cast(i, tf.float32)))
    full = batching.training_batches(numbers, 4, seed=3)
    resumed = batching.training_batches(numbers, 4, seed=3, start_step=4)
    want = [b.numpy().ravel().tolist() for b in full.take(9)][4:]
    got = [b.numpy().ravel().tolist() for b in resumed.take(5)]
    self.assertEqual(got, want)
    # Every epoch is a permutation, and epochs differ.
    flat = sum([b.numpy().ravel().tolist() for b in full.take(5)], [])
    self.assertCountEqual(flat[:10], range(10))
    self.assertCountEqual(flat[10:20], range(10))
    self.assertNotEqual(flat[:10], flat[10:20])

  def test_input_pipelines_read_disjoint_shards_that_cover_every_epoch(self):
    """Two input pipelines (workers) of two replicas each, 11 images (shards of 6 and 5), B = 4:
    the pipelines' images are disjoint and each holds its shard once per epoch of the shard; a
    pipeline resumed at a step continues the uninterrupted one; one pipeline is the global order."""
    size, batch, steps = 11, 4, 12
    numbers = tf.data.Dataset.range(size).map(lambda i: tf.fill([1, 1, 1], tf.cast(i, tf.float32)))
    streams = []
    for pipeline in range(2):
      context = tf.distribute.InputContext(2, pipeline, 4)
      batches = list(batching.training_batches(numbers, batch, seed=3, input_context=context)
                     .take(2 * steps))  # Two per-replica batches of one image per step.
      self.assertEqual(batches[0].shape, (1, 1, 1, 1))
      streams.append([int(b.numpy().ravel()[0]) for b in batches])
      resumed = batching.training_batches(numbers, batch, seed=3, start_step=5,
                                          input_context=context)
      self.assertEqual([int(b.numpy().ravel()[0]) for b in resumed.take(2 * (steps - 5))],
                       streams[-1][2 * 5:])
    shards = [sorted(set(stream)) for stream in streams]
    self.assertEqual(shards, [list(range(0, size, 2)), list(range(1, size, 2))])
    for stream, shard in zip(streams, shards):
      epochs = [stream[i:i + len(shard)] for i in range(0, len(stream), len(shard))]
      for epoch in epochs[:-1]:
        self.assertCountEqual(epoch, shard)
      self.assertNotEqual(epochs[0], epochs[1])
    # The global batch of a step is the two pipelines' images of that step, in replica order.
    for step in (0, 5):
      self.assertEqual(
          batching.global_batch(numbers, batch, 3, step, num_pipelines=2).numpy().ravel().tolist(),
          streams[0][2 * step:2 * step + 2] + streams[1][2 * step:2 * step + 2])
    # One pipeline of two replicas: the global batches cut in two.
    one = batching.training_batches(numbers, batch, seed=3,
                                    input_context=tf.distribute.InputContext(1, 0, 2))
    self.assertEqual(sum([b.numpy().ravel().tolist() for b in one.take(6)], []),
                     sum([b.numpy().ravel().tolist()
                          for b in batching.training_batches(numbers, batch, seed=3).take(3)], []))
    # Known to be infinite: multi-worker iterators then need no per-step check for the end.
    self.assertEqual(int(one.cardinality()), tf.data.INFINITE_CARDINALITY)
    self.assertEqual(int(batching.training_batches(numbers, batch, seed=3).cardinality()),
                     tf.data.INFINITE_CARDINALITY)
    with self.assertRaisesRegex(ValueError, 'multiple of the number of replicas'):
      batching.training_batches(numbers, 3, seed=3,
                                input_context=tf.distribute.InputContext(1, 0, 2))

  def test_input_pipelines_of_dynamically_binarized_images_are_a_function_of_the_seed(self):
    """Images whose first 4 pixels (grey 0 or 1: binarized exactly) spell their index and whose 8
    others are grey 0.5: a pipeline made twice gives the same images, each epoch of its shard a
    fresh binarization."""
    size = 10
    bits = (np.arange(size)[:, None] >> np.arange(4)) & 1
    grey = np.concatenate([bits, np.full([size, 8], 0.5)], 1).astype(np.float32)
    grey = tf.data.Dataset.from_tensor_slices(grey.reshape([size, 1, 12, 1]))

    def pipeline(seed):
      images = binarization.dynamic_binarization(grey, seed)
      context = tf.distribute.InputContext(2, 1, 2)
      batches = batching.training_batches(images, 2, seed=3, input_context=context)
      return np.concatenate([b.numpy().reshape([-1, 12]) for b in batches.take(10)])

    first, again = pipeline(7), pipeline(7)
    np.testing.assert_array_equal(first, again)
    indices = first[:, :4] @ (1 << np.arange(4))
    self.assertCountEqual(indices[:5], range(1, size, 2))
    self.assertCountEqual(indices[5:], range(1, size, 2))
    noise = {index: [] for index in range(1, size, 2)}
    for index, image in zip(indices, first):
      noise[index].append(tuple(image[4:]))
    self.assertTrue(any(epochs[0] != epochs[1] for epochs in noise.values()))
    self.assertFalse(np.array_equal(first, pipeline(8)))

  def test_strided_subset_spans_the_dataset(self):
    numbers = tf.data.Dataset.range(100)
    self.assertEqual(list(batching.strided_subset(numbers, 4).as_numpy_iterator()),
                     [12, 37, 62, 87])
    self.assertLen(list(batching.strided_subset(numbers, 1000)), 100)

  def test_strided_subset_reaches_the_end_for_every_size(self):
    for size, count in [(10, 3), (100, 7), (10000, 3000), (10000, 6000), (7, 7), (7, 10)]:
      subset = list(batching.strided_subset(tf.data.Dataset.range(size), count)
                    .as_numpy_iterator())
      want = ([(2 * i + 1) * size // (2 * count) for i in range(count)] if count < size
              else list(range(size)))
      self.assertEqual(subset, want)
      self.assertEqual(subset, batching.subset_indices(size, count).tolist())
      if count < size:  # The first and last slices are both represented.
        self.assertLess(subset[0], size / count)
        self.assertGreaterEqual(subset[-1], size - size / count)
    self.assertEqual(int(batching.strided_subset(tf.data.Dataset.range(10), 3).cardinality()), 3)

  def test_padded_batches_have_weights(self):
    data = tf.data.Dataset.from_tensor_slices(tf.ones([5, 2, 3, 1]))
    batches = list(batching.padded_batches(data, 4))
    self.assertLen(batches, 2)
    self.assertEqual(batches[1][0].shape, (4, 2, 3, 1))
    self.assertAllEqual(batches[1][1], [1, 0, 0, 0])
    self.assertAllEqual(batches[1][0][1:], tf.zeros([3, 2, 3, 1]))

  def test_cardinality_counts_when_tf_data_does_not_know(self):
    numbers = tf.data.Dataset.range(9).filter(lambda i: i % 2 == 0)
    self.assertEqual(batching.cardinality(numbers), 5)
    with self.assertRaisesRegex(ValueError, 'finite'):
      batching.cardinality(tf.data.Dataset.range(3).repeat())
    with self.assertRaisesRegex(ValueError, 'empty'):
      batching.cardinality(tf.data.Dataset.range(0))
