"""The actions of the train loop: what `controller.Controller` calls around every chunk of steps.

As in Orbit (orbit/controller.py calls `train_actions` with the runner's output), the controller
only runs the inner loop (`Trainer.train_loop`) in chunks and hands each chunk's outcome, a `Chunk`,
to a list of actions, in order:

    OperativeConfig    operative_config.gin and the configs as text summaries (first chunk)
    ProgressLines      the log lines: the first step, then every summary or PROGRESS_SECONDS
    CompilationNotice  names what the first chunk traces next (first chunk)
    TrainScalars       TensorBoard scalars every `summary_every` steps
    NonFiniteStop      raises NonFiniteError after `max_consecutive_bad_steps` skipped steps
    Checkpoints        every `checkpoint_every` steps, at the last step, and when stopping
    validation.ValidationPasses   validation ELBOs every `eval_every` steps and at the end
    ImageWrites        sample and reconstruction grids at summary steps, within a time budget

Each action has two hooks: `start(chunk)` once, after the first chunk of the process (the one that
traced the step: actions trace their own passes here, so that nothing is traced mid-run), and
`__call__(chunk)` after every chunk, the first included (after every `start`). Actions that must
not begin work once a signal arrived read `stop.requested` (`signals.StopRequests`).
"""

import dataclasses
import os
from typing import Mapping

from absl import logging
import gin
import tensorflow as tf

from vlae_tf import errors
from vlae_tf import files
from vlae_tf import progress
from vlae_tf.runs import directory
from vlae_tf.training import summaries
from vlae_tf.training import trainer as trainer_lib


@dataclasses.dataclass(frozen=True)
class Chunk:
  """What one call of the inner loop did.

  Attributes:
    step: the step after the chunk (the number of steps run since the run began).
    num_steps: the steps of the chunk (fewer than asked when bad steps stopped it).
    seconds: the chunk's wall time.
    metrics: `Trainer.train_loop`'s means over the applied steps, and `bad_steps`.
    first: the first chunk of this process: one step, which traced and compiled the step.
    final: `step` is the run's last step (`train_steps`).
    consecutive_bad_steps: skipped steps in a row at the end of the chunk.
    too_many_bad_steps: `consecutive_bad_steps` reached `max_consecutive_bad_steps`: the run stops.
  """

  step: int
  num_steps: int
  seconds: float
  metrics: Mapping[str, float]
  first: bool = False
  final: bool = False
  consecutive_bad_steps: int = 0
  too_many_bad_steps: bool = False

  def at(self, every):
    """Whether `step` is a multiple of `every` (0 or None: never) or the last step."""
    return self.final or bool(every) and self.step % every == 0


class Action:
  """Something the loop does around the inner loop; both hooks do nothing by default."""

  def start(self, chunk):
    """After the first chunk of the process (it traced the train step), before any `__call__`."""

  def __call__(self, chunk):
    """After every chunk, the first included."""


def _means_line(means):
  return (f"loss {means['loss']:.3f}  elbo {means['elbo']:.3f}  kl {means['kl']:.3f}  "
          f"|grad| {means['gradient_norm']:.3g}")


class OperativeConfig(Action):
  """Writes operative_config.gin and both configs as text summaries after the first chunk.

  After one step the operative config is complete: every configurable of the run was called.
  """

  def __init__(self, model_dir, writer):
    self._path = os.path.join(model_dir, directory.OPERATIVE_CONFIG_FILE)
    self._writer = writer

  def start(self, chunk):
    operative = gin.operative_config_str()
    files.atomic_write_text(self._path, operative)
    with self._writer.as_default(step=chunk.step):
      summaries.write_configs(operative, gin.config_str())


