"""The outer loop: `train` (checkpoints, validation, summaries, progress, signals).

The split follows Orbit: the trainer (trainer.py, built by `trainer.make_trainer`) owns the inner
step, one `tf.function` that runs several steps on every replica without leaving the graph, and
`train()` owns the outer loop around it. A call of the inner loop runs to the next summary,
checkpoint or validation step, or for about `progress.CHUNK_SECONDS` of wall time, whichever comes
first (`progress.ChunkPacer`), so that progress lines come at least every
`progress.PROGRESS_SECONDS` and a signal is answered within seconds whatever the step time.

    run_directory.py   the files of model_dir, its config, resume checks, restoring a run
    checkpoints.py     which checkpoints exist, which are intact, moving damaged ones aside
    distribution.py    the strategy, replica splitting, distributed validation
    trainer.py         the replica step, the loss across replicas, Polyak averaging
    batching.py        the data order (a function of (seed, step)) and validation batches
    summaries.py       TensorBoard scalars, images, configs and the hparams dashboard

Randomness and data. Every random draw is stateless (seeds.py) and the data order is a function of
(seed, step) (`batching.training_batches`), so the RNG state and the data position are the step,
and a checkpoint holds step, model, averaged model and optimizer (and gamma with soft free bits);
no tf.data iterator is saved (that would serialize the in-memory dataset into every checkpoint). A
resumed run reproduces the uninterrupted run exactly when `datasets.load` is deterministic (the
static binarizations, CIFAR); a dynamically binarized training set restarts its sequence of
binarizations, which is statistically equivalent but not identical.

Faults (docs/reliability.md). A step whose loss or summed gradient is not finite is skipped and
counted in the `bad_steps` summary; `max_consecutive_bad_steps` in a row stop the run
(NonFiniteError). SIGTERM / SIGINT set a flag checked between chunks of steps (about 2 s each) and
between the batches of a validation pass, which is abandoned: a checkpoint is saved and
TrainingInterrupted raised. A kill mid-save leaves the previous checkpoint as the latest (the
CheckpointManager renames the state file into place after the checkpoint is complete). A restart
in a model_dir whose config.gin differs in more than bookkeeping is refused
(`run_directory.check_resumable`). A checkpoint damaged after its save is moved to damaged/ and the
run resumes from the newest intact one (`checkpoints.prepare_resume`).
"""

import inspect
import json
import os
import signal
import threading
import time

from absl import logging
import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf.data import batching
from vlae_tf.training import checkpoints
from vlae_tf.data import datasets
from vlae_tf.training import distribution
from vlae_tf import errors
from vlae_tf import files
from vlae_tf.models import objectives
from vlae_tf import progress
from vlae_tf.training import run_directory
from vlae_tf import seeds
from vlae_tf.training import summaries
from vlae_tf.training import trainer as trainer_lib

# The `train` arguments that `trainer.make_trainer` takes (its hyperparameters stay bound on
# `train` in gin; `trainer_settings` reads them for bin/benchmark).
TRAINER_SETTINGS = ('seed', 'learning_rate', 'ema_decay', 'ema_warmup', 'free_bits_lambda',
                    'soft_free_bits')


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


class _PassAbandoned(Exception):
  """A signal stopped a validation pass between two batches."""


class _Validation:
  """Validation passes of the averaged model over a strided subset of the validation split."""

  def __init__(self, strategy, averaged_model, images, batch_size, split, seed, writer,
               final_step, multi_worker):
    self.images = images
    self.count = 0 if images is None else batching.cardinality(images)
    self._batch_size = batch_size
    self._split = split
    self._writer = writer
    self._final_step = final_step
    self._multi_worker = multi_worker
    self._num_dims = averaged_model.num_dims
    self._evaluator = distribution.DistributedEvaluator(
        strategy, lambda x, seed_: averaged_model.elbo(x, seed_, training=False), seed=seed,
        salt=seeds.VALIDATION_SALT)

  def compile(self):
    """Traces the validation step on one batch (so that it is not traced mid-loop)."""
    began = time.time()
    self._evaluator(batching.padded_batches(self.images, self._batch_size).take(1))
    logging.info('Compiled the validation step in %.1f s.', time.time() - began)

  def __call__(self, step, stop):
    """A validation pass; None when a signal abandoned it (never with several workers)."""
    name = 'final validation' if step >= self._final_step else 'validation'
    logging.info('%s at step %d: %d images of %s.', name.capitalize(), step, self.count,
                 self._split)
    began = time.time()
    deadline = progress.Deadline()

    def report(count):
      if stop.signum is not None and not self._multi_worker:
        raise _PassAbandoned()
      if count < self.count and deadline.due():
        deadline.reset()
        rate = count / max(time.time() - began, 1e-9)
        logging.info('%s at step %d: %d/%d images, %.1f images/s, ETA %s', name, step, count,
                     self.count, rate, progress.format_duration((self.count - count) / rate))

    try:
      totals = self._evaluator(batching.padded_batches(self.images, self._batch_size), report)
    except _PassAbandoned:
      logging.warning('%s at step %d abandoned after %.1f s: stopping.', name.capitalize(), step,
                      time.time() - began)
      return None
    means, _ = distribution.means_from_sums(totals)
    means['nll_bound'] = -means['elbo']
    with self._writer.as_default(step=step):
      summaries.write_elbo_scalars(means, self._num_dims)
    self._writer.flush()
    logging.info('validation step %d: elbo %.3f nats (%.4f bits/dim bound), kl %.3f nats, '
                 'log p(x|z) %.3f nats, %d images in %.1f s', step, means['elbo'],
                 objectives.bits_per_dim(-means['elbo'], self._num_dims), means['kl'],
                 means['log_px_z'], int(totals['count']), time.time() - began)
    return means


