"""Training: the distribution strategy, the replica step, Polyak averaging, checkpoints, summaries.

The split follows Orbit: `Trainer` owns the inner step (one `tf.function` that runs several steps
on every replica without leaving the graph) and `train()` owns the outer loop (checkpoints,
validation, summaries, the progress line, the operative config). A call of the inner loop runs to
the next summary, checkpoint or validation step, or for about `progress.CHUNK_SECONDS` of wall
time, whichever comes first (`progress.ChunkPacer`), so that progress lines come at least every
`progress.PROGRESS_SECONDS` and a signal is answered within seconds whatever the step time.

Objective. With R replicas, a global batch of B images, and replica r holding the images B_r, each
replica minimizes

    loss_r = sum_{i in B_r} -log p(x_i | z_i) / B  +  max(mean_{i in B_r} KL_i, lambda * D) / R

where D = H * W * C and KL_i is the Monte-Carlo KL of image i. Replica gradients are summed (one
all-reduce), so the applied gradient is that of

    sum_r loss_r = mean_B -log p(x|z)  +  mean_r max(mean_{B_r} KL, lambda * D),

which is the free-bits objective of the paper's scripts, max(mean_B KL, lambda * D), whenever all
replicas are on the same side of the threshold (always once the KL is well above lambda * D, and
exactly with one replica). With soft free bits (CIFAR-10) the loss is
sum_{B_r} (-log p(x|z) + gamma * KL) / B, and gamma follows the global batch-mean KL.

Polyak averaging. After every optimizer step, on every device,

    average <- decay * average + (1 - decay) * weight          (trainable floating-point weights)
    average <- weight                                           (every other variable)

The averages live in a second instance of the model (`averaged_model`), whose variables are
mirrored like the trained ones and are updated in cross-replica context by
`strategy.extended.update`, one device at a time from that device's copy of the weights: the copies
stay identical without extra communication. Validation, sampling, evaluation and export use
`averaged_model`, which checkpoints save under the key `averaged_model`.

Randomness and data. Every random draw is stateless: the seed of replica r at step s is
fold_in(fold_in(fold_in([seed, 0], TRAIN_SALT), s), r), and the data order is a function of
(seed, step): epoch e is the training set shuffled with its own seed, and a resumed run skips to
element s * B. So the RNG state and the data position are the step, and a checkpoint holds step,
model, averaged model and optimizer (and gamma with soft free bits); no tf.data iterator is saved
(that would serialize the in-memory dataset into every checkpoint). A resumed run reproduces the
uninterrupted run exactly when `datasets.load` is deterministic (the static binarizations, CIFAR);
a dynamically binarized training set restarts its sequence of binarizations, which is
statistically equivalent but not identical.

Faults (docs/reliability.md). A step whose loss or summed gradient is not finite is skipped
(weights, optimizer, averages untouched; decided on all-reduced values so replicas agree), counted
in the `bad_steps` summary, and `max_consecutive_bad_steps` in a row stop the run (NonFiniteError).
SIGTERM / SIGINT set a flag checked between chunks of steps (about 2 s each) and between the
batches of a validation pass, which is abandoned: a checkpoint is saved and TrainingInterrupted
raised. A kill mid-save leaves the previous checkpoint as the latest (the
CheckpointManager renames the state file into place after the checkpoint is complete). A restart
in a model_dir whose config.gin differs in more than bookkeeping (RESUMABLE_BINDINGS) is refused.
A checkpoint damaged after its save is found by reading it back in full (CRC32C per tensor):
`train` moves it to damaged/ and resumes from the newest intact one (`prepare_resume`); readers
use the newest intact one (`latest_checkpoint`). A missing or damaged `checkpoint` state file is
rebuilt from the checkpoint files present (`CheckpointList`).

Run directory (model_dir):
    config.gin              every binding the run was started with; eval/sample/export re-read it
    operative_config.gin    the bindings actually used (written after the first step)
    started.json            when the first (fresh) train call began: the origin of training time
    ckpt-<step>.*           checkpoints (tf.train.CheckpointManager)
    checkpoint              the CheckpointManager's list of kept checkpoints
    damaged/                damaged checkpoints that `train` moved aside (never deleted)
    events.out.tfevents.*   the hparams dashboard's settings of the run (`summaries`)
    train/, validation/     TensorBoard summaries (`summaries`)
"""

import contextlib
import glob
import json
import math
import os
import re
import shutil
import signal
import threading
import time

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tf_keras as keras

# pylint: disable=unused-import
# The modules whose gin registrations a run's config refers to.
from vlae_tf import configs
from vlae_tf import datasets
from vlae_tf import files
from vlae_tf import flows
from vlae_tf import likelihoods
from vlae_tf import model as model_lib
from vlae_tf import networks
from vlae_tf import objectives
from vlae_tf import pixelcnn
# pylint: enable=unused-import
from vlae_tf import progress
from vlae_tf import summaries

CONFIG_FILE = 'config.gin'
OPERATIVE_CONFIG_FILE = 'operative_config.gin'
STARTED_FILE = 'started.json'

# Salts that separate the random streams.
TRAIN_SALT = 1
VALIDATION_SALT = 2
SUMMARY_SALT = 3
DATA_SALT = 4
INIT_SALT = 5

METRIC_KEYS = ('loss', 'elbo', 'kl', 'log_px_z', 'gradient_norm', 'kl_weight')

# `train` bindings that may change between the runs of one model_dir (bookkeeping, not the model,
# the data or the optimization), and macros that only feed them.
RESUMABLE_BINDINGS = frozenset(
    'train.' + name for name in (
        'train_steps', 'checkpoint_every', 'summary_every', 'eval_every', 'eval_examples',
        'eval_batch_size', 'num_summary_images', 'max_checkpoints_to_keep',
        'max_consecutive_bad_steps', 'deterministic', 'eval_split'))
RESUMABLE_MACROS = frozenset({'TRAIN_STEPS'})


class RunError(Exception):
  """A run directory is missing something (config, checkpoint): a user error, not a bug."""


class CheckpointNotFoundError(RunError, FileNotFoundError):
  """There is no checkpoint in the run directory."""


class DamagedCheckpointError(RunError):
  """A checkpoint cannot be read back (truncated, changed bytes, missing file), and no intact one
  can stand in for it."""


class ConfigNotFoundError(RunError, FileNotFoundError):
  """There is no saved gin config in the run directory."""


class DamagedConfigError(RunError):
  """A run's saved gin config is not a readable gin file (binary garbage, cut mid-statement)."""


class IncompatibleRunError(RunError):
  """model_dir holds checkpoints of a run started with different model/data/optimizer bindings."""


class NonFiniteError(RunError, FloatingPointError):
  """Too many consecutive steps had a non-finite loss or gradient."""


class TrainingInterrupted(Exception):
  """SIGTERM or SIGINT stopped training after a final checkpoint (not an error of the run)."""

  def __init__(self, signum, step, checkpoint):
    self.signum = int(signum)
    self.step = int(step)
    self.checkpoint = checkpoint
    super().__init__(f'interrupted by {signal.Signals(signum).name} at step {step}; saved '
                     f'{checkpoint}; run the same command again to resume')


# ---------------------------------------------------------------------------------------------
# Factories (the gin roots that say which strategy and which model).


@gin.configurable
def make_strategy(devices=None):
  """The strategy: multi-worker when TF_CONFIG is set, else mirrored over the local devices.

  On CPU-only devices the replicas reduce through one device (`ReductionToOneDevice`) instead of
  collective ops: every `MirroredStrategy` numbers its collective instances from the same start,
  so two CPU strategies in one process (tests, notebooks) that all-reduce tensors of different
  shapes would collide ("Shape mismatch in the collective instance").

  Args:
    devices: local devices for `MirroredStrategy` (default: every GPU, else every CPU device).

  Returns:
    A `tf.distribute.Strategy`.
  """
  if os.environ.get('TF_CONFIG'):
    return tf.distribute.MultiWorkerMirroredStrategy()
  if devices is None:  # MirroredStrategy's default: every GPU, else the first CPU.
    on_cpu = not tf.config.list_logical_devices('GPU')
  else:
    on_cpu = all(tf.DeviceSpec.from_string(d).device_type == 'CPU' for d in devices)
  # One strategy object (each logs a "Using MirroredStrategy" line).
  return tf.distribute.MirroredStrategy(
      devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice() if on_cpu else None)


@gin.configurable
def make_model(model_cls=model_lib.VLAE):
  """Constructs the model from gin (`model_cls()`, every argument bound in gin)."""
  return model_cls()


def create_variables(model):
  """Creates every variable of `model` without data-dependent initialization.

  Used before restoring a checkpoint (whose values overwrite these) and to give the averaged model
  its variables: one ELBO of a single all-zero image, which is a valid binary and 8-bit image.
  """
  images = tf.zeros([1, *model.image_shape], tf.float32)
  model.elbo(images, tf.zeros([2], tf.int32), training=False)


