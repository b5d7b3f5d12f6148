"""Stateless seeds: every random draw of vlae_tf is a function of an integer seed and salts.

    stateless_seed(seed, s_1, ..., s_n) = int32(fold_in(... fold_in([seed, 0], s_1) ..., s_n))

with `tf.random.experimental.stateless_fold_in`. The salts below separate the random streams of
one run: the same seed gives independent draws for training noise, validation, summaries, data
order, initialization, evaluation and inspection, and a draw depends on nothing but (seed, salts),
so a resumed run or a second evaluation repeats it exactly. Salts after the first (a step, a
batch index, a replica id) are integers or integer tensors.

The exported SavedModel keeps its own salts (export.py), folded into [salt, 0] rather than into
[seed, 0]: `stateless_seed(salt, seed)`.
"""

import tensorflow as tf

# The random streams of a run (the first salt).
TRAIN_SALT = 1
VALIDATION_SALT = 2
SUMMARY_SALT = 3
DATA_SALT = 4
INIT_SALT = 5
EVALUATION_SALT = 11
INSPECTION_SALT = 13


def stateless_seed(seed, *salts):
  """An int32 [2] stateless seed from an integer seed and integer salts (ints or tensors).

  Salts are folded in as int64. (`stateless_fold_in` draws in the dtype of what it folds in; with
  one salt the int32 result is the same either way, so the grids of image_grids.py, which used to
  fold an int32 salt, keep their draws.)
  """
  result = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
  for salt in salts:
    result = tf.random.experimental.stateless_fold_in(result, tf.cast(salt, tf.int64))
  return tf.cast(result, tf.int32)


def per_image_seeds(seed, salt, indices):
  """int32 [N, 2]: `stateless_seed(seed, salt, i)` for every image index i of `indices` [N]."""
  return tf.map_fn(lambda index: stateless_seed(seed, salt, index),
                   tf.cast(indices, tf.int64), fn_output_signature=tf.int32)


def fold_in_each(seeds, salt):
  """int32 [N, 2]: `salt` folded into each of `seeds` [N, 2]."""
  return tf.map_fn(
      lambda seed: tf.cast(tf.random.experimental.stateless_fold_in(seed, tf.cast(salt, tf.int64)),
                           tf.int32),
      tf.cast(seeds, tf.int32), fn_output_signature=tf.int32)


def split_seed(seed, num: int):
  """`num` independent int32 [2] stateless seeds from one int32 [2] seed."""
  return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), num))