class ProgressLines(Action):
  """The progress lines of the log.

  The first chunk gets a line of its own (its time is tracing and compilation). After it, a line
  comes at every summary step and whenever the next chunk would end more than
  `progress.PROGRESS_SECONDS` after the previous line; it shows the means since the previous line,
  the rate inside the chunks and the ETA from the wall time per step since compilation ended
  (`progress.EtaClock`, started at the first `__call__`, after every action's `start`). Once
  `progress.BUDGET_NOTICE_SECONDS` of wall time have passed after compilation, one line says when
  the budget ends and, for a long one, how to get a model sooner (`progress.budget_line`).
  """

  def __init__(self, train_steps, batch_size, summary_every, pacer,
               metric_keys=trainer_lib.METRIC_KEYS):
    """Starts no clock yet.

    Args:
      train_steps: the run's last step.
      batch_size: the global batch, for examples per second.
      summary_every: steps between summaries, each of which gets a line.
      pacer: the loop's `progress.ChunkPacer` (how long the next chunk will take).
      metric_keys: the metrics of `Trainer.train_loop` that are averaged.
    """
    self._train_steps = int(train_steps)
    self._batch_size = int(batch_size)
    self._summary_every = summary_every
    self._pacer = pacer
    self._since_line = progress.RunningMeans(metric_keys)
    self._eta = progress.EtaClock(train_steps)
    self._deadline = progress.Deadline()
    self._budget_noticed = False

  def start(self, chunk):
    self._since_line.add(chunk.metrics, chunk.num_steps, chunk.seconds, timed=False)
    logging.info('step %d/%d  %s  first step in %.1f s (tracing and compilation)', chunk.step,
                 self._train_steps, _means_line(self._since_line.means()), chunk.seconds)
    self._since_line.reset()

  def __call__(self, chunk):
    if chunk.first:  # `start` counted it, and compilation is over: time counts from now.
      self._eta.start(chunk.step)
      self._deadline.reset()
      return
    self._since_line.add(chunk.metrics, chunk.num_steps, chunk.seconds)
    at_summary = chunk.at(self._summary_every) or chunk.too_many_bad_steps
    if not (at_summary or self._deadline.due(self._pacer.expected_seconds())):
      return
    steps_per_second = self._since_line.steps_per_second() or float('nan')
    logging.info('step %d/%d  %s  %.2f steps/s  %.0f examples/s  ETA %s', chunk.step,
                 self._train_steps, _means_line(self._since_line.means()), steps_per_second,
                 steps_per_second * self._batch_size,
                 progress.format_duration(self._eta.remaining_seconds(chunk.step)))
    self._since_line.reset()
    self._deadline.reset()
    self._notice_budget(chunk.step)

  def _notice_budget(self, step):
    if self._budget_noticed:
      return
    measured = self._eta.measured(step)
    if measured is None or measured[1] < progress.BUDGET_NOTICE_SECONDS:
      return
    self._budget_noticed = True
    line = progress.budget_line(step, self._train_steps, *measured)
    if line:
      logging.info('%s', line)


class CompilationNotice(Action):
  """Announces, after the first step's line, the passes that the other actions trace next."""

  def __init__(self, names):
    """`names`: what is traced, e.g. ('validation step', 'image summaries'); empty: no line."""
    self._names = tuple(names)

  def start(self, chunk):
    if self._names:
      logging.info('Compiling the %s (once per process).', ' and the '.join(self._names))


class TrainScalars(Action):
  """Training scalars (`summaries.write_train_scalars`) after the first chunk, at every
  `summary_every` steps, at the last step and before a stop for bad steps: the means over the
  applied steps since the previous write."""

  def __init__(self, writer, num_dims, learning_rate, batch_size, summary_every,
               metric_keys=trainer_lib.METRIC_KEYS):
    """Holds the writer.

    Args:
      writer: the `tf.summary` writer of <model_dir>/train.
      num_dims: H * W * C, for bits per dimension.
      learning_rate: a function returning the optimizer's current learning rate.
      batch_size: the global batch, for examples per second.
      summary_every: steps between writes.
      metric_keys: the metrics of `Trainer.train_loop` that are averaged.
    """
    self._writer = writer
    self._num_dims = num_dims
    self._learning_rate = learning_rate
    self._batch_size = batch_size
    self._summary_every = summary_every
    self._since_summary = progress.RunningMeans(metric_keys)

  def __call__(self, chunk):
    self._since_summary.add(chunk.metrics, chunk.num_steps, chunk.seconds, timed=not chunk.first)
    if not (chunk.first or chunk.at(self._summary_every) or chunk.too_many_bad_steps):
      return
    since = self._since_summary
    with self._writer.as_default(step=chunk.step):
      summaries.write_train_scalars(since.means(), self._num_dims, self._learning_rate(),
                                    since.bad_steps, since.steps_per_second(), self._batch_size)
    since.reset()
    self._writer.flush()


