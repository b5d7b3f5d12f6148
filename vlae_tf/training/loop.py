"""The outer loop: `train`, a small controller that calls actions around the inner loop.

The split follows Orbit (orbit/controller.py, standard_runner.py): the trainer (trainer.py, built by
`trainer.make_trainer`) owns the inner step, one `tf.function` that runs several steps on every
replica without leaving the graph; `Controller` runs it in chunks and hands every chunk to the
actions (actions.py, validation.py), which write checkpoints, validation ELBOs, summaries and
progress lines; `train` builds both and decides how the run ends. A chunk runs to the next
summary, checkpoint or validation step, or for about `progress.CHUNK_SECONDS` of wall time,
whichever comes first (`progress.ChunkPacer`), so that progress lines come at least every
`progress.PROGRESS_SECONDS` and a signal is answered within seconds whatever the step time.

    controller.py      `Controller`: the chunks of steps, the actions after each, when to stop
    settings.py        `TrainSettings`, bound in gin as `train.<setting>`
    trainer.py         the replica step, the loss across replicas, Polyak averaging
    actions.py         checkpoints, summaries, progress lines, the stop for bad steps
    validation.py      validation passes

and below training: the run directory (vlae_tf/runs/: its files, config, resume checks,
checkpoints), the strategy and replica splitting (vlae_tf/distribution.py), SIGTERM / SIGINT as
a flag (vlae_tf/signals.py), and the data order (a function of (seed, step)) and validation
batches (vlae_tf/data/batching.py).

Randomness and data. Every random draw is stateless (seeds.py) and the data order is a function of
(seed, step) (`batching.training_batches`; each worker's input pipeline reads its own shard of the
training set, `batching.per_worker_batches`), so the RNG state and the data position are the
step, and a checkpoint holds step, model, averaged model and optimizer (and gamma with soft free
bits); no tf.data iterator is saved (that would serialize the in-memory dataset into every
checkpoint). A resumed run reproduces the uninterrupted run exactly when `datasets.load` is
deterministic (the static binarizations, CIFAR); a dynamically binarized training set restarts its
sequence of binarizations, which is statistically equivalent but not identical.

Faults (docs/reliability.md). A step whose loss or summed gradient is not finite is skipped and
counted in the `bad_steps` summary; `max_consecutive_bad_steps` in a row stop the run
(NonFiniteError). SIGTERM / SIGINT set a flag checked between chunks of steps (about 2 s each) and
between the batches of a validation pass, which is abandoned: a checkpoint is saved and
TrainingInterrupted raised. A kill mid-save leaves the previous checkpoint as the latest (the
CheckpointManager renames the state file into place after the checkpoint is complete). A restart
in a model_dir whose config.gin differs in more than bookkeeping is refused
(`run_config.check_resumable`). A checkpoint damaged after its save is moved to damaged/ and the
run resumes from the newest intact one (`checkpoints.prepare_resume`). With several workers, the
workers agree before each chunk on its length and on stopping, so a signal to one saves the same
step on all; a worker that dies makes the others raise LostWorkerError (distribution.py).
"""

import functools
import os
import signal
import time

from absl import logging
import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf import errors
from vlae_tf import files
from vlae_tf import progress
from vlae_tf import seeds
from vlae_tf import time_limits
from vlae_tf.data import batching
from vlae_tf.data import datasets
from vlae_tf.models import summary as model_summary
from vlae_tf import accelerators
from vlae_tf.training import actions as actions_lib
from vlae_tf.training import controller as controller_lib
from vlae_tf import distribution
from vlae_tf.runs import directory
from vlae_tf.data import sources
from vlae_tf.training import settings as settings_lib
from vlae_tf import signals
from vlae_tf.training import summaries
from vlae_tf.training import trainer as trainer_lib
from vlae_tf.training import validation as validation_lib