def stateless_seed(seed, *salts):
  """An int32 [2] stateless seed from an integer seed and integer salts (Python ints or tensors)."""
  result = tf.constant([seed, 0], tf.int64)
  for salt in salts:
    result = tf.random.experimental.stateless_fold_in(result, tf.cast(salt, tf.int64))
  return tf.cast(result, tf.int32)


# ---------------------------------------------------------------------------------------------
# Polyak averaging.


class ExponentialMovingAverage:
  """Polyak averaging of one model's variables into another's (same architecture, same order).

      average <- decay * average + (1 - decay) * weight     trainable floating-point variables
      average <- weight                                      every other variable

  `update()` runs in cross-replica context (after `strategy.run`): `strategy.extended.update`
  applies the assignment on every device from that device's copy of the weight, so the mirrored
  copies stay equal.
  The averages need no slot of their own in checkpoints: they are the averaged model's variables.
  """

  def __init__(self, weights, averages, decay, strategy=None):
    """Pairs the variables.

    Args:
      weights: the trained variables (`model.variables`).
      averages: the averaged model's variables, in the same order.
      decay: the Polyak decay, e.g. 0.998. `update(num_updates=n)` uses
        min(decay, (1 + n) / (10 + n)) instead (the warm-up of tf.train.ExponentialMovingAverage),
        so that early averages are not dominated by the random initial weights.
      strategy: the strategy that owns the variables (default: the current one).

    Raises:
      ValueError: when the two lists do not pair up by shape and dtype.
    """
    weights, averages = list(weights), list(averages)
    if len(weights) != len(averages):
      raise ValueError(f'{len(weights)} weights but {len(averages)} averages.')
    for weight, average in zip(weights, averages):
      if weight.shape != average.shape or weight.dtype != average.dtype:
        raise ValueError(f'Cannot average {weight.name} {weight.shape} {weight.dtype!r} into '
                         f'{average.name} {average.shape} {average.dtype!r}.')
    self.decay = float(decay)
    self.strategy = strategy or tf.distribute.get_strategy()
    self._pairs = list(zip(weights, averages))

  def _is_averaged(self, weight):
    return weight.trainable and weight.dtype.is_floating

  def copy(self):
    """average <- weight for every variable (the start of training)."""
    self._apply(lambda average, weight: average.assign(weight))

  def update(self, num_updates=None):
    """One averaging step; call in cross-replica context.

    Args:
      num_updates: the number of optimizer updates so far, for the warm-up of the decay; None:
        the constant decay.
    """
    decay = self.decay
    if num_updates is not None:
      num_updates = tf.cast(num_updates, tf.float32)
      decay = tf.minimum(decay, (1.0 + num_updates) / (10.0 + num_updates))

    def average_fn(average, weight):
      return average.assign(decay * average + (1.0 - decay) * weight)

    def copy_fn(average, weight):
      return average.assign(weight)

    strategy = self.strategy
    updates = []
    for weight, average in self._pairs:
      fn = average_fn if self._is_averaged(weight) else copy_fn
      updates.append(strategy.extended.update(average, fn, args=(weight,), group=False))
    return updates

  def _apply(self, fn):
    for weight, average in self._pairs:
      self.strategy.extended.update(average, fn, args=(weight,), group=False)


# ---------------------------------------------------------------------------------------------
# Losses and the distributed step.


def replica_loss(outputs, global_batch_size, free_bits_lambda, num_dims, num_replicas,
                 kl_weight=None):
  """One replica's share of the global loss (see the module docstring).

  Args:
    outputs: `model.elbo` of this replica's images: dict of [b] tensors (nats per image).
    global_batch_size: B, the number of images over all replicas.
    free_bits_lambda: lambda, nats per data dimension.
    num_dims: D = H * W * C.
    num_replicas: R.
    kl_weight: None for free bits; else gamma of soft free bits, and the loss is
      sum_{B_r} (-log p(x|z) + gamma * KL) / B.

  Returns:
    The scalar loss; summed over replicas it is the global objective.
  """
  if kl_weight is not None:
    return tf.nn.compute_average_loss(-outputs['log_px_z'] + kl_weight * outputs['kl'],
                                      global_batch_size=global_batch_size)
  reconstruction = tf.nn.compute_average_loss(-outputs['log_px_z'],
                                              global_batch_size=global_batch_size)
  kl_term = objectives.free_bits_kl(outputs['kl'], free_bits_lambda, num_dims)
  return reconstruction + kl_term / num_replicas