class NonFiniteStop(Action):
  """Raises NonFiniteError once a chunk ends with `max_consecutive_bad_steps` skipped steps in a
  row, after flushing the summaries. No checkpoint follows a skipped step, so the latest one holds
  the last good state; the message names it."""

  def __init__(self, model_dir, max_consecutive_bad_steps, writers=()):
    self._model_dir = model_dir
    self._max_consecutive_bad_steps = max_consecutive_bad_steps
    self._writers = tuple(writers)

  def __call__(self, chunk):
    if not chunk.too_many_bad_steps:
      return
    for writer in self._writers:
      writer.flush()
    last = tf.train.latest_checkpoint(self._model_dir)
    raise errors.NonFiniteError(
        f'training stopped at step {chunk.step}: {chunk.consecutive_bad_steps} consecutive steps '
        f'had a non-finite loss or gradient (train.max_consecutive_bad_steps = '
        f'{self._max_consecutive_bad_steps}); the last good checkpoint is {last}; lower '
        f'train.learning_rate or check the data, then rerun to resume from it.')


class Checkpoints(Action):
  """Saves the training state every `checkpoint_every` steps and at the last step, never right
  after a skipped step (the latest checkpoint stays the last good state); `save_final` and
  `save_unsaved` save the step the loop ends at.

  The manager (`tf.train.CheckpointManager`) writes ckpt-<step> and renames its state file into
  place after the checkpoint is complete, so a kill mid-save leaves the previous one the latest.
  """

  def __init__(self, manager, checkpoint_every, last_saved_step=None):
    """Holds the manager.

    Args:
      manager: a `tf.train.CheckpointManager` of the trainer's checkpoint.
      checkpoint_every: steps between checkpoints.
      last_saved_step: the step of the checkpoint the run resumed from (None: a fresh run).
    """
    self._manager = manager
    self._checkpoint_every = checkpoint_every
    self.last_saved_step = last_saved_step

  @property
  def latest(self):
    """The path of the newest checkpoint (None before any)."""
    return self._manager.latest_checkpoint

  def _save(self, step):
    self._manager.save(checkpoint_number=step)
    self.last_saved_step = step

  def __call__(self, chunk):
    if chunk.at(self._checkpoint_every) and not chunk.consecutive_bad_steps:
      self._save(chunk.step)
      if chunk.final:
        logging.info('Final checkpoint: %s.', self.latest)

  def save_final(self, step):
    """The checkpoint of the last step, unless it is saved already."""
    if self.last_saved_step != step:
      self._save(step)
      logging.info('Final checkpoint: %s.', self.latest)

  def save_unsaved(self, step):
    """Saves `step` unless it is saved already (a stopped run); returns the latest path."""
    if self.last_saved_step != step:
      self._save(step)
    return self.latest


class ImageWrites(Action):
  """Sample and reconstruction grids (`summaries.ImageSummaries`) of the averaged model.

  The first write, which traces the sampler, comes after the first chunk; later ones at summary
  steps while `images.due()` (at most `summaries.IMAGE_BUDGET` of the wall time), and always at
  the last step. Nothing is written once a signal asked the run to stop.
  """

  traced_pass = 'image summaries'

  def __init__(self, images, writer, summary_every, stop):
    """Holds the renderer.

    Args:
      images: a `summaries.ImageSummaries` (or anything with `write()` and `due()`).
      writer: the `tf.summary` writer of the grids (<model_dir>/validation, or /train when the
        run has no validation).
      summary_every: steps between summary steps.
      stop: the loop's `signals.StopRequests`.
    """
    self._images = images
    self._writer = writer
    self._summary_every = summary_every
    self._stop = stop

  def start(self, chunk):
    if self._stop.requested:
      return
    with self._writer.as_default(step=chunk.step):
      seconds = self._images.write()
    logging.info('Wrote the first image summaries in %.1f s (tracing included).', seconds)

  def __call__(self, chunk):
    if chunk.first or self._stop.requested or not chunk.at(self._summary_every):
      return
    if self._images.due() or chunk.final:
      with self._writer.as_default(step=chunk.step):
        self._images.write()
      self._writer.flush()
