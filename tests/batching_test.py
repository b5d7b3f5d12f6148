"""Tests of batching.py: the data order of a resumed run, strided subsets, padded batches."""

import tensorflow as tf

from vlae_tf.data import batching


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