def split_for_replicas(strategy, tensors):
  """Distributes a global batch (a nest of [B, ...] tensors): replica r gets rows [r*b, (r+1)*b).

  Every worker holds the same global batch, so this also works for multi-worker strategies.
  """
  num_replicas = strategy.num_replicas_in_sync
  first = tf.nest.flatten(tensors)[0]
  batch = first.shape[0]
  if batch is None:  # Known at run time only.
    batch = tf.shape(first)[0]
    with tf.control_dependencies([tf.debugging.assert_equal(
        batch % num_replicas, 0, message='The global batch must be a multiple of the number of '
        'replicas.')]):
      per_replica = tf.identity(batch // num_replicas)
  elif batch % num_replicas:
    raise ValueError(f'The global batch ({batch}) must be a multiple of the number of replicas '
                     f'({num_replicas}).')
  else:
    per_replica = batch // num_replicas

  def value_fn(context):
    start = context.replica_id_in_sync_group * per_replica
    return tf.nest.map_structure(lambda t: t[start:start + per_replica], tensors)

  return strategy.experimental_distribute_values_from_function(value_fn)


class Trainer:
  """The inner loop: a distributed train step with free bits, Adamax and Polyak averaging.

  Create it under no scope; it enters `strategy.scope()` for its own variables. The models and the
  optimizer must have been created under the same strategy's scope.
  """

  def __init__(self, strategy, model, averaged_model, optimizer, *, global_batch_size,
               free_bits_lambda, ema_decay, seed, soft_free_bits=None, ema_warmup=False):
    """Holds the training state.

    Args:
      strategy: the `tf.distribute.Strategy`.
      model: the trained model.
      averaged_model: a second instance of the same model, for the Polyak averages.
      optimizer: a tf_keras optimizer.
      global_batch_size: B.
      free_bits_lambda: lambda, nats per data dimension.
      ema_decay: Polyak decay.
      seed: integer seed.
      ema_warmup: average with min(ema_decay, (1 + n) / (10 + n)) after n updates.
      soft_free_bits: an `objectives.SoftFreeBits` (created under the strategy scope) to use soft
        free bits instead of free bits; its gamma is updated after every step with the global
        batch-mean KL.
    """
    self.strategy = strategy
    self.model = model
    self.averaged_model = averaged_model
    self.optimizer = optimizer
    self.global_batch_size = int(global_batch_size)
    self.free_bits_lambda = float(free_bits_lambda)
    self.ema_decay = float(ema_decay)
    self.ema_warmup = bool(ema_warmup)
    self.seed = int(seed)
    self.soft_free_bits = soft_free_bits
    with strategy.scope():
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step',
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      # Not checkpointed: a resumed run starts counting again.
      self.consecutive_bad_steps = tf.Variable(
          0, dtype=tf.int64, trainable=False, name='consecutive_bad_steps',
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self._applied_variables = None
    self.ema = None
    self._train_loop = tf.function(self._train_loop_fn)
    self._gradients = tf.function(self._gradients_fn)

  def build(self):
    """Pairs the averaged model with the model and creates the optimizer slots.

    Call after both models have their variables (`initialize` / `create_variables`).
    """
    with self.strategy.scope():
      self.ema = ExponentialMovingAverage(self.model.variables, self.averaged_model.variables,
                                          self.ema_decay, self.strategy)
      self.optimizer.build(self.model.trainable_variables)

  def checkpoint(self):
    """The training state. Data position and seeds are functions of `step`."""
    state = dict(step=self.step, model=self.model, averaged_model=self.averaged_model,
                 optimizer=self.optimizer)
    if self.soft_free_bits is not None:
      state['soft_free_bits'] = self.soft_free_bits
    return tf.train.Checkpoint(**state)

  # Replica context.

  def _replica_gradients(self, images):
    """Loss, gradients (summed over replicas) and metric sums of one replica's images."""
    context = tf.distribute.get_replica_context()
    seed = stateless_seed(self.seed, TRAIN_SALT, self.step, context.replica_id_in_sync_group)
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      outputs = self.model.elbo(images, seed, training=True)
      kl_weight = None if self.soft_free_bits is None else self.soft_free_bits.gamma
      loss = replica_loss(outputs, self.global_batch_size, self.free_bits_lambda,
                          self.model.num_dims, self.strategy.num_replicas_in_sync, kl_weight)
    gradients = tape.gradient(loss, variables)
    pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
    if len(pairs) != len(variables):
      unused = [v.name for g, v in zip(gradients, variables) if g is None]
      logging.log_first_n(logging.WARNING, 'No gradient for %s', 1, unused)
    gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, [g for g, _ in pairs])
    sums = {
        'loss': loss,
        'elbo': tf.reduce_sum(outputs['elbo']),
        'kl': tf.reduce_sum(outputs['kl']),
        'log_px_z': tf.reduce_sum(outputs['log_px_z']),
    }
    return gradients, [v for _, v in pairs], sums

  def _replica_compute(self, images):
    """Summed gradients, metric sums, the global gradient norm, and 1 if the step is not finite.

    `finite` is computed from all-reduced values (the summed gradients and the summed loss), so
    every replica reaches the same decision.
    """
    gradients, variables, sums = self._replica_gradients(images)
    self._applied_variables = variables  # The same list on every replica (trace time).
    context = tf.distribute.get_replica_context()
    global_loss = context.all_reduce(tf.distribute.ReduceOp.SUM, sums['loss'])
    gradient_norm = tf.linalg.global_norm(gradients)
    finite = tf.math.logical_and(tf.math.is_finite(gradient_norm),
                                 tf.math.is_finite(global_loss))
    return gradients, sums, gradient_norm, 1 - tf.cast(finite, tf.int32)

  def _replica_apply(self, gradients):
    self.optimizer.apply_gradients(zip(gradients, self._applied_variables),
                                   skip_gradients_aggregation=True)

  # Cross-replica context.

  def _reduce(self, sums, gradient_norm):
    strategy = self.strategy
    total = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in sums.items()}
    metrics = {'loss': total['loss']}
    for key in ('elbo', 'kl', 'log_px_z'):
      metrics[key] = total[key] / self.global_batch_size
    metrics['gradient_norm'] = strategy.reduce(tf.distribute.ReduceOp.MEAN, gradient_norm,
                                               axis=None)
    if self.soft_free_bits is None:
      metrics['kl_weight'] = tf.constant(1.0)
    else:
      metrics['kl_weight'] = self.soft_free_bits.gamma.read_value()  # gamma of this step
    return metrics

  def train_step(self, images):
    """One step on a global batch [B, H, W, C] (call inside a tf.function).

    A step whose loss or summed gradient is not finite is skipped: the optimizer (weights, slots,
    iterations), the Polyak averages and gamma are untouched; `step` still advances (the batch is
    consumed) and `consecutive_bad_steps` counts it. The decision is taken in cross-replica
    context on all-reduced values, so every replica skips or applies together.

    Returns:
      (metrics, finite): the step's metrics and a boolean scalar.
    """
    gradients, sums, gradient_norm, not_finite = self.strategy.run(
        self._replica_compute, args=(split_for_replicas(self.strategy, images),))
    # Equal on every replica already; the reduction makes one cross-replica boolean of it.
    finite = tf.equal(self.strategy.reduce(
        tf.distribute.ReduceOp.SUM, not_finite, axis=None), 0)
    metrics = self._reduce(sums, gradient_norm)

    def apply():
      self.strategy.run(self._replica_apply, args=(gradients,))
      self.ema.update(self.optimizer.iterations if self.ema_warmup else None)
      if self.soft_free_bits is not None:
        with tf.control_dependencies([metrics['kl_weight']]):
          self.soft_free_bits.update(metrics['kl'])
      return tf.constant(True)

    with tf.control_dependencies([tf.cond(finite, apply, lambda: tf.constant(False))]):
      self.consecutive_bad_steps.assign(
          tf.where(finite, tf.constant(0, tf.int64), self.consecutive_bad_steps + 1))
      self.step.assign_add(1)
    return metrics, finite

  def _train_loop_fn(self, iterator, num_steps, max_consecutive_bad_steps):
    totals = {key: tf.constant(0.0) for key in METRIC_KEYS}
    good = tf.constant(0.0)
    bad = tf.constant(0.0)
    for _ in tf.range(num_steps):
      metrics, finite = self.train_step(next(iterator))
      totals = {key: totals[key] + tf.where(finite, tf.cast(metrics[key], tf.float32), 0.0)
                for key in METRIC_KEYS}
      good += tf.cast(finite, tf.float32)
      bad += 1.0 - tf.cast(finite, tf.float32)
      if self.consecutive_bad_steps >= max_consecutive_bad_steps:
        break
    means = {key: value / good for key, value in totals.items()}  # NaN when no step was good.
    means['bad_steps'] = bad
    return means

  def train_loop(self, iterator, num_steps, max_consecutive_bad_steps=None):
    """Runs up to `num_steps` steps in one tf.function.

    Stops early once `max_consecutive_bad_steps` consecutive steps were skipped (None: never).

    Returns:
      The metrics averaged over the applied (finite) steps, and `bad_steps`, the number of skipped
      steps (numpy floats).
    """
    limit = 2**62 if max_consecutive_bad_steps is None else int(max_consecutive_bad_steps)
    metrics = self._train_loop(iterator, tf.constant(num_steps, tf.int32),
                               tf.constant(limit, tf.int64))
    return {key: float(value) for key, value in metrics.items()}

  def _gradients_fn(self, images):
    gradients, _, sums = self.strategy.run(
        self._replica_gradients, args=(split_for_replicas(self.strategy, images),))
    local = [self.strategy.experimental_local_results(g)[0] for g in gradients]
    loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums['loss'], axis=None)
    return local, loss

  def gradients(self, images):
    """The gradients the optimizer would apply for a global batch, and the global loss (tests)."""
    return self._gradients(images)

  def learning_rate(self):
    learning_rate = self.optimizer.learning_rate
    if callable(learning_rate):
      learning_rate = learning_rate(self.optimizer.iterations)
    return float(tf.convert_to_tensor(learning_rate).numpy())


# ---------------------------------------------------------------------------------------------
# Data.


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


