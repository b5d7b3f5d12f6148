"""Binarization of grey-level images (`dynamic_mnist`, `omniglot`): Bernoulli samples of the grey
levels, afresh at every iteration for training, once for evaluation (`datasets.load` does it).

* 'train' and 'train+valid' are binarized dynamically: pixel x is 1 with probability equal to its
  grey level, with fresh noise every time the dataset is iterated (every epoch, including each pass
  of `dataset.repeat()`). Images are binarized in chunks of 1,024 consecutive images (one vectorized
  op per chunk); the noise of chunk c in iteration k comes from the stateless key (r_k_c, c), where
  r_k_c is element c of `tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`: one
  `Dataset` object gives a new binarization per iteration, and two datasets made with the same
  `seed` give the same sequence of binarizations. (As for every seeded TensorFlow op, the sequence
  also depends on the global seed if `tf.random.set_seed` was called.) The sequence restarts when a
  new `Dataset` is made, e.g. after restarting a program.
* 'valid' and 'test' are binarized once, with the fixed key (EVAL_BINARIZATION_SEED, c) for chunk
  c, independently of `seed`: every model is evaluated on the same binary images.
"""

import tensorflow as tf

# Key of the one-off binarization of evaluation splits ('valid', 'test') of grey-level datasets.
EVAL_BINARIZATION_SEED = 20170308

# Splits binarized afresh at every iteration; the others (evaluation) are binarized once.
DYNAMIC_SPLITS = ('train', 'train+valid')

# tf.data calls a map function once per element, at ~0.1 ms a call: pixels are converted and
# binarized in chunks of this many consecutive images, then unbatched.
CHUNK_SIZE = 1024


def dynamic_binarization(grey: tf.data.Dataset, seed: int) -> tf.data.Dataset:
  """Bernoulli-samples grey levels with fresh noise at every iteration of the returned dataset.

  Images are binarized in chunks of `CHUNK_SIZE` consecutive images: chunk c of iteration k is
  `uniform(key=(r_k_c, c)) < grey`, with r_k_c the c-th element of `tf.data.Dataset.random(seed,
  rerandomize_each_iteration=True)` in iteration k. Re-iterating the dataset (a new epoch, or the
  next pass of a `repeat()`) gives a new binarization, and the same `seed` gives the same sequence
  of binarizations.

  Args:
    grey: unbatched float32 images with values in [0, 1].
    seed: seed of the sequence of binarizations.

  Returns:
    The binarized dataset, float32 in {0, 1}.
  """
  return binarize_chunks_dynamically(grey.batch(CHUNK_SIZE), seed).unbatch()


def fixed_binarization(grey: tf.data.Dataset,
                       seed: int = EVAL_BINARIZATION_SEED) -> tf.data.Dataset:
  """Bernoulli-samples grey levels once: chunk c of `CHUNK_SIZE` images always uses the key (seed, c).

  Args:
    grey: unbatched float32 images with values in [0, 1].
    seed: the key of the binarization (an integer, or an int64 scalar tensor, e.g. a function of
      an epoch index inside `flat_map`); evaluation splits use EVAL_BINARIZATION_SEED.

  Returns:
    The binarized dataset, float32 in {0, 1}, the same at every iteration.
  """
  return binarize_chunks_once(grey.batch(CHUNK_SIZE), seed).unbatch()


def binarize_chunks_dynamically(chunks: tf.data.Dataset, seed: int) -> tf.data.Dataset:
  keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

  def binarize(indexed_chunk, key):
    index, chunk = indexed_chunk
    return _bernoulli(chunk, tf.stack([key, index]))

  return tf.data.Dataset.zip(chunks.enumerate(), keys).map(
      binarize, num_parallel_calls=tf.data.AUTOTUNE)


def binarize_chunks_once(chunks: tf.data.Dataset, seed: int) -> tf.data.Dataset:

  def binarize(index, chunk):
    return _bernoulli(chunk, tf.stack([tf.cast(seed, tf.int64), index]))

  return chunks.enumerate().map(binarize, num_parallel_calls=tf.data.AUTOTUNE)


def _bernoulli(grey: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
  """1 with probability grey (exactly 0 for grey 0, 1 for grey 1), from a stateless key [2]."""
  uniform = tf.random.stateless_uniform(tf.shape(grey), seed=key)  # in [0, 1)
  return tf.cast(uniform < grey, tf.float32)