def train(model_dir, data_dir=None, settings=None, strategy=None, time_limit=None):
  """Trains a VLAE in `model_dir`, resuming from its newest intact checkpoint if there is one.

  Args:
    model_dir: the run directory (created if needed).
    data_dir: where `datasets.load` finds raw data.
    settings: a `settings.TrainSettings`; default: `TrainSettings()`, the gin bindings of `train`.
      config.gin records the gin config, so settings that gin does not bind are not in it.
    strategy: a `tf.distribute.Strategy` (default: `distribution.make_strategy()`).
    time_limit: a `time_limits.TimeLimit` (bin/train's --time_limit), or None.

  Returns:
    The last validation metrics (means over the validation images, nats; {} without validation).

  Raises:
    TrainingInterrupted: SIGTERM or SIGINT arrived; a checkpoint of the last step was saved.
    TimeLimitReached: the next chunk would have ended after `time_limit`; a checkpoint of the
      last step was saved.
    NonFiniteError: max_consecutive_bad_steps skipped steps in a row (no checkpoint is written
      after a skipped step, so the latest one holds the last good state).
    IncompatibleRunError: model_dir has checkpoints of a run with different bindings.
    DamagedConfigError: model_dir has checkpoints and a damaged config.gin.
    DamagedCheckpointError: model_dir has checkpoints, but none is intact (the damaged ones are
      moved to <model_dir>/damaged/; see `checkpoints.prepare_resume`).
    RunError: model_dir cannot be created or written.
    LostWorkerError: with several workers, a peer died or became unreachable (the collective ops
      failed); restarting every worker resumes from the newest checkpoint.
  """
  began = time.time()
  settings = settings or settings_lib.TrainSettings()
  configured = settings
  settings = settings.for_budget()  # Intervals scaled to the budget (settings.py).
  # First, before any op runs: MultiWorkerMirroredStrategy configures the collective ops, which is
  # only possible at program start-up.
  strategy = strategy or distribution.make_strategy()
  _seed_the_process(settings)
  _check_batch_size(settings, strategy.num_replicas_in_sync)
  chief = distribution.is_chief(strategy)
  multi_worker = distribution.num_workers(strategy) > 1
  # The data and the model before anything is written: a missing dataset or an image shape the
  # model was not configured for is one line, and leaves no run directory behind.
  if chief:
    directory.check_model_dir_creatable(model_dir)  # before the data: a cheap, early error
  train_images, eval_images = _load_images(settings, data_dir)
  trainer = trainer_lib.make_trainer(strategy, global_batch_size=settings.batch_size,
                                     **settings.trainer_kwargs())
  accelerators.log_start(strategy, getattr(trainer.model, 'precision', None),
                         settings.jit_compile)
  _check_image_shape(trainer.model, train_images, settings.dataset)
  latest = directory.prepare_training_run(model_dir, gin.config_str(), chief, began)
  if chief:
    sources.record_data_source(model_dir, settings.dataset, data_dir)
  logging.info('%s %s on %s (%s), %d replica(s), batch %d, %d steps; run directory %s',
               'Resuming' if latest else 'Training', type(trainer.model).__name__,
               settings.dataset, sources.describe_data_source(data_dir, settings.dataset),
               strategy.num_replicas_in_sync, settings.batch_size, settings.train_steps,
               model_dir)
  if settings != configured:
    logging.info('For a budget of %d steps: summaries every %d steps, validation every %d, '
                 'checkpoints every %d (see TrainSettings.for_budget).', settings.train_steps,
                 settings.summary_every, settings.eval_every, settings.checkpoint_every)
  manager = _checkpoint_manager(trainer, model_dir, strategy, chief, settings)
  start_step = _restore_or_initialize(trainer, latest, train_images, settings,
                                      distribution.num_workers(strategy))
  _write_model_summary(model_dir, chief, trainer.model)
  iterator = iter(batching.per_worker_batches(strategy, functools.partial(
      batching.training_batches, train_images, settings.batch_size, settings.seed, start_step,
      settings.shuffle_buffer), settings.batch_size))
  writers = _summary_writers(model_dir, chief, trainer.model, settings)

  # Until the first chunk ends (tracing), a signal exits at once: nothing new to save.
  stop = signals.StopRequests(exit_at_once=not multi_worker)
  checkpoints = actions_lib.Checkpoints(manager, settings.checkpoint_every,
                                        last_saved_step=start_step if latest else None)
  validation = _validation_passes(strategy, trainer, eval_images, writers, settings, stop,
                                  multi_worker)
  images = _image_writes(chief, trainer.averaged_model, train_images, eval_images, writers,
                         settings, stop)
  pacer = progress.ChunkPacer()
  controller = controller_lib.Controller(
      trainer, iterator,
      _actions(model_dir, chief, trainer, writers, settings, pacer, checkpoints, validation,
               images),
      stop, train_steps=settings.train_steps,
      boundaries=(settings.summary_every, settings.checkpoint_every, settings.eval_every),
      max_consecutive_bad_steps=settings.max_consecutive_bad_steps, pacer=pacer,
      strategy=strategy, multi_worker=multi_worker, time_limit=time_limit)

  ended = 'failure'  # pieces.jsonl: how this process's piece of the run ended

  try:
    metrics = _run(controller, stop, start_step, checkpoints, validation, manager, chief,
                   multi_worker)
    ended = 'finished'
  except errors.TrainingInterrupted as interrupted:
    ended = signal.Signals(interrupted.signum).name
    if chief:
      summaries.end_hparams_session(model_dir, 'stopped')
    raise
  except errors.TimeLimitReached:
    ended = 'time limit'
    if chief:
      summaries.end_hparams_session(model_dir, 'stopped')
    raise
  except errors.NonFiniteError:
    if chief:
      summaries.end_hparams_session(model_dir, 'failure')
    raise
  except distribution.PEER_FAILURES as error:  # A lost worker: one line naming it.
    if not multi_worker:
      raise
    raise distribution.lost_worker_error(error, strategy, model_dir) from None
  finally:
    for writer in writers.values():  # The binary ends at once now (cli.binaries.run_binary).
      writer.flush()
    if chief and checkpoints.last_saved_step is not None:
      directory.record_piece(
          model_dir, began, start_step, checkpoints.last_saved_step, ended,
          replicas=strategy.num_replicas_in_sync, workers=distribution.num_workers(strategy),
          precision=trainer.model.precision if hasattr(trainer.model, 'precision') else None,
          xla=trainer.jit_compile, accumulation_steps=trainer.accumulation_steps)
  if chief:
    summaries.end_hparams_session(model_dir, 'success')
  return metrics