def training_batches(images, global_batch_size, seed, start_step=0, shuffle_buffer=None):
  """Global training batches in an order that is a function of (seed, step) only.

  Epoch e is `images` shuffled with the seed (seed, e); batches run across epoch boundaries.
  Starting at `start_step` skips to element start_step * B, reading at most one epoch.

  Args:
    images: the unbatched training images (finite).
    global_batch_size: B.
    seed: integer seed.
    start_step: the step of the first batch.
    shuffle_buffer: shuffle buffer size (default: the whole dataset).

  Returns:
    An infinite dataset of [B, H, W, C] batches.
  """
  size = cardinality(images)
  first_epoch, offset = divmod(int(start_step) * global_batch_size, size)
  buffer = size if shuffle_buffer is None else min(size, shuffle_buffer)

  def epoch(index):
    epoch_seed = tf.random.stateless_uniform(  # A full-range int64 from (seed, index).
        [], seed=stateless_seed(seed, DATA_SALT, index), minval=None, maxval=None, dtype=tf.int64)
    return images.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)

  batches = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(offset)
  return batches.batch(global_batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


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


class DistributedEvaluator:
  """Weighted sums of per-image statistics over a dataset, computed on every replica.

  `statistics_fn(images, seed)` maps [b, H, W, C] images and an int32 [2] seed to a dict of [b]
  tensors. `__call__` returns, for every key, the sum and the sum of squares over the real images,
  and the number of images. Seeds depend on (seed, salt, batch index, replica id) only.

  With `per_example=True`, `__call__` returns (totals, {key: float64 [N] array}): the value of every
  real image too, in dataset order (for paired comparisons of two models on the same images).
  """

  def __init__(self, strategy, statistics_fn, seed=0, salt=VALIDATION_SALT, per_example=False):
    self.strategy = strategy
    self._statistics_fn = statistics_fn
    self._seed = int(seed)
    self._salt = salt
    self._per_example = per_example
    self._step = tf.function(self._step_fn)

  def _replica_fn(self, images, weights, batch_index):
    context = tf.distribute.get_replica_context()
    seed = stateless_seed(self._seed, self._salt, batch_index, context.replica_id_in_sync_group)
    statistics = self._statistics_fn(images, seed)
    sums, values = {}, {}
    for key, value in statistics.items():
      value = tf.cast(value, tf.float32)
      sums[key] = tf.reduce_sum(value * weights)
      sums[key + '/squares'] = tf.reduce_sum(tf.square(value) * weights)
      values[key] = value
    sums['count'] = tf.reduce_sum(weights)
    values['weights'] = weights
    return sums, values

  def _step_fn(self, images, weights, batch_index):
    per_replica_sums, per_replica_values = self.strategy.run(
        self._replica_fn,
        args=split_for_replicas(self.strategy, (images, weights)) + (batch_index,))
    sums = {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for key, value in per_replica_sums.items()}
    if not self._per_example:
      return sums, {}
    # Replica r holds rows [r * b, (r + 1) * b) of the global batch: gathering restores the order.
    return sums, {key: self.strategy.gather(value, axis=0)
                  for key, value in per_replica_values.items()}

  def __call__(self, batches, progress=None):
    """Accumulates over `batches` of (images, weights); `progress(count)` after every batch."""
    totals = {}
    values = {}
    for index, (images, weights) in enumerate(batches):
      sums, batch_values = self._step(images, weights, tf.constant(index, tf.int64))
      for key, value in sums.items():
        totals[key] = totals.get(key, 0.0) + float(value)
      if batch_values:
        real = batch_values.pop('weights').numpy() > 0
        for key, value in batch_values.items():
          values.setdefault(key, []).append(value.numpy().astype(np.float64)[real])
      if progress is not None:
        progress(int(totals['count']))
    if not self._per_example:
      return totals
    return totals, {key: np.concatenate(parts) for key, parts in values.items()}


def means_from_sums(totals):
  """{key: mean} and {key: standard error of the mean} from `DistributedEvaluator` sums."""
  count = max(totals.get('count', 0.0), 1.0)
  means, errors = {}, {}
  for key, value in totals.items():
    if key == 'count' or key.endswith('/squares'):
      continue
    mean = value / count
    variance = max(totals[key + '/squares'] / count - mean**2, 0.0)
    means[key] = mean
    errors[key] = math.sqrt(variance / count)
  return means, errors


# ---------------------------------------------------------------------------------------------
# Run directories.


def read_run_config(path, remedy):
  """The text of a saved gin config (config.gin); DamagedConfigError naming the file if it is not
  one: unreadable, not UTF-8 text, holding NUL bytes, or not parseable as gin (a statement cut
  short). Checks the syntax only: nothing is bound. `remedy` ends the error message.

  A file cut at the end of a line stays valid gin: what it lost shows up as missing or differing
  bindings instead.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as error:
    raise DamagedConfigError(f'Cannot read {path}: {error.strerror or error}; {remedy}') from None
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError as error:
    raise DamagedConfigError(f'{path} is damaged (not text: byte {error.start} of {len(data)} is '
                             f'not UTF-8); {remedy}') from None
  if '\0' in text:
    raise DamagedConfigError(f'{path} is damaged (it holds NUL bytes, at byte '
                             f'{text.index(chr(0))} of {len(data)}); {remedy}')
  if not text.strip():
    raise DamagedConfigError(f'{path} is damaged (empty); {remedy}')
  try:
    for _ in gin.config_parser.ConfigParser(text, gin.config.ParserDelegate(skip_unknown=True)):
      pass
  except Exception as error:  # pylint: disable=broad-except  (SyntaxError, TokenError, ...)
    message = ' '.join(str(error).split())
    raise DamagedConfigError(f'{path} is damaged (not valid gin: {message}); {remedy}') from None
  return text


def load_run_config(model_dir):
  """Clears gin and parses <model_dir>/config.gin strictly (the config the run was started with).

  Raises:
    ConfigNotFoundError: no such directory, or no config.gin in it.
    DamagedConfigError: config.gin is damaged, or names what this vlae_tf does not have.
  """
  if not os.path.isdir(model_dir):
    raise ConfigNotFoundError(f'No such run directory: {model_dir} (pass the --model_dir of a '
                              'bin/train run).')
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise ConfigNotFoundError(f'No {CONFIG_FILE} in {model_dir}: not a training run directory '
                              '(pass the --model_dir of a bin/train run).')
  remedy = ('restore it from a copy, or move it aside and rerun the bin/train command of this run '
            '(it rewrites the file).')
  read_run_config(path, remedy)
  gin.clear_config()
  gin.add_config_file_search_path(configs.search_path())
  try:
    gin.parse_config_file(path, skip_unknown=False)
  except Exception as error:  # pylint: disable=broad-except  (gin raises many kinds)
    message = ' '.join(str(error).split())
    raise DamagedConfigError(f'Cannot use {path}: {message} (is the file damaged, or from another '
                             f'version of vlae_tf?); {remedy}') from None
  return path


def run_dataset():
  """The dataset name bound to `train.dataset` in the parsed config."""
  try:
    return gin.query_parameter('train.dataset')
  except ValueError as error:
    raise RunError('The config binds no train.dataset.') from error


def run_start_time(model_dir):
  """The unix time at which the run's first `train` call began, or None if not recorded."""
  path = os.path.join(model_dir, STARTED_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return float(json.load(f)['unix_time'])


# Checkpoints: which exist, which are intact, and the newest intact one.
#
# A checkpoint <model_dir>/ckpt-N is the pair ckpt-N.index (an sstable mapping each tensor to its
# place, size and CRC32C) and ckpt-N.data-00000-of-00001 (the tensors' bytes). The `checkpoint`
# state file (a text proto written by the CheckpointManager) names the latest one and the kept
# ones. Damage after the save (a full disk, a bad copy, a storage fault) shows when every tensor
# is read back: TensorFlow checks each tensor's CRC32C as it reads it. What each fault raises:
#
#     data file truncated (0, 100 B, half)     IndexError: Read less bytes than requested
#     data file zero-filled, one bit flipped   tf.errors.OpError: ... Checksum does not match ...
#     data file missing                        tf.errors.OpError: ...data-00000-of-00001; No such
#                                              file or directory
#     .index missing                           tf.errors.NotFoundError: Unsuccessful
#                                              TensorSliceReader constructor: Failed to find ...
#     .index truncated, zero-filled, flipped   tf.errors.OpError: not an sstable (bad magic number)
#       near its end (the sstable footer)
#     .index with a bit flipped mid-file       tf.errors.OpError: Unable to read file (...index)
#     bytes appended to the data file          nothing (every tensor is intact)
#
# The state file: missing, or text that is not a CheckpointState, makes tf.train.latest_checkpoint
# return None (as if the run had no checkpoint); binary garbage raises UnicodeDecodeError; an empty
# file raises ValueError; a latest checkpoint whose files are gone gives None. So the list of
# checkpoints is rebuilt from the files present whenever the state file cannot be trusted.

CHECKPOINT_STATE_FILE = 'checkpoint'
CHECKPOINT_NAME = 'ckpt'
DAMAGED_DIR = 'damaged'
_CHECKPOINT_FILE = re.compile(re.escape(CHECKPOINT_NAME) +
                              r'-(\d+)(\.index|\.data-\d+-of-\d+)$')
_CHECKPOINT_PREFIX = re.compile(re.escape(CHECKPOINT_NAME) + r'-(\d+)$')

# Known failure messages of CheckpointReader, in words.
_DAMAGE_WORDS = (
    ('Read less bytes than requested', 'its data file is truncated'),
    ('Checksum does not match', 'a checksum does not match: its bytes changed after the save'),
    ('bad magic number', 'its .index file is not a checkpoint index (bad magic number)'),
    ('Unable to read file', 'its .index file is unreadable'),
    ('No such file or directory', 'a data file is missing'),
)


def checkpoint_step(path):
  """The step N of a checkpoint prefix .../ckpt-N (None for another name)."""
  match = _CHECKPOINT_PREFIX.match(os.path.basename(path))
  return None if match is None else int(match.group(1))


def checkpoint_files(prefix):
  """The files of the checkpoint `prefix` that exist: its .index and data shards."""
  return sorted(glob.glob(glob.escape(prefix) + '.index') +
                glob.glob(glob.escape(prefix) + '.data-*-of-*'))


def checkpoint_damage(prefix):
  """Why the checkpoint `prefix` cannot be restored, in words; None when it is intact.

  Reads every tensor (TensorFlow checks each one's CRC32C as it reads it), so a truncated,
  zero-filled or bit-flipped data file or .index is found, as is a missing file. Costs one read of
  the checkpoint (a few MB for our models).
  """
  has_index = os.path.isfile(prefix + '.index')
  has_data = bool(glob.glob(glob.escape(prefix) + '.data-*-of-*'))
  if not has_index:
    return 'its .index file is missing' if has_data else 'its files are missing'
  if not has_data:
    return 'its data file is missing'
  try:
    reader = tf.train.load_checkpoint(prefix)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  except (tf.errors.OpError, IndexError, ValueError, OSError) as error:
    message = ' '.join(str(error).split()).replace(os.path.dirname(prefix) + os.sep, '')
    known = [words for text, words in _DAMAGE_WORDS if text in message]
    if known:
      return known[0]
    return f'{type(error).__name__}: {message[:117] + "..." if len(message) > 120 else message}'
  return None


def _read_checkpoint_state(model_dir):
  """(state proto or None, why it cannot be used or None). Never raises for a bad file."""
  path = os.path.join(model_dir, CHECKPOINT_STATE_FILE)
  if not os.path.exists(path):
    return None, f'{path} is missing'
  try:
    with _quiet_tensorflow_logger():
      state = tf.train.get_checkpoint_state(model_dir)
  except (ValueError, UnicodeDecodeError, OSError, tf.errors.OpError) as error:
    return None, f'{path} is damaged ({type(error).__name__})'
  if state is None or not state.model_checkpoint_path:
    return None, f'{path} is damaged (not a checkpoint list)'
  return state, None


@contextlib.contextmanager
def _quiet_tensorflow_logger():
  """Silences TensorFlow's Python logger (its "Checkpoint ignored" warnings) for a block."""
  logger = tf.get_logger()
  level = logger.level
  logger.setLevel('ERROR')
  try:
    yield
  finally:
    logger.setLevel(level)


class CheckpointList:
  """The checkpoints of a run directory, newest first, as far as they can be known.

  Only checkpoints with at least one file present (ckpt-N.index or a data file) are listed. With a
  usable `checkpoint` state file: those up to its latest one (a newer ckpt-N without a state entry
  is a save that did not finish, and the next save of step N overwrites it). Without one (missing,
  damaged, or naming a latest checkpoint whose files are gone): every one.

  Attributes:
    paths: checkpoint prefixes <model_dir>/ckpt-N, newest (largest N) first.
    timestamps: {prefix: unix time the CheckpointManager recorded}, where the state file has it.
    state_problem: why the state file was not used (None when it was).
  """

  def __init__(self, model_dir):
    self.model_dir = model_dir
    present = {}
    names = os.listdir(model_dir) if os.path.isdir(model_dir) else []
    for name in names:
      match = _CHECKPOINT_FILE.match(name)
      if match:
        step = int(match.group(1))
        present[step] = os.path.join(model_dir, f'{CHECKPOINT_NAME}-{step}')
    state, self.state_problem = _read_checkpoint_state(model_dir)
    self.timestamps = {}
    newest = max(present, default=0)
    if state is not None:
      paths = list(state.all_model_checkpoint_paths)
      times = list(state.all_model_checkpoint_timestamps)
      if len(times) == len(paths):
        for path, written in zip(paths, times):
          step = checkpoint_step(path)
          if step is not None:
            self.timestamps[os.path.join(model_dir, f'{CHECKPOINT_NAME}-{step}')] = float(written)
      latest = checkpoint_step(state.model_checkpoint_path)
      state_path = os.path.join(model_dir, CHECKPOINT_STATE_FILE)
      if latest is None:
        self.state_problem = (f'{state_path} names {state.model_checkpoint_path}, not a '
                              f'{CHECKPOINT_NAME}-N')
      elif latest not in present:
        self.state_problem = f'{state_path} names {CHECKPOINT_NAME}-{latest}, whose files are gone'
      else:
        newest = latest
    self.paths = [present[step] for step in sorted(present, reverse=True) if step <= newest]

  def timestamp(self, path):
    """When `path` was written: the state file's record, else its .index file's mtime."""
    if path in self.timestamps:
      return self.timestamps[path]
    index = path + '.index'
    return os.path.getmtime(index) if os.path.exists(index) else None


def newest_intact_checkpoint(model_dir):
  """(newest intact checkpoint or None, [(damaged newer checkpoint, why)], CheckpointList).

  Checks the checkpoints newest first and stops at the first intact one. Read-only.
  """
  checkpoints = CheckpointList(model_dir)
  damaged = []
  for path in checkpoints.paths:
    damage = checkpoint_damage(path)
    if damage is None:
      return path, damaged, checkpoints
    damaged.append((path, damage))
  return None, damaged, checkpoints


def _describe_damaged(damaged):
  """'Checkpoint <path> is damaged (why)' or 'Checkpoints <a> (why), <b> (why) are damaged'."""
  if len(damaged) == 1:
    return f'Checkpoint {damaged[0][0]} is damaged ({damaged[0][1]})'
  listed = ', '.join(f'{path} ({damage})' for path, damage in damaged)
  return f'Checkpoints {listed} are damaged'


def latest_checkpoint(model_dir, choose_hint=None):
  """The newest intact checkpoint prefix in `model_dir`, for readers (eval, sample, export...).

  Never changes the directory. Damaged newer checkpoints and an unusable `checkpoint` state file
  are reported in one warning line each.

  Args:
    model_dir: the run directory.
    choose_hint: how the user can choose another checkpoint, for the warning (default: the
      --checkpoint flag).

  Raises:
    CheckpointNotFoundError: the directory holds no checkpoint.
    DamagedCheckpointError: every checkpoint is damaged.
  """
  if not os.path.isdir(model_dir):
    raise CheckpointNotFoundError(f'No such run directory: {model_dir}')
  path, damaged, checkpoints = newest_intact_checkpoint(model_dir)
  if not checkpoints.paths:
    raise CheckpointNotFoundError(
        f'No checkpoint in {model_dir}: train first (bin/train --model_dir={model_dir} ...) or '
        'pass the --model_dir of a run that has written a checkpoint.')
  if path is None:
    raise DamagedCheckpointError(
        f'No intact checkpoint in {model_dir}: {_describe_damaged(damaged)}. Nothing was changed; '
        'restore the checkpoints from a copy.')
  if checkpoints.state_problem:
    logging.warning('%s; found the checkpoints from their files.', checkpoints.state_problem)
  if damaged:
    hint = choose_hint or (f'choose another with --checkpoint={model_dir}/{CHECKPOINT_NAME}-N '
                           'or --checkpoint=N')
    logging.warning('%s; using %s instead (the newest intact one; %s).',
                    _describe_damaged(damaged), path, hint)
  return path


def resolve_checkpoint(model_dir, checkpoint=None):
  """The checkpoint a reader should restore: `checkpoint` if given (checked), else the newest
  intact one (`latest_checkpoint`).

  Args:
    model_dir: the run directory.
    checkpoint: None, a step N (int or digits: <model_dir>/ckpt-N), or a checkpoint prefix such
      as <model_dir>/ckpt-2000 (a trailing .index is dropped).

  Raises:
    CheckpointNotFoundError, DamagedCheckpointError (one line naming the intact ones).
  """
  if checkpoint is None or checkpoint == '':
    return latest_checkpoint(model_dir)
  text = str(checkpoint)
  if text.isdigit():
    path = os.path.join(model_dir, f'{CHECKPOINT_NAME}-{int(text)}')
  else:
    path = text[:-len('.index')] if text.endswith('.index') else text
  if not checkpoint_files(path):
    raise CheckpointNotFoundError(
        f'No checkpoint {path} (no {os.path.basename(path)}.index or data file); '
        f'{_checkpoints_of(model_dir)}')
  damage = checkpoint_damage(path)
  if damage:
    raise DamagedCheckpointError(f'Checkpoint {path} is damaged ({damage}); '
                                 f'{_checkpoints_of(model_dir)}')
  return path


def _checkpoints_of(model_dir):
  """'the intact checkpoints of <dir> are at steps 1, 2.' for error messages."""
  if not os.path.isdir(model_dir):
    return f'no run directory {model_dir}.'
  intact = [path for path in CheckpointList(model_dir).paths if checkpoint_damage(path) is None]
  steps = ', '.join(str(checkpoint_step(path)) for path in reversed(intact))
  return (f'the intact checkpoints of {model_dir} are at steps {steps}.' if intact else
          f'{model_dir} has no intact checkpoint.')


def _write_checkpoint_state(model_dir, paths, timestamps):
  """Rewrites <model_dir>/checkpoint (atomically) to list `paths`, oldest first, the last latest.

  The CheckpointManager's text format: relative names, the times it records for each checkpoint.
  """
  lines = [f'model_checkpoint_path: {json.dumps(os.path.basename(paths[-1]))}']
  lines += [f'all_model_checkpoint_paths: {json.dumps(os.path.basename(path))}'
            for path in paths]
  lines += [f'all_model_checkpoint_timestamps: {timestamps[path]!r}' for path in paths]
  # The manager deletes (beyond max_to_keep) only checkpoints newer than this: all of them.
  lines.append(f'last_preserved_timestamp: {min(timestamps.values()) - 1.0!r}')
  files.atomic_write_text(os.path.join(model_dir, CHECKPOINT_STATE_FILE), '\n'.join(lines) + '\n')


def _move_aside(model_dir, prefix):
  """Moves the files of checkpoint `prefix` into <model_dir>/damaged/ (never overwriting)."""
  target_dir = os.path.join(model_dir, DAMAGED_DIR)
  files = checkpoint_files(prefix)
  if not files:
    return None
  os.makedirs(target_dir, exist_ok=True)
  base = os.path.basename(prefix)
  new_base, copy = base, 0
  while any(os.path.exists(os.path.join(target_dir, new_base + path[len(prefix):]))
            for path in files):
    copy += 1
    new_base = f'{base}.{copy}'  # An earlier damaged copy of the same step is kept too.
  for path in files:
    os.replace(path, os.path.join(target_dir, new_base + path[len(prefix):]))
  return os.path.join(target_dir, new_base)


def damaged_files(model_dir):
  """The files in <model_dir>/damaged/ (checkpoints moved aside by `prepare_resume`)."""
  directory = os.path.join(model_dir, DAMAGED_DIR)
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def has_checkpoints(model_dir):
  """Whether model_dir holds any checkpoint (intact or not) or a checkpoint moved aside."""
  return bool(CheckpointList(model_dir).paths or damaged_files(model_dir))


def prepare_resume(model_dir):
  """The checkpoint `train` resumes from, after moving damaged ones aside; None for a fresh run.

  Checks the checkpoints newest first. A damaged one (see `checkpoint_damage`) has its files moved
  to <model_dir>/damaged/ (never deleted) with one warning line, and the next older one is
  checked. When the `checkpoint` state file is unusable or something was moved, it is rewritten to
  list the checkpoints left, so that the CheckpointManager keeps and deletes the right ones.

  Raises:
    DamagedCheckpointError: the directory held checkpoints (or <model_dir>/damaged/ does) but none
      is intact. Starting afresh would silently throw away the run (and its config check), so the
      user must decide: the message says what was moved where and how to start afresh.
  """
  path, damaged, checkpoints = newest_intact_checkpoint(model_dir)
  moved = []
  for prefix, damage in damaged:
    target = _move_aside(model_dir, prefix)
    moved.append(prefix)
    if path is not None:
      logging.warning('Checkpoint %s is damaged (%s): moved its files to %s; resuming from %s.',
                      prefix, damage, target, path)
  damaged_dir = os.path.join(model_dir, DAMAGED_DIR)
  if path is None:
    if moved:
      raise DamagedCheckpointError(
          f'No intact checkpoint in {model_dir}: {_describe_damaged(damaged)}; moved the files to '
          f'{damaged_dir}/ (nothing was deleted). To start this run afresh, move {damaged_dir} '
          'elsewhere and rerun; or use a new --model_dir.')
    if damaged_files(model_dir):
      raise DamagedCheckpointError(
          f'No checkpoint in {model_dir}, but {damaged_dir}/ holds damaged checkpoints moved '
          f'there by an earlier bin/train. To start this run afresh, move {damaged_dir} elsewhere '
          'and rerun; or use a new --model_dir.')
    return None
  if checkpoints.state_problem or moved:
    if checkpoints.state_problem:
      logging.warning('%s; rebuilt it from the checkpoint files present.',
                      checkpoints.state_problem)
    kept = [prefix for prefix in reversed(checkpoints.paths)
            if prefix not in moved and os.path.isfile(prefix + '.index')]
    _write_checkpoint_state(model_dir, kept,
                            {prefix: checkpoints.timestamp(prefix) or time.time()
                             for prefix in kept})
  return path


def config_bindings(config):
  """{binding name: value text} of a gin config string as written by `gin.config_str()`.

  A binding starts on an unindented line `name = value`; indented lines continue its value;
  comments, blank lines and `import`/`include` lines are ignored.
  """
  bindings = {}
  name = None
  for line in config.splitlines():
    stripped = line.strip()
    if not stripped or stripped.startswith('#'):
      continue
    if not line[0].isspace() and ' = ' in line and not line.startswith(('import ', 'include ')):
      name, value = line.split(' = ', 1)
      name = name.strip()
      bindings[name] = value.strip()
    elif name is not None and line[0].isspace():
      bindings[name] += ' ' + stripped
  return bindings


def config_differences(old_config, new_config):
  """Bindings that differ between two configs, except RESUMABLE_BINDINGS and RESUMABLE_MACROS.

  Returns:
    A sorted list of 'name: old -> new' strings ('<unset>' for a missing binding).
  """
  old, new = config_bindings(old_config), config_bindings(new_config)
  ignored = RESUMABLE_BINDINGS | RESUMABLE_MACROS
  differences = []
  for name in sorted(set(old) | set(new)):
    if name in ignored or old.get(name) == new.get(name):
      continue
    differences.append(f'{name}: {old.get(name, "<unset>")} -> {new.get(name, "<unset>")}')
  return differences


def check_resumable(model_dir, new_config):
  """Raises IncompatibleRunError when model_dir has checkpoints of a run with other bindings."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.isfile(path) or not has_checkpoints(model_dir):
    return
  old_config = read_run_config(
      path, f'it records the config of the checkpoints in {model_dir}: restore it from a copy, '
      'or move it aside to resume without checking the config.')
  differences = config_differences(old_config, new_config)
  if differences:
    shown = '; '.join(differences[:5]) + ('; ...' if len(differences) > 5 else '')
    raise IncompatibleRunError(
        f'{model_dir} holds checkpoints of a run with a different config ({len(differences)} '
        f'binding(s) differ: {shown}): use a new --model_dir, or the gin files and bindings of '
        f'{path}.')


def prepare_model_dir(model_dir):
  """Creates model_dir if needed and checks that it is a writable directory (else RunError)."""
  try:
    os.makedirs(model_dir, exist_ok=True)
  except OSError as error:
    raise RunError(f'Cannot create --model_dir {model_dir}: {error.strerror or error}; choose a '
                   'directory you can write to.') from None
  if not os.path.isdir(model_dir):
    raise RunError(f'--model_dir {model_dir} is not a directory.')
  if not os.access(model_dir, os.W_OK | os.X_OK):
    raise RunError(f'--model_dir {model_dir} is not writable; choose a directory you can write '
                   'to or fix its permissions.')


def remove_partial_checkpoints(model_dir):
  """Deletes what a save killed midway leaves behind: ckpt-N_temp* directories.

  TensorFlow writes a checkpoint's shards to <prefix>_temp*/ before merging them into
  <prefix>.index / <prefix>.data-*, and the CheckpointManager updates the `checkpoint` state file
  (atomically) only after that, so a kill mid-save leaves the previous checkpoint as the latest;
  the partial files of the interrupted one are overwritten by the next save of the same step.
  """
  for path in glob.glob(os.path.join(glob.escape(model_dir), 'ckpt-*_temp*')):
    logging.info('Removing %s, left by an interrupted checkpoint save.', path)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)


class StopRequests:
  """Turns SIGTERM and SIGINT into a flag that the train loop checks between chunks of steps.

  Python runs a handler only between bytecodes of the main thread, never inside a running
  `tf.function`: the loop keeps each call to about `progress.CHUNK_SECONDS` for that reason.

  Installed only in the main thread (Python delivers signals there), and only while training.
  A second signal while the first is being handled raises KeyboardInterrupt (stop now).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:
      raise KeyboardInterrupt(f'second {signal.Signals(signum).name}: stopping without saving')
    self.signum = signum
    logging.warning('Received %s: saving a checkpoint after the running steps, then stopping.',
                    signal.Signals(signum).name)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}


def restore_averaged_model(model_dir, checkpoint_path=None):
  """Builds the model from the parsed gin config and restores the Polyak-averaged weights.

  Call under the strategy scope that should own the variables (or under none). Without
  `checkpoint_path`, restores the newest intact checkpoint (`latest_checkpoint`); a given one is
  restored as it is (check it with `resolve_checkpoint`).

  Returns:
    (model, step, checkpoint_path).
  """
  checkpoint_path = checkpoint_path or latest_checkpoint(model_dir)
  model = make_model()
  create_variables(model)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
  status = tf.train.Checkpoint(step=step, averaged_model=model).restore(checkpoint_path)
  status.expect_partial()
  status.assert_existing_objects_matched()
  return model, int(step.numpy()), checkpoint_path


def _is_chief(strategy):
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type == 'chief':
    return True
  return (task_type == 'worker' and task_id == 0 and
          'chief' not in resolver.cluster_spec().as_dict())


def _config_markdown(config):
  """A gin config as TensorBoard markdown: comments as text, bindings as code blocks."""
  lines = []
  for line in config.splitlines():
    if line.startswith('#'):
      lines.append(line.lstrip('# '))
    else:
      lines.append('    ' + line)
  return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# The outer loop.


@gin.configurable(denylist=['model_dir', 'data_dir', 'strategy'])
def train(model_dir,
          data_dir=None,
          dataset=gin.REQUIRED,
          batch_size=128,
          train_steps=100_000,
          learning_rate=2e-3,
          ema_decay=0.998,
          ema_warmup=True,
          free_bits_lambda=0.01,
          soft_free_bits=False,
          checkpoint_every=1000,
          summary_every=100,
          eval_every=5000,
          eval_examples=1000,
          eval_batch_size=None,
          num_summary_images=16,
          train_split='train',
          eval_split='valid',
          shuffle_buffer=None,
          max_checkpoints_to_keep=3,
          seed=0,
          deterministic=False,
          max_consecutive_bad_steps=10,
          strategy=None):
  """Trains a VLAE in `model_dir`, resuming from its newest intact checkpoint if there is one.

  Args:
    model_dir: the run directory (created if needed).
    data_dir: where `datasets.load` finds raw data.
    dataset: the dataset name for `datasets.load`.
    batch_size: the global batch, a multiple of the number of replicas (paper: 128).
    train_steps: the total number of steps (a resumed run stops here too).
    learning_rate: Adamax learning rate (paper: 0.002).
    ema_decay: Polyak averaging decay (paper: 0.998).
    ema_warmup: use min(ema_decay, (1 + n) / (10 + n)) after n updates (tf.train's
      ExponentialMovingAverage with num_updates); without it, 0.998 keeps 67% of the random
      initial weights in the averages after 200 steps. Not in the paper; False for a plain EMA.
    free_bits_lambda: free bits, nats per data dimension, on the batch-mean KL (paper: 0.01).
    soft_free_bits: use soft free bits (the paper's CIFAR-10 runs) with the target
      free_bits_lambda * D instead of free bits; configure `SoftFreeBits` in gin.
    checkpoint_every: steps between checkpoints (one is also written at the end).
    summary_every: steps between scalar and image summaries (images: at most
      `summaries.IMAGE_BUDGET` of the wall time) and progress lines (which also come at least
      every `progress.PROGRESS_SECONDS`).
    eval_every: steps between validation ELBOs (averaged weights); 0: only at the end.
    eval_examples: validation images (a strided subset of `eval_split`); None: all; 0: no
      validation (image summaries then reconstruct training images).
    eval_batch_size: validation batch (default: `batch_size`).
    num_summary_images: samples in image summaries (and a quarter of it reconstructed, 3 times
      each); 0 disables them.
    train_split: the split to train on.
    eval_split: the split to validate on.
    shuffle_buffer: shuffle buffer (default: the whole training set).
    max_checkpoints_to_keep: checkpoints kept by the CheckpointManager.
    seed: the seed of every random draw (data order, model noise).
    deterministic: call `tf.config.experimental.enable_op_determinism()` (process-wide): with the
      same seed, two runs on the same CPU hardware give the same losses step for step, and a
      killed and resumed run reaches the uninterrupted run's weights. Slower on GPUs; see
      docs/reliability.md.
    max_consecutive_bad_steps: a step with a non-finite loss or gradient is skipped (and counted
      in the `bad_steps` summary); after this many in a row, training stops with NonFiniteError
      (None: never).
    strategy: a `tf.distribute.Strategy` (default: `make_strategy()`).

  Returns:
    The last validation metrics (means over the validation images, nats).

  Raises:
    TrainingInterrupted: SIGTERM or SIGINT arrived; a checkpoint of the last step was saved.
    NonFiniteError: max_consecutive_bad_steps skipped steps in a row (no checkpoint is written
      after a skipped step, so the latest one holds the last good state).
    IncompatibleRunError: model_dir has checkpoints of a run with different bindings.
    DamagedConfigError: model_dir has checkpoints and a damaged config.gin.
    DamagedCheckpointError: model_dir has checkpoints, but none is intact (the damaged ones are
      moved to <model_dir>/damaged/; see `prepare_resume`).
    RunError: model_dir cannot be created or written.
  """
  began = time.time()
  # First, before any op runs: MultiWorkerMirroredStrategy configures the collective ops, which is
  # only possible at program start-up.
  strategy = strategy or make_strategy()
  if deterministic:
    tf.config.experimental.enable_op_determinism()
  # The initializers of the weights draw from the global generators: seed them too, so that a
  # fresh run is a function of `seed` (Python, NumPy and TensorFlow global seeds). Never 0: with a
  # global seed of 0, tf.data's shuffle cannot take the tensor seeds of `training_batches`.
  keras.utils.set_random_seed(int(stateless_seed(seed, INIT_SALT)[0]) % (2**31 - 1) + 1)
  chief = _is_chief(strategy)
  num_replicas = strategy.num_replicas_in_sync
  if batch_size % num_replicas:
    raise ValueError(f'batch_size {batch_size} is not a multiple of {num_replicas} replicas.')
  eval_batch_size = eval_batch_size or batch_size
  eval_batch_size = -(-eval_batch_size // num_replicas) * num_replicas
  prepare_model_dir(model_dir)
  if chief:
    check_resumable(model_dir, gin.config_str())
    remove_partial_checkpoints(model_dir)
    # Damaged checkpoints are moved aside and the state file made consistent before the
    # CheckpointManager reads it.
    latest = prepare_resume(model_dir)
    files.atomic_write_text(os.path.join(model_dir, CONFIG_FILE), gin.config_str())
    if latest is None:  # A fresh run: its clock starts now.
      files.atomic_write_text(os.path.join(model_dir, STARTED_FILE),
                        json.dumps({'unix_time': began}) + '\n')
  else:
    latest, _, _ = newest_intact_checkpoint(model_dir)

  train_images = datasets.load(dataset, train_split, data_dir=data_dir, seed=seed)
  eval_images = None
  if eval_examples != 0:  # No validation: the validation split is not even read.
    eval_images = strided_subset(
        datasets.load(dataset, eval_split, data_dir=data_dir, seed=seed), eval_examples)

  with strategy.scope():
    model = make_model()
    averaged_model = make_model()
    optimizer = keras.optimizers.Adamax(learning_rate=learning_rate)
    soft = (objectives.SoftFreeBits(model.num_dims, lambda_per_dim=free_bits_lambda)
            if soft_free_bits else None)
  trainer = Trainer(strategy, model, averaged_model, optimizer, global_batch_size=batch_size,
                    free_bits_lambda=free_bits_lambda, ema_decay=ema_decay, seed=seed,
                    soft_free_bits=soft, ema_warmup=ema_warmup)
  checkpoint = trainer.checkpoint()
  checkpoint_dir = model_dir if chief else os.path.join(
      model_dir, 'worker_tmp', f'{strategy.cluster_resolver.task_type}_'
      f'{strategy.cluster_resolver.task_id}')
  manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir,
                                       max_to_keep=max_checkpoints_to_keep,
                                       step_counter=trainer.step)
  with strategy.scope():
    if latest:
      create_variables(model)
      create_variables(averaged_model)
      trainer.build()
      checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info('Resumed from %s at step %d.', latest, int(trainer.step.numpy()))
    else:
      first_batch = next(iter(training_batches(train_images, batch_size, seed, 0,
                                               shuffle_buffer)))
      model.initialize(first_batch)
      create_variables(averaged_model)
      trainer.build()
      trainer.ema.copy()
      logging.info('Initialized %s from a batch of %d images.', type(model).__name__,
                   batch_size)
  start_step = int(trainer.step.numpy())
  iterator = iter(training_batches(train_images, batch_size, seed, start_step, shuffle_buffer))

  if chief:
    writers = {name: tf.summary.create_file_writer(os.path.join(model_dir, name))
               for name in ('train', 'validation')}
    summaries.write_hparams(
        tf.summary.create_file_writer(model_dir),
        summaries.run_hparams(model, dataset=dataset, learning_rate=learning_rate,
                              batch_size=batch_size, free_bits_lambda=free_bits_lambda,
                              soft_free_bits=bool(soft_free_bits), ema_decay=ema_decay,
                              train_steps=train_steps, seed=seed),
        start_time=run_start_time(model_dir))
  else:
    writers = {name: tf.summary.create_noop_writer() for name in ('train', 'validation')}

  validator = DistributedEvaluator(
      strategy, lambda images, seed_: averaged_model.elbo(images, seed_, training=False),
      seed=seed, salt=VALIDATION_SALT)
  num_eval_images = 0 if eval_images is None else cardinality(eval_images)
  images = None
  if chief and num_summary_images:
    # Reconstructions of validation images, or of training images when there is no validation.
    images = summaries.ImageSummaries(
        averaged_model, train_images if eval_images is None else eval_images,
        num_summary_images, seed=int(stateless_seed(seed, SUMMARY_SALT)[0]))
    image_writer = writers['train' if eval_images is None else 'validation']
  num_dims = model.num_dims
  # Every worker of a multi-worker strategy must run the same steps and passes (collective ops):
  # they agree on each chunk's length and on stopping (`_agree_across_workers`), and a signal
  # abandons no validation pass midway.
  multi_worker = _num_workers(strategy) > 1

  def validate(step, stop):
    """A validation pass over `eval_images`; None when a signal abandoned it."""
    name = 'final validation' if step >= train_steps else 'validation'
    logging.info('%s at step %d: %d images of %s.', name.capitalize(), step, num_eval_images,
                 eval_split)
    began = time.time()
    deadline = progress.Deadline()

    def report(count):
      if stop.signum is not None and not multi_worker:
        raise _PassAbandoned()
      if count < num_eval_images and deadline.due():
        deadline.reset()
        rate = count / max(time.time() - began, 1e-9)
        logging.info('%s at step %d: %d/%d images, %.1f images/s, ETA %s', name, step, count,
                     num_eval_images, rate,
                     progress.format_duration((num_eval_images - count) / rate))

    try:
      totals = validator(padded_batches(eval_images, eval_batch_size), report)
    except _PassAbandoned:
      logging.warning('%s at step %d abandoned after %.1f s: stopping.', name.capitalize(), step,
                      time.time() - began)
      return None
    means, _ = means_from_sums(totals)
    means['nll_bound'] = -means['elbo']
    with writers['validation'].as_default(step=step):
      summaries.write_elbo_scalars(means, num_dims)
    writers['validation'].flush()
    logging.info('validation step %d: elbo %.3f nats (%.4f bits/dim bound), kl %.3f nats, '
                 'log p(x|z) %.3f nats, %d images in %.1f s', step, means['elbo'],
                 objectives.bits_per_dim(-means['elbo'], num_dims), means['kl'],
                 means['log_px_z'], int(totals['count']), time.time() - began)
    return means

  def compile_passes(step, stop):
    """Traces the validation step and the image summaries now, not in the middle of the loop."""
    if eval_images is not None or images is not None:
      logging.info('Compiling the %s (once per process).', ' and the '.join(
          name for name, used in (('validation step', eval_images is not None),
                                  ('image summaries', images is not None)) if used))
    if eval_images is not None and (multi_worker or stop.signum is None):
      began = time.time()
      validator(padded_batches(eval_images, eval_batch_size).take(1))
      logging.info('Compiled the validation step in %.1f s.', time.time() - began)
    if images is not None and stop.signum is None:
      with image_writer.as_default(step=step):
        seconds = images.write()
      logging.info('Wrote the first image summaries in %.1f s (tracing included).', seconds)

  step = start_step
  last_checkpoint = start_step if latest else None
  validation = {}
  completed = False  # The steps, the final checkpoint and the final validation are done.
  pacer = progress.ChunkPacer()
  eta = progress.EtaClock(train_steps)
  since_summary = progress.RunningMeans(METRIC_KEYS)
  since_line = progress.RunningMeans(METRIC_KEYS)
  line_deadline = progress.Deadline()
  signum = None  # The signal that stops the run (with several workers: the one any got).
  with StopRequests() as stop:
    while step < train_steps:
      first_chunk = step == start_step
      # Run to the next boundary or for about progress.CHUNK_SECONDS, whichever comes first; the
      # first chunk of a process is one step, after which the operative config is complete.
      boundaries = [train_steps]
      for every in (summary_every, checkpoint_every, eval_every):
        if every:
          boundaries.append((step // every + 1) * every)
      num_steps = 1 if first_chunk else pacer.next_chunk(min(boundaries) - step)
      if multi_worker:
        num_steps, any_stop = _agree_across_workers(strategy, num_steps, stop.signum is not None)
        if any_stop:
          signum = stop.signum or signal.SIGTERM
          break
      elif stop.signum is not None:
        signum = stop.signum
        break
      began = time.time()
      metrics = trainer.train_loop(iterator, num_steps, max_consecutive_bad_steps)
      seconds = time.time() - began
      num_steps = int(trainer.step.numpy()) - step  # Fewer when stopped by bad steps.
      step += num_steps
      consecutive_bad = int(trainer.consecutive_bad_steps.numpy())
      if metrics['bad_steps']:
        logging.warning('Skipped %d step(s) with a non-finite loss or gradient up to step %d '
                        '(%d in a row).', int(metrics['bad_steps']), step, consecutive_bad)
      since_summary.add(metrics, num_steps, seconds, timed=not first_chunk)
      since_line.add(metrics, num_steps, seconds, timed=not first_chunk)
      if not first_chunk:
        pacer.record(num_steps, seconds)
      too_many_bad = (max_consecutive_bad_steps is not None and
                      consecutive_bad >= max_consecutive_bad_steps)
      at_summary = step % summary_every == 0 or step == train_steps or too_many_bad

      if first_chunk:
        if chief:
          operative = gin.operative_config_str()
          files.atomic_write_text(os.path.join(model_dir, OPERATIVE_CONFIG_FILE), operative)
          with writers['train'].as_default(step=step):
            tf.summary.text('gin/operative_config', _config_markdown(operative))
            tf.summary.text('gin/config', _config_markdown(gin.config_str()))
        means = since_line.means()
        logging.info('step %d/%d  loss %.3f  elbo %.3f  kl %.3f  |grad| %.3g  first step in '
                     '%.1f s (tracing and compilation)', step, train_steps, means['loss'],
                     means['elbo'], means['kl'], means['gradient_norm'], seconds)
        since_line.reset()
        compile_passes(step, stop)
        eta.start(step)
        line_deadline.reset()

      if at_summary or first_chunk:
        means = since_summary.means()
        steps_per_second = since_summary.steps_per_second()
        with writers['train'].as_default(step=step):
          summaries.write_elbo_scalars(means, num_dims)
          tf.summary.scalar('loss', means['loss'])
          tf.summary.scalar('learning_rate', trainer.learning_rate())
          tf.summary.scalar('gradient_norm', means['gradient_norm'])
          tf.summary.scalar('kl_weight', means['kl_weight'])
          tf.summary.scalar('bad_steps', since_summary.bad_steps)
          if steps_per_second is not None:  # Not for the first chunk alone: it traces.
            tf.summary.scalar('steps_per_second', steps_per_second)
            tf.summary.scalar('examples_per_second', steps_per_second * batch_size)
        since_summary.reset()
        writers['train'].flush()
      if not first_chunk and (at_summary or line_deadline.due(pacer.expected_seconds())):
        means = since_line.means()
        steps_per_second = since_line.steps_per_second() or float('nan')
        logging.info(
            'step %d/%d  loss %.3f  elbo %.3f  kl %.3f  |grad| %.3g  %.2f steps/s  '
            '%.0f examples/s  ETA %s', step, train_steps, means['loss'], means['elbo'],
            means['kl'], means['gradient_norm'], steps_per_second, steps_per_second * batch_size,
            progress.format_duration(eta.remaining_seconds(step)))
        since_line.reset()
        line_deadline.reset()
      if too_many_bad:
        for writer in writers.values():
          writer.flush()
        last = tf.train.latest_checkpoint(model_dir)
        raise NonFiniteError(
            f'training stopped at step {step}: {consecutive_bad} consecutive steps had a '
            f'non-finite loss or gradient (train.max_consecutive_bad_steps = '
            f'{max_consecutive_bad_steps}); the last good checkpoint is {last}; lower '
            f'train.learning_rate or check the data, then rerun to resume from it.')
      if (images is not None and not first_chunk and stop.signum is None and
          (step % summary_every == 0 or step == train_steps) and
          (images.due() or step == train_steps)):
        with image_writer.as_default(step=step):
          images.write()
        image_writer.flush()
      # No checkpoint right after a skipped step: the latest one stays the last good state.
      if (step % checkpoint_every == 0 or step == train_steps) and not consecutive_bad:
        manager.save(checkpoint_number=step)
        last_checkpoint = step
        if step == train_steps:
          logging.info('Final checkpoint: %s.', manager.latest_checkpoint)
      if (eval_examples != 0 and (multi_worker or stop.signum is None) and
          ((eval_every and step % eval_every == 0) or step == train_steps)):
        validation = validate(step, stop)
        if validation is None:  # Abandoned: the signal stops the loop.
          validation = {}

    if signum is None and (multi_worker or stop.signum is None):  # The final passes.
      if last_checkpoint != step:
        manager.save(checkpoint_number=step)
        last_checkpoint = step
        logging.info('Final checkpoint: %s.', manager.latest_checkpoint)
      if not validation and eval_examples != 0:
        validation = validate(step, stop) or {}
      completed = not (eval_examples != 0 and not validation)
    if not completed:
      signum = signum or stop.signum

  if signum is not None:
    if last_checkpoint != step:
      manager.save(checkpoint_number=step)
    raise TrainingInterrupted(signum, step, manager.latest_checkpoint)
  if not chief:
    tf.io.gfile.rmtree(checkpoint_dir)
  return validation


class _PassAbandoned(Exception):
  """A signal stopped a validation pass between two batches."""


def _num_workers(strategy):
  """The number of worker tasks (chief included) of a multi-worker strategy; 1 otherwise."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None:
    return 1
  cluster = resolver.cluster_spec().as_dict()
  return max(sum(len(cluster.get(job, ())) for job in ('chief', 'worker')), 1)


def _agree_across_workers(strategy, num_steps, stop):
  """(chunk length, stop) that every worker takes: the workers' mean length, and stop if any asks.

  Each worker times its own chunks and receives its own signals, but collective ops need every
  worker to run the same steps: one all-reduce of two numbers per chunk settles both.
  """
  local = tf.constant([float(num_steps), 1.0 if stop else 0.0])
  mean = strategy.reduce(
      tf.distribute.ReduceOp.MEAN,
      strategy.experimental_distribute_values_from_function(lambda _: local), axis=None).numpy()
  return max(int(mean[0]), 1), bool(mean[1] > 0.0)