def _prepare_run_directory(model_dir, chief, began):
  """Checks and readies model_dir; returns the checkpoint to resume from (None: a fresh run)."""
  run_directory.prepare_model_dir(model_dir)
  if not chief:
    latest, _, _ = checkpoints.newest_intact_checkpoint(model_dir)
    return latest
  run_directory.check_resumable(model_dir, gin.config_str())
  run_directory.remove_partial_checkpoints(model_dir)
  # Damaged checkpoints are moved aside and the state file made consistent before the
  # CheckpointManager reads it.
  latest = checkpoints.prepare_resume(model_dir)
  files.atomic_write_text(os.path.join(model_dir, run_directory.CONFIG_FILE), gin.config_str())
  if latest is None:  # A fresh run: its clock starts now.
    files.atomic_write_text(os.path.join(model_dir, run_directory.STARTED_FILE),
                            json.dumps({'unix_time': began}) + '\n')
  return latest


def train_settings():
  """{argument: value} of `train` as the parsed gin config binds it (macros resolved), else
  `train`'s default: what `train` would run with (bin/benchmark reads its settings here)."""
  bindings = gin.get_bindings('train', resolve_references=True)
  return {name: bindings.get(name, parameter.default)
          for name, parameter in inspect.signature(train).parameters.items()
          if parameter.default is not inspect.Parameter.empty}