def _run(controller, stop, start_step, checkpoints, validation, manager, chief, multi_worker):
  """Runs the controller to the end or a stop; the last validation metrics."""
  with stop:
    step, reason = controller.run(start_step)
    finished = False  # The steps, the final checkpoint and the final validation are done.
    if reason is None and (multi_worker or not stop.requested):
      checkpoints.save_final(step)
      finished = validation is None or validation.final_pass(step)
    if not finished:
      reason = reason or stop.signum
  if reason == controller_lib.TIME_LIMIT:
    saved = checkpoints.save_unsaved(step)
    raise time_limits.limit_reached(
        controller.time_limit, f'step {step} of {controller.train_steps}, saved {saved}',
        'run the same command again to resume')
  if reason is not None:
    raise errors.TrainingInterrupted(reason, step, checkpoints.save_unsaved(step))
  if not chief:  # Its checkpoints were only for the collective ops of saving.
    tf.io.gfile.rmtree(manager.directory)
  return {} if validation is None else validation.metrics


def _write_model_summary(model_dir, chief, model):
  """<model_dir>/model_summary.json (parameters per part, decoder window) and its line."""
  summary = model_summary.model_summary(model)
  logging.info('%s', model_summary.summary_line(summary))
  if chief:
    files.atomic_write_json(os.path.join(model_dir, directory.MODEL_SUMMARY_FILE), summary)


def _seed_the_process(settings):
  """Op determinism if asked, and the global seeds of the weight initializers."""
  if settings.deterministic:
    tf.config.experimental.enable_op_determinism()
  # The initializers of the weights draw from the global generators: seed them too, so that a
  # fresh run is a function of `seed` (Python, NumPy and TensorFlow global seeds). Never 0: with a
  # global seed of 0, tf.data's shuffle cannot take the tensor seeds of `training_batches`.
  keras.utils.set_random_seed(
      int(seeds.stateless_seed(settings.seed, seeds.INIT_SALT)[0]) % (2**31 - 1) + 1)


def _check_batch_size(settings, num_replicas):
  if settings.batch_size % num_replicas:
    raise ValueError(f'batch_size {settings.batch_size} is not a multiple of {num_replicas} '
                     'replicas.')
  if settings.batch_size % (num_replicas * settings.accumulation_steps):
    raise errors.CliError(
        f'train.batch_size = {settings.batch_size} does not split into {num_replicas} replica(s) '
        f'of train.accumulation_steps = {settings.accumulation_steps} micro-batches: choose a '
        f'batch size that is a multiple of {num_replicas * settings.accumulation_steps}.')


def _check_image_shape(model, images, dataset):
  """Raises CliError when the config's image shape is not the data's (both named)."""
  data_shape = tuple(images.element_spec.shape)[-3:]
  model_shape = tuple(getattr(model, 'image_shape', data_shape))
  if data_shape != model_shape:
    raise errors.CliError(
        f'The config\'s image shape is {"x".join(map(str, model_shape))} (IMAGE_SHAPE) but '
        f'{dataset} images are {"x".join(map(str, data_shape))}: bind IMAGE_SHAPE = {data_shape} (or choose the dataset the config '
        'was written for).')


def _checkpoint_manager(trainer, model_dir, strategy, chief, settings):
  """The CheckpointManager of the trainer's state: in model_dir for the chief, else in a
  directory of the worker's own (every worker saves: the save is a collective op)."""
  checkpoint_dir = model_dir if chief else os.path.join(
      model_dir, 'worker_tmp', f'{strategy.cluster_resolver.task_type}_'
      f'{strategy.cluster_resolver.task_id}')
  return tf.train.CheckpointManager(trainer.checkpoint(), checkpoint_dir,
                                    max_to_keep=settings.max_checkpoints_to_keep,
                                    step_counter=trainer.step)


