"""Tests of seeds.py: the one stateless-seed helper and the random streams it separates."""

import tensorflow as tf

from vlae_tf import seeds


class SeedsTest(tf.test.TestCase):

  def test_folds_the_salts_into_seed_zero(self):
    # The formula every module used before there was one helper.
    want = tf.random.experimental.stateless_fold_in(tf.constant([7, 0], tf.int64),
                                                    tf.constant(3, tf.int64))
    want = tf.random.experimental.stateless_fold_in(want, tf.constant(11, tf.int64))
    self.assertAllEqual(seeds.stateless_seed(7, 3, 11), tf.cast(want, tf.int32))
    self.assertEqual(seeds.stateless_seed(7).dtype, tf.int32)
    self.assertAllEqual(seeds.stateless_seed(7), [7, 0])

  def test_one_int32_salt_gives_the_same_seed(self):
    # image_grids.py (then models/sampling.py) folded one Python-int (int32) salt: its grids keep
    # their draws.
    want = tf.random.experimental.stateless_fold_in(tf.constant([7, 0], tf.int64), 3)  # int32
    self.assertAllEqual(seeds.stateless_seed(7, 3), want)

  def test_the_export_order_salt_first(self):
    # export.py's seeds: fold_in([salt, 0], int64(seed)).
    want = tf.random.experimental.stateless_fold_in(tf.constant([2, 0], tf.int64),
                                                    tf.cast(tf.constant(9), tf.int64))
    self.assertAllEqual(seeds.stateless_seed(2, tf.constant(9)), tf.cast(want, tf.int32))

  def test_tensors_and_ints_give_the_same_seed(self):
    self.assertAllEqual(seeds.stateless_seed(tf.constant(5, tf.int64), tf.constant(2)),
                        seeds.stateless_seed(5, 2))
    traced = tf.function(lambda step: seeds.stateless_seed(5, seeds.TRAIN_SALT, step))
    self.assertAllEqual(traced(tf.constant(9, tf.int64)), seeds.stateless_seed(5, 1, 9))

  def test_streams_differ(self):
    salts = [seeds.TRAIN_SALT, seeds.VALIDATION_SALT, seeds.SUMMARY_SALT, seeds.DATA_SALT,
             seeds.INIT_SALT, seeds.EVALUATION_SALT, seeds.INSPECTION_SALT]
    self.assertLen(set(salts), len(salts))
    drawn = {tuple(seeds.stateless_seed(0, salt).numpy()) for salt in salts}
    self.assertLen(drawn, len(salts))

  def test_split_seed(self):
    first, second = seeds.split_seed(tf.constant([1, 2]), 2)
    self.assertNotAllEqual(first, second)
    self.assertAllEqual(first, seeds.split_seed([1, 2], 2)[0])
