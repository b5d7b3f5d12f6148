"""Batching pipelines: training batches in an order that is a function of (seed, step), evenly
spread evaluation subsets, and padded evaluation batches for distributed evaluation.

    training_batches(images, B, seed, start_step)   epoch e = images shuffled with (seed, e);
                                                     a resumed run starts at element step * B
    training_batches(..., input_context=c)           input pipeline w of P: shard w of images,
                                                     shuffled with (seed, e, w), per-replica batches
    global_batch(images, B, seed, step, P)           the global batch of a step over P pipelines
    strided_subset(images, n)                        elements floor((i + 1/2) N / n), i < n
    subset_indices(N, n)                             their indices (labels use them)
    padded_batches(images, B)                        (images, weights) batches of exactly B, the
                                                     tail padded with zero images of weight 0
    cardinality(images)                              the size of a finite dataset
    per_worker_batches(strategy, f, B)               the training batches through the strategy's
                                                     `distribute_datasets_from_function`: each
                                                     worker's pipeline yields per-replica batches

`datasets.load` gives the unbatched images these take.
"""

from absl import logging
import numpy as np
import tensorflow as tf

from vlae_tf import seeds


def cardinality(images):
  """The number of elements of a finite dataset (counted when tf.data does not know it)."""
  count = int(images.cardinality())
  if count == tf.data.INFINITE_CARDINALITY:
    raise ValueError('Expected a finite dataset.')
  if count < 0:
    count = int(images.reduce(np.int64(0), lambda total, _: total + 1))
  if count == 0:
    raise ValueError('The dataset is empty.')
  return count


def training_batches(images, global_batch_size, seed, start_step=0, shuffle_buffer=None,
                     input_context=None):
  """Training batches in an order that is a function of (seed, step) only.

  Without `input_context`: global batches of B images. Epoch e is `images` shuffled with the seed
  (seed, e); batches run across epoch boundaries. Starting at `start_step` skips to element
  start_step * B, reading at most one epoch.

  With a `tf.distribute.InputContext` of P input pipelines and R replicas (the argument of the
  `dataset_fn` of `strategy.distribute_datasets_from_function`): pipeline w reads shard w alone,
  the elements i of `images` with i % P == w (`Dataset.shard`), and yields batches of the
  per-replica batch size B / R, one per local replica and step (B / P images per step). Epoch e of
  the shard is shuffled with the seed (seed, e, w) (with P = 1, (seed, e): one pipeline yields
  the global batches above, cut into R consecutive per-replica batches). The shards are disjoint
  and cover `images`: each image is seen once per epoch of its shard. A run resumed at step s
  skips s * B / P elements of its shard.

  Args:
    images: the unbatched training images (finite).
    global_batch_size: B.
    seed: integer seed.
    start_step: the step of the first batch.
    shuffle_buffer: shuffle buffer size (default: the whole dataset, or the whole shard).
    input_context: a `tf.distribute.InputContext`, or None for global batches.

  Returns:
    An infinite dataset of [B, H, W, C] batches, or [B / R, H, W, C] with an `input_context`.
  """
  num_pipelines, pipeline = 1, 0
  batch_size = images_per_step = global_batch_size
  if input_context is not None:
    num_pipelines, pipeline = input_context.num_input_pipelines, input_context.input_pipeline_id
    if global_batch_size % input_context.num_replicas_in_sync:
      raise ValueError(f'The global batch ({global_batch_size}) must be a multiple of the number '
                       f'of replicas ({input_context.num_replicas_in_sync}).')
    batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    images_per_step = global_batch_size // num_pipelines
    if num_pipelines > 1:
      images = images.shard(num_pipelines, pipeline)
  size = cardinality(images)
  first_epoch, offset = divmod(int(start_step) * images_per_step, size)
  buffer = size if shuffle_buffer is None else min(size, shuffle_buffer)
  salts = (pipeline,) if num_pipelines > 1 else ()

  def epoch(index):
    epoch_seed = tf.random.stateless_uniform(  # A full-range int64 from (seed, index[, w]).
        [], seed=seeds.stateless_seed(seed, seeds.DATA_SALT, index, *salts), minval=None,
        maxval=None, dtype=tf.int64)
    return images.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)

  batches = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(offset)
  return infinite(batches.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def infinite(dataset):
  """`dataset`, known to tf.data as infinite (flat_map and rebatch forget it): the iterators of
  multi-worker strategies then skip their per-step all-reduce that checks every worker still has
  data (`get_next_as_optional`)."""
  return dataset.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))


def global_batch(images, global_batch_size, seed, step=0, shuffle_buffer=None, num_pipelines=1):
  """The B images of `step` over P input pipelines: pipeline w's B / P images, for w = 0..P-1.

  Replica r of worker w holds the r-th B / R rows of pipeline w's share, so this is the global batch
  in replica order (with P = 1, the batch of `training_batches` at `step`). Every worker computes
  it for the data-dependent initialization, which must be the same everywhere.
  """
  if num_pipelines == 1:
    return next(iter(training_batches(images, global_batch_size, seed, step, shuffle_buffer)))
  parts = [next(iter(training_batches(
      images, global_batch_size, seed, step, shuffle_buffer,
      input_context=tf.distribute.InputContext(num_pipelines, pipeline, num_pipelines))))
           for pipeline in range(num_pipelines)]
  return tf.concat(parts, 0)