def _eval_batch_size(settings, num_replicas):
  """`eval_batch_size` (default `batch_size`) rounded up to a multiple of the replicas."""
  eval_batch_size = settings.eval_batch_size or settings.batch_size
  return -(-eval_batch_size // num_replicas) * num_replicas


def _load_images(settings, data_dir):
  """(training images, validation images or None); without validation the split is not read."""
  train_images = datasets.load(settings.dataset, settings.train_split, data_dir=data_dir,
                               seed=settings.seed)
  if not settings.validates:
    return train_images, None
  eval_images = batching.strided_subset(
      datasets.load(settings.dataset, settings.eval_split, data_dir=data_dir, seed=settings.seed),
      settings.eval_examples)
  return train_images, eval_images


def _restore_or_initialize(trainer, latest, train_images, settings, num_pipelines=1):
  """Restores checkpoint `latest`, or initializes a fresh run on its first global batch (the same
  on every worker: every worker reads the first batch of each input pipeline); the step."""
  if latest:
    trainer.restore(latest)
    logging.info('Resumed from %s at step %d.', latest, int(trainer.step.numpy()))
  else:
    first_batch = batching.global_batch(train_images, settings.batch_size, settings.seed, 0,
                                        settings.shuffle_buffer, num_pipelines)
    trainer.initialize(first_batch)
    logging.info('Initialized %s from a batch of %d images.', type(trainer.model).__name__,
                 settings.batch_size)
  return int(trainer.step.numpy())


def _summary_writers(model_dir, chief, model, settings):
  """{'train', 'validation'}: the chief's writers (which also writes the hparams), else no-ops."""
  if not chief:
    return {name: tf.summary.create_noop_writer() for name in ('train', 'validation')}
  writers = {name: tf.summary.create_file_writer(os.path.join(model_dir, name))
             for name in ('train', 'validation')}
  summaries.write_hparams(
      tf.summary.create_file_writer(model_dir),
      summaries.run_hparams(model, dataset=settings.dataset, learning_rate=settings.learning_rate,
                            batch_size=settings.batch_size,
                            free_bits_lambda=settings.free_bits_lambda,
                            soft_free_bits=bool(settings.soft_free_bits),
                            ema_decay=settings.ema_decay, train_steps=settings.train_steps,
                            seed=settings.seed),
      start_time=directory.run_start_time(model_dir))
  return writers


def _validation_passes(strategy, trainer, eval_images, writers, settings, stop, multi_worker):
  """The validation action (None without validation): the ELBO terms of the averaged model,
  summed over batches on every replica."""
  if eval_images is None:
    return None
  averaged_model = trainer.averaged_model
  evaluate = distribution.DistributedEvaluator(
      strategy, lambda x, seed_: averaged_model.elbo(x, seed_, training=False),
      seed=settings.seed, salt=seeds.VALIDATION_SALT, jit_compile=trainer.jit_compile)
  return validation_lib.ValidationPasses(
      evaluate, eval_images, _eval_batch_size(settings, strategy.num_replicas_in_sync),
      split=settings.eval_split, eval_every=settings.eval_every, final_step=settings.train_steps,
      writer=writers['validation'], num_dims=trainer.model.num_dims, stop=stop,
      multi_worker=multi_worker)


def _image_writes(chief, averaged_model, train_images, eval_images, writers, settings, stop):
  """The chief's image summaries (None without them): reconstructions of validation images, or of
  training images when there is no validation."""
  if not (chief and settings.num_summary_images):
    return None
  images = summaries.ImageSummaries(
      averaged_model, train_images if eval_images is None else eval_images,
      settings.num_summary_images,
      seed=int(seeds.stateless_seed(settings.seed, seeds.SUMMARY_SALT)[0]))
  writer = writers['train' if eval_images is None else 'validation']
  return actions_lib.ImageWrites(images, writer, settings.summary_every, stop)


def _actions(model_dir, chief, trainer, writers, settings, pacer, checkpoints, validation,
             images):
  """The loop's actions in the order it calls them (see actions.py)."""
  traced = [action for action in (validation, images) if action is not None]
  actions = [actions_lib.OperativeConfig(model_dir, writers['train'])] if chief else []
  actions += [
      actions_lib.ProgressLines(settings.train_steps, settings.batch_size, settings.summary_every,
                                pacer),
      actions_lib.CompilationNotice([action.traced_pass for action in traced]),
      actions_lib.TrainScalars(writers['train'], trainer.model.num_dims, trainer.learning_rate,
                               settings.batch_size, settings.summary_every),
      actions_lib.NonFiniteStop(model_dir, settings.max_consecutive_bad_steps,
                                writers.values()),
      checkpoints,
  ]
  return actions + traced