def trainer_settings():
  """The `train_settings` that `train` passes on to `trainer.make_trainer` (TRAINER_SETTINGS)."""
  settings = train_settings()
  return {name: settings[name] for name in TRAINER_SETTINGS}


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
      free_bits_lambda * D instead of free bits; configure `SoftFreeBits` in gin (e.g.
      `SoftFreeBits.rate = 1.05`).
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
    strategy: a `tf.distribute.Strategy` (default: `distribution.make_strategy()`).

  Returns:
    The last validation metrics (means over the validation images, nats).

  Raises:
    TrainingInterrupted: SIGTERM or SIGINT arrived; a checkpoint of the last step was saved.
    NonFiniteError: max_consecutive_bad_steps skipped steps in a row (no checkpoint is written
      after a skipped step, so the latest one holds the last good state).
    IncompatibleRunError: model_dir has checkpoints of a run with different bindings.
    DamagedConfigError: model_dir has checkpoints and a damaged config.gin.
    DamagedCheckpointError: model_dir has checkpoints, but none is intact (the damaged ones are
      moved to <model_dir>/damaged/; see `checkpoints.prepare_resume`).
    RunError: model_dir cannot be created or written.
  """
  began = time.time()
  # First, before any op runs: MultiWorkerMirroredStrategy configures the collective ops, which is
  # only possible at program start-up.
  strategy = strategy or distribution.make_strategy()
  if deterministic:
    tf.config.experimental.enable_op_determinism()
  # The initializers of the weights draw from the global generators: seed them too, so that a
  # fresh run is a function of `seed` (Python, NumPy and TensorFlow global seeds). Never 0: with a
  # global seed of 0, tf.data's shuffle cannot take the tensor seeds of `training_batches`.
  keras.utils.set_random_seed(
      int(seeds.stateless_seed(seed, seeds.INIT_SALT)[0]) % (2**31 - 1) + 1)
  chief = distribution.is_chief(strategy)
  num_replicas = strategy.num_replicas_in_sync
  if batch_size % num_replicas:
    raise ValueError(f'batch_size {batch_size} is not a multiple of {num_replicas} replicas.')
  eval_batch_size = eval_batch_size or batch_size
  eval_batch_size = -(-eval_batch_size // num_replicas) * num_replicas
  latest = _prepare_run_directory(model_dir, chief, began)

  train_images = datasets.load(dataset, train_split, data_dir=data_dir, seed=seed)
  eval_images = None
  if eval_examples != 0:  # No validation: the validation split is not even read.
    eval_images = batching.strided_subset(
        datasets.load(dataset, eval_split, data_dir=data_dir, seed=seed), eval_examples)

  trainer = trainer_lib.make_trainer(
      strategy, global_batch_size=batch_size, seed=seed, learning_rate=learning_rate,
      ema_decay=ema_decay, ema_warmup=ema_warmup, free_bits_lambda=free_bits_lambda,
      soft_free_bits=soft_free_bits)
  model, averaged_model = trainer.model, trainer.averaged_model
  checkpoint_dir = model_dir if chief else os.path.join(
      model_dir, 'worker_tmp', f'{strategy.cluster_resolver.task_type}_'
      f'{strategy.cluster_resolver.task_id}')
  manager = tf.train.CheckpointManager(trainer.checkpoint(), checkpoint_dir,
                                       max_to_keep=max_checkpoints_to_keep,
                                       step_counter=trainer.step)
  if latest:
    trainer.restore(latest)
    logging.info('Resumed from %s at step %d.', latest, int(trainer.step.numpy()))
  else:
    trainer.initialize(next(iter(batching.training_batches(train_images, batch_size, seed, 0,
                                                           shuffle_buffer))))
    logging.info('Initialized %s from a batch of %d images.', type(model).__name__, batch_size)
  start_step = int(trainer.step.numpy())
  iterator = iter(batching.training_batches(train_images, batch_size, seed, start_step,
                                            shuffle_buffer))

  if chief:
    writers = {name: tf.summary.create_file_writer(os.path.join(model_dir, name))
               for name in ('train', 'validation')}
    summaries.write_hparams(
        tf.summary.create_file_writer(model_dir),
        summaries.run_hparams(model, dataset=dataset, learning_rate=learning_rate,
                              batch_size=batch_size, free_bits_lambda=free_bits_lambda,
                              soft_free_bits=bool(soft_free_bits), ema_decay=ema_decay,
                              train_steps=train_steps, seed=seed),
        start_time=run_directory.run_start_time(model_dir))
  else:
    writers = {name: tf.summary.create_noop_writer() for name in ('train', 'validation')}

  # Every worker of a multi-worker strategy must run the same steps and passes (collective ops):
  # they agree on each chunk's length and on stopping (`agree_across_workers`), and a signal
  # abandons no validation pass midway.
  multi_worker = distribution.num_workers(strategy) > 1
  validate = _Validation(strategy, averaged_model, eval_images, eval_batch_size, eval_split, seed,
                         writers['validation'], train_steps, multi_worker)
  images = None
  if chief and num_summary_images:
    # Reconstructions of validation images, or of training images when there is no validation.
    images = summaries.ImageSummaries(
        averaged_model, train_images if eval_images is None else eval_images,
        num_summary_images, seed=int(seeds.stateless_seed(seed, seeds.SUMMARY_SALT)[0]))
    image_writer = writers['train' if eval_images is None else 'validation']
  num_dims = model.num_dims

  def compile_passes(step, stop):
    """Traces the validation step and the image summaries now, not in the middle of the loop."""
    if eval_images is not None or images is not None:
      logging.info('Compiling the %s (once per process).', ' and the '.join(
          name for name, used in (('validation step', eval_images is not None),
                                  ('image summaries', images is not None)) if used))
    if eval_images is not None and (multi_worker or stop.signum is None):
      validate.compile()
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
  since_summary = progress.RunningMeans(trainer_lib.METRIC_KEYS)
  since_line = progress.RunningMeans(trainer_lib.METRIC_KEYS)
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
        num_steps, any_stop = distribution.agree_across_workers(strategy, num_steps,
                                                                stop.signum is not None)
        if any_stop:
          signum = stop.signum or signal.SIGTERM
          break
      elif stop.signum is not None:
        signum = stop.signum
        break
      chunk_began = time.time()
      metrics = trainer.train_loop(iterator, num_steps, max_consecutive_bad_steps)
      seconds = time.time() - chunk_began
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
          files.atomic_write_text(os.path.join(model_dir, run_directory.OPERATIVE_CONFIG_FILE),
                                  operative)
          with writers['train'].as_default(step=step):
            summaries.write_configs(operative, gin.config_str())
        means = since_line.means()
        logging.info('step %d/%d  loss %.3f  elbo %.3f  kl %.3f  |grad| %.3g  first step in '
                     '%.1f s (tracing and compilation)', step, train_steps, means['loss'],
                     means['elbo'], means['kl'], means['gradient_norm'], seconds)
        since_line.reset()
        compile_passes(step, stop)
        eta.start(step)
        line_deadline.reset()

      if at_summary or first_chunk:
        with writers['train'].as_default(step=step):
          summaries.write_train_scalars(
              since_summary.means(), num_dims, trainer.learning_rate(), since_summary.bad_steps,
              since_summary.steps_per_second(), batch_size)
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
        raise errors.NonFiniteError(
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
    raise errors.TrainingInterrupted(signum, step, manager.latest_checkpoint)
  if not chief:
    tf.io.gfile.rmtree(checkpoint_dir)
  return validation
