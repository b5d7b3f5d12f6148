"""The controller of the train loop: chunks of steps, the actions after each, when to stop.

As Orbit's Controller (orbit/controller.py): the trainer (trainer.py) owns the inner step, the
controller runs it in chunks and hands every chunk to the actions (actions.py); before each chunk
it reads the stop flag of a signal (signals.py) and the time limit (time_limits.py), and with
several workers it makes them agree on both (distribution.py). loop.py builds it and decides how
the run ends.
"""

import signal
import time

from absl import logging

from vlae_tf import progress
from vlae_tf import time_limits
from vlae_tf.training import actions as actions_lib
from vlae_tf import distribution

TIME_LIMIT = 'time limit'  # `Controller.run`'s reason for stopping at --time_limit.


class Controller:
  """Runs the inner loop in chunks up to the last step and calls the actions after each chunk.

  The first chunk of a process is one step (it traces and compiles; the actions' `start` hooks
  follow it); later chunks end at the next boundary (a multiple of `boundaries`, or the last step)
  or after about `progress.CHUNK_SECONDS` (`pacer`). Before each chunk the stop flag is read; with
  several workers, they agree on each chunk's length and on stopping
  (`distribution.agree_across_workers`), since collective ops need every worker in every step.
  """

  def __init__(self, trainer, iterator, actions, stop, *, train_steps, boundaries=(),
               max_consecutive_bad_steps=None, pacer=None, strategy=None, multi_worker=False,
               time_limit=None):
    """Holds the loop's parts.

    Args:
      trainer: a `trainer.Trainer` (`train_loop`, `step`, `consecutive_bad_steps`).
      iterator: the iterator of training batches, positioned at `trainer.step`.
      actions: `actions.Action`s, called in order.
      stop: the `signals.StopRequests` to read before each chunk.
      train_steps: the last step.
      boundaries: step intervals at which a chunk must end (summaries, checkpoints, validation;
        0 or None: none).
      max_consecutive_bad_steps: skipped steps in a row that stop the run (None: never).
      pacer: a `progress.ChunkPacer` (shared with `actions.ProgressLines`).
      strategy: the strategy, to agree across workers.
      multi_worker: several workers run the loop together.
      time_limit: a `time_limits.TimeLimit`: stop before a chunk (with its actions and the final
        checkpoint) that would end after it.
    """
    self._trainer = trainer
    self._iterator = iterator
    self._actions = tuple(actions)
    self._stop = stop
    self.train_steps = int(train_steps)
    self._boundaries = tuple(every for every in boundaries if every)
    self._max_consecutive_bad_steps = max_consecutive_bad_steps
    self._pacer = pacer or progress.ChunkPacer()
    self._strategy = strategy
    self._multi_worker = multi_worker
    self.time_limit = time_limit
    self.estimate = time_limits.EstimatedWork()  # a chunk with its actions, and a checkpoint

  def run(self, step):
    """Runs chunks from `step`; returns (the step reached, why it stopped early or None): the
    stopping signal's number, or `TIME_LIMIT`."""
    first = True
    while step < self.train_steps:
      num_steps = 1 if first else self._pacer.next_chunk(self._steps_to_boundary(step))
      num_steps, reason = self._agree(num_steps)
      if reason is not None:
        return step, reason
      began = time.time()
      chunk = self._run_chunk(step, num_steps, first)
      if first:
        for action in self._actions:
          action.start(chunk)
        self._stop.exit_at_once = False  # Steps ran: a signal now saves them (signals.py).
      else:
        self._pacer.record(chunk.num_steps, chunk.seconds)
      for action in self._actions:
        action(chunk)
      if not first:  # The first chunk traces and compiles: not a measure of the next ones.
        self.estimate.record_unit(time.time() - began)
      step, first = chunk.step, False
    return step, None

  def _steps_to_boundary(self, step):
    boundary = min([self.train_steps] +
                   [(step // every + 1) * every for every in self._boundaries])
    return boundary - step

  def _agree(self, num_steps):
    """(chunk length, why the run stops now or None), the same on every worker: a signal's
    number, or `TIME_LIMIT` when the next chunk would end after the time limit."""
    out_of_time = time_limits.stop_before(self.time_limit, self.estimate)
    local = self._stop.signum or (TIME_LIMIT if out_of_time else None)
    if not self._multi_worker:
      return num_steps, local
    num_steps, any_stop = distribution.agree_across_workers(self._strategy, num_steps,
                                                            local is not None)
    return num_steps, (local or signal.SIGTERM) if any_stop else None

  def _run_chunk(self, step, num_steps, first):
    began = time.time()
    metrics = self._trainer.train_loop(self._iterator, num_steps, self._max_consecutive_bad_steps)
    seconds = time.time() - began
    reached = int(self._trainer.step.numpy())  # Fewer steps when bad steps stopped the chunk.
    consecutive_bad = int(self._trainer.consecutive_bad_steps.numpy())
    if metrics['bad_steps']:
      logging.warning('Skipped %d step(s) with a non-finite loss or gradient up to step %d '
                      '(%d in a row).', int(metrics['bad_steps']), reached, consecutive_bad)
    limit = self._max_consecutive_bad_steps
    return actions_lib.Chunk(
        step=reached, num_steps=reached - step, seconds=seconds, metrics=metrics, first=first,
        final=reached == self.train_steps, consecutive_bad_steps=consecutive_bad,
        too_many_bad_steps=limit is not None and consecutive_bad >= limit)
