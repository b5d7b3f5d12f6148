"""Validation passes of the train loop: the ELBO of the averaged model on the validation images.

`ValidationPasses` is one of the loop's actions (actions.py): it traces the validation step after
the first chunk, runs a pass every `eval_every` steps and at the last step, and `final_pass` runs
the last one when the last chunk did not. A pass over N images in batches of B reports

    elbo, kl, log_px_z   means over the N images (nats; padding images weigh 0)
    nll_bound            -elbo

as scalars under <model_dir>/validation (`summaries.write_elbo_scalars`) and in one log line, with
progress lines every `progress.PROGRESS_SECONDS` while it runs. A signal abandons a pass between two
batches (never with several workers, which must run the same collective ops): nothing is written
for it, and the loop stops.
"""

import time

from absl import logging

from vlae_tf import progress
from vlae_tf.data import batching
from vlae_tf.models import objectives
from vlae_tf.training import actions
from vlae_tf import distribution
from vlae_tf.training import summaries


class _PassAbandoned(Exception):
  """A signal stopped a validation pass between two batches."""


class ValidationPasses(actions.Action):
  """Validation passes over a (strided subset of the) validation split.

  Attributes:
    metrics: the means of the last completed pass ({} before any, and after an abandoned one).
    count: the number of validation images.
  """

  traced_pass = 'validation step'

  def __init__(self, evaluate, images, batch_size, *, split, eval_every, final_step, writer,
               num_dims, stop, multi_worker=False):
    """Holds the evaluator.

    Args:
      evaluate: a `distribution.DistributedEvaluator` of the averaged model's ELBO terms:
        evaluate(batches, report) -> {key: sum, key + '/squares': sum, 'count': images}, calling
        report(images so far) after every batch.
      images: the validation images, a finite dataset of [H, W, C].
      batch_size: the global validation batch (a multiple of the replicas).
      split: the split's name, for the log.
      eval_every: steps between passes (0: only at the last step).
      final_step: the run's last step (its pass is 'final validation').
      writer: the `tf.summary` writer of <model_dir>/validation.
      num_dims: H * W * C, for bits per dimension.
      stop: the loop's `signals.StopRequests`.
      multi_worker: several workers run the passes together: never abandon or skip one.
    """
    self._evaluate = evaluate
    self._images = images
    self.count = batching.cardinality(images)
    self._batch_size = batch_size
    self._split = split
    self._eval_every = eval_every
    self._final_step = final_step
    self._writer = writer
    self._num_dims = num_dims
    self._stop = stop
    self._multi_worker = multi_worker
    self.metrics = {}

  def _may_run(self):
    return self._multi_worker or not self._stop.requested

  def start(self, chunk):
    """Traces the validation step on one batch (so that it is not traced mid-run)."""
    if not self._may_run():
      return
    began = time.time()
    self._evaluate(batching.padded_batches(self._images, self._batch_size).take(1))
    logging.info('Compiled the validation step in %.1f s.', time.time() - began)

  def __call__(self, chunk):
    if self._may_run() and chunk.at(self._eval_every):
      self.metrics = self.run_pass(chunk.step) or {}

  def final_pass(self, step):
    """The pass of the last step unless the last chunk ran one; whether the run has its metrics."""
    if not self.metrics:
      self.metrics = self.run_pass(step) or {}
    return bool(self.metrics)

  def run_pass(self, step):
    """A validation pass at `step`: its means (nats), or None when a signal abandoned it."""
    name = 'final validation' if step >= self._final_step else 'validation'
    logging.info('%s at step %d: %d images of %s.', name.capitalize(), step, self.count,
                 self._split)
    began = time.time()
    deadline = progress.Deadline()

    def report(count):
      if self._stop.requested and not self._multi_worker:
        raise _PassAbandoned()
      if count < self.count and deadline.due():
        deadline.reset()
        rate = count / max(time.time() - began, 1e-9)
        logging.info('%s at step %d: %d/%d images, %.1f images/s, ETA %s', name, step, count,
                     self.count, rate, progress.format_duration((self.count - count) / rate))

    try:
      totals = self._evaluate(batching.padded_batches(self._images, self._batch_size), report)
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