def strided_subset(images, max_examples, size=None):
  """`max_examples` elements spread evenly over the whole dataset, in order.

  Element i of the subset is element floor((i + 1/2) * size / max_examples) of `images`: the
  middle of the i-th of `max_examples` equal slices, so the subset covers the dataset evenly from
  its start to its end for every `max_examples` (taking the first examples, or every
  (size // max_examples)-th one cut at `max_examples`, would drop the tail: the static MNIST test
  split is sorted by class, so that would drop whole classes).

  Args:
    images: a finite dataset.
    max_examples: the subset's size; None (or >= size): the whole dataset; <= 0: empty.
    size: the dataset's size, when known (else counted).

  Returns:
    A dataset of min(max_examples, size) elements with a known cardinality.
  """
  if max_examples is None:
    return images
  if max_examples <= 0:
    return images.take(0)
  size = cardinality(images) if size is None else size
  if max_examples >= size:
    return images
  chosen = np.zeros(size, bool)
  chosen[subset_indices(size, max_examples)] = True
  chosen = tf.constant(chosen)
  subset = images.enumerate().filter(lambda index, _: chosen[index]).map(lambda _, image: image)
  return subset.apply(tf.data.experimental.assert_cardinality(max_examples))


def subset_indices(size, max_examples):
  """The indices floor((2i + 1) * size / (2 * max_examples)), i < max_examples, of `strided_subset`."""
  if max_examples is None or max_examples >= size:
    return np.arange(size, dtype=np.int64)
  slices = np.arange(max(int(max_examples), 0), dtype=np.int64)
  return (2 * slices + 1) * int(size) // (2 * int(max_examples))


def padded_batches(images, global_batch_size):
  """Batches of exactly `global_batch_size`: (images, weights), the tail padded with zero images.

  Weights are 1 for real images and 0 for padding, so every replica gets a full, static-shape batch.
  """

  def pad(batch):
    count = tf.shape(batch)[0]
    padding = global_batch_size - count
    batch = tf.pad(batch, [[0, padding], [0, 0], [0, 0], [0, 0]])
    weights = tf.pad(tf.ones([count], tf.float32), [[0, padding]])
    batch = tf.ensure_shape(batch, [global_batch_size] + batch.shape[1:].as_list())
    return batch, tf.ensure_shape(weights, [global_batch_size])

  return images.batch(global_batch_size).map(pad).prefetch(tf.data.AUTOTUNE)


def indexed_subset(images, max_examples, size=None, start=0):
  """(image, index) pairs of `strided_subset(images, max_examples)` from its element `start` on:
  the index is the image's in `images`, so that an image's random draws can follow it (seeds.py)
  whatever subset, batch or piece of an evaluation it is in."""
  size = cardinality(images) if size is None else size
  indices = subset_indices(size, max_examples)[int(start):]
  chosen = np.zeros(size, bool)
  chosen[indices] = True
  chosen = tf.constant(chosen)
  subset = images.enumerate().filter(lambda index, _: chosen[index])
  subset = subset.map(lambda index, image: (image, index))
  return subset.apply(tf.data.experimental.assert_cardinality(len(indices)))


def padded_indexed_batches(pairs, global_batch_size):
  """`padded_batches` of (image, index) pairs: (images, weights, indices), padding index -1."""

  def pad(batch, indices):
    count = tf.shape(batch)[0]
    padding = global_batch_size - count
    batch = tf.pad(batch, [[0, padding], [0, 0], [0, 0], [0, 0]])
    weights = tf.pad(tf.ones([count], tf.float32), [[0, padding]])
    indices = tf.pad(indices, [[0, padding]], constant_values=-1)
    return (tf.ensure_shape(batch, [global_batch_size] + batch.shape[1:].as_list()),
            tf.ensure_shape(weights, [global_batch_size]),
            tf.ensure_shape(indices, [global_batch_size]))

  return pairs.batch(global_batch_size).map(pad).prefetch(tf.data.AUTOTUNE)


def per_worker_batches(strategy, training_batches, global_batch_size):
  """Per-worker input pipelines: a distributed dataset of per-replica batches of B / R images.

  `strategy.distribute_datasets_from_function` calls `training_batches(input_context=c)` once per
  worker with that worker's `tf.distribute.InputContext` (P pipelines, one per worker): the
  pipeline reads and shuffles its own shard and yields one per-replica batch per local replica
  and step. With one worker (P = 1) it is `training_batches()`, the global batches of today, cut
  into R consecutive per-replica batches: replica r still gets rows [r * B / R, (r + 1) * B / R)
  of the global batch, so a one-worker run keeps its data order (and resumes its older runs)
  exactly.

  Args:
    strategy: the `tf.distribute.Strategy`.
    training_batches: `f(input_context=None)`, e.g. a `functools.partial` of
      `batching.training_batches`: global batches without a context, a pipeline's per-replica
      batches with one.
    global_batch_size: B.

  Returns:
    A `tf.distribute.DistributedDataset`; `next` on its iterator gives per-replica values.
  """

  def dataset_fn(context):
    logging.info('Input pipeline %d of %d: %s, %d image(s) per step in per-replica batches of %d.',
                 context.input_pipeline_id + 1, context.num_input_pipelines,
                 'every training image' if context.num_input_pipelines == 1 else
                 f'shard {context.input_pipeline_id} of the training images',
                 global_batch_size // context.num_input_pipelines,
                 context.get_per_replica_batch_size(global_batch_size))
    if context.num_input_pipelines == 1:
      return infinite(training_batches().rebatch(
          context.get_per_replica_batch_size(global_batch_size), drop_remainder=True))
    return training_batches(input_context=context)

  return strategy.distribute_datasets_from_function(dataset_fn)
