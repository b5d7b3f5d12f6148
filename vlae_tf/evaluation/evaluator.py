"""Evaluation of a run: importance-weighted NLL, ELBO and KL with the Polyak-averaged weights.

    log p(x) ~= log (1/K) sum_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x)

is a lower bound on log p(x) that tightens as K grows; -log p(x) is reported in nats per image
(the paper's unit for binary images) and in bits per dimension, -log p(x) / (D ln 2) with
D = H * W * C (the paper's unit for CIFAR-10). Defaults: K = 4096 for binary data, 512 for 8-bit
data (Chen et al. 2017, Section 5).

`max_examples` takes a strided subset (every k-th image), never the first images: the static MNIST
test set is sorted by class, so its first images are all zeros.

The report is written atomically to <model_dir>/eval_<split>.json. `evaluate_curve` evaluates every
kept checkpoint with the same importance samples and writes the NLL against training wall time
(eval_<split>_curve.json and .png): the time-to-quality curve of docs/RESULTS.md.
"""

import json
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

from vlae_tf.data import batching
from vlae_tf.training import checkpoints
from vlae_tf.data import datasets
from vlae_tf.training import distribution
from vlae_tf import files
from vlae_tf.models import objectives
from vlae_tf.evaluation import plots
from vlae_tf import progress as progress_lib
from vlae_tf.training import run_directory
from vlae_tf.training import signals
from vlae_tf import seeds

DEFAULT_NUM_SAMPLES = {'binary': 4096, '8bit': 512}
# bin/eval's protocols: `quick` (its default) is an estimate in about a minute on a 2-core CPU
# (K=128 on 500 evenly spread images; the bound is looser than K=4096's by a few tenths of a nat
# on MNIST); `paper` is Chen et al.'s: DEFAULT_NUM_SAMPLES on every image of the split.
PROTOCOLS = {'quick': {'num_samples': 128, 'max_examples': 500},
             'paper': {'num_samples': None, 'max_examples': None}}
EVAL_SUMMARY_DIR = 'eval'  # <model_dir>/eval: TensorBoard events of every evaluation's NLL
REPORT_FILE = 'eval_{split}.json'
PARTIAL_FILE = 'eval_{split}_partial.json'  # an evaluation stopped by a signal: its images so far
CURVE_FILE = 'eval_{split}_curve.json'
HISTORY_FILE = 'eval_history.jsonl'
CURVE_PLOT = 'eval_{split}_curve.png'


class _SumsSoFar(distribution.DistributedEvaluator):
  """A `DistributedEvaluator` whose sums of the batches done so far (`sums_so_far`, replaced as a
  whole after every batch) can be read from another thread: the partial result of an evaluation
  stopped by a signal in the middle of a long batch (signals.py)."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.sums_so_far = {}
    step = self._step

    def summed_step(images, weights, batch_index):
      sums, values = step(images, weights, batch_index)
      if int(batch_index) == 0:
        self.sums_so_far = {}
      totals = dict(self.sums_so_far)
      for key, value in sums.items():
        totals[key] = totals.get(key, 0.0) + float(value)
      self.sums_so_far = totals  # One assignment: a reader sees whole batches.
      return sums, values

    self._step = summed_step


class CheckpointEvaluator:
  """A run's averaged model and a traced evaluation step, reusable across its checkpoints.

  With `per_example`, calls also return every image's values (see `__call__`): two runs evaluated
  with the same split, subset, K and seed see the same images and the same noise.
  """

  def __init__(self, model_dir, split, num_samples, max_examples, batch_size, data_dir,
               chunk_size, seed, strategy, per_example=False, checkpoint=None):
    run_directory.load_run_config(model_dir)
    # The newest intact checkpoint, or `checkpoint` if given; fails clearly when there is none.
    self.checkpoint = checkpoints.resolve_checkpoint(model_dir, checkpoint)
    first = self.checkpoint
    self.dataset = run_directory.run_dataset()
    self.strategy = strategy or distribution.make_strategy()
    with self.strategy.scope():
      self.model, _, _ = run_directory.restore_averaged_model(model_dir, first)
      self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    model = self.model
    self.split = split
    self.num_samples = int(num_samples or DEFAULT_NUM_SAMPLES[model.data_kind])
    num_replicas = self.strategy.num_replicas_in_sync
    self.batch_size = -(-int(batch_size) // num_replicas) * num_replicas
    images = datasets.load(self.dataset, split, data_dir=data_dir)
    size = batching.cardinality(images)
    self.images = batching.strided_subset(images, max_examples, size)
    self.total = size if max_examples is None else min(size, max_examples)
    likelihood_kwargs = {} if chunk_size is None else {'chunk_size': int(chunk_size)}
    num_samples = self.num_samples

    def statistics(x, seed_pair):
      elbo_seed, likelihood_seed = tf.unstack(
          tf.random.experimental.stateless_split(seed_pair, 2))
      outputs = model.elbo(x, elbo_seed, training=False)
      return {
          'log_likelihood': model.log_likelihood(x, num_samples, likelihood_seed,
                                                 **likelihood_kwargs),
          'elbo': outputs['elbo'],
          'kl': outputs['kl'],
          'log_px_z': outputs['log_px_z'],
      }

    # The same seeds for every checkpoint: differences between checkpoints are the weights'.
    self.per_example = per_example
    self.partial_on_interrupt = False
    self._evaluator = _SumsSoFar(
        self.strategy, statistics, seed=seed, salt=seeds.EVALUATION_SALT, per_example=per_example)
    self._began = self._step_value = None

  def __call__(self, checkpoint, progress=True):
    """The report of one checkpoint (restored into the same model).

    With `per_example`, returns (report, {'nll', 'elbo', 'kl', 'log_px_z': float64 [N]}), the
    values of every image in subset order (nats).
    """
    began = self._began = time.time()
    status = tf.train.Checkpoint(step=self._step, averaged_model=self.model).restore(checkpoint)
    status.expect_partial()
    status.assert_existing_objects_matched()
    self._step_value = int(self._step.numpy())  # Read here: partial_report runs in a thread.
    bar = (progress_lib.ProgressBar(self.total, f'eval {self.split} K={self.num_samples} '
                       f'step {self._step_value}') if progress else None)
    if progress:
      logging.info('Evaluating %s %s, step %d: %d images, K=%d importance samples.',
                   self.dataset, self.split, self._step_value, self.total, self.num_samples)
    self._evaluator.partial_on_interrupt = self.partial_on_interrupt
    self._evaluator.sums_so_far = {}
    totals = self._evaluator(batching.padded_batches(self.images, self.batch_size),
                             progress=bar)
    if self.per_example:
      totals, values = totals
    report = self._report(totals, checkpoint, began, partial=self._evaluator.interrupted)
    if not self.per_example:
      return report
    per_image = {'nll': -values['log_likelihood'], 'elbo': values['elbo'], 'kl': values['kl'],
                 'log_px_z': values['log_px_z']}
    return report, per_image

  def partial_report(self, checkpoint):
    """The report of the batches done so far (readable from another thread), or None."""
    totals = self._evaluator.sums_so_far
    if not totals.get('count') or self._began is None:
      return None
    return self._report(totals, checkpoint, self._began, partial=True)

  def _report(self, totals, checkpoint, began, partial):
    """The report dict of `totals` (sums of `DistributedEvaluator`); plain floats and ints."""
    means, errors = distribution.means_from_sums(totals)
    num_dims = int(self.model.num_dims)
    nll = -means['log_likelihood']
    report = {
        'dataset': self.dataset,
        'split': self.split,
        'step': self._step_value,
        'checkpoint': checkpoint,
        'num_examples': int(round(totals['count'])),
        'num_samples': self.num_samples,
        'num_dims': num_dims,
        'nll_nats': nll,
        'nll_stderr_nats': errors['log_likelihood'],
        'bits_per_dim': float(objectives.bits_per_dim(nll, num_dims)),
        'elbo_nats': means['elbo'],
        'nll_bound_nats': -means['elbo'],
        'nll_bound_bits_per_dim': float(objectives.bits_per_dim(-means['elbo'], num_dims)),
        'kl_nats': means['kl'],
        'kl_bits': means['kl'] / float(np.log(2.0)),
        'reconstruction_nats': -means['log_px_z'],
        'seconds': time.time() - began,
    }
    if partial:
      report['partial'] = True  # A signal: the images done so far.
      report['num_examples_planned'] = int(self.total)
    return {key: float(value) if isinstance(value, (np.floating, np.integer)) else value
            for key, value in report.items()}


def evaluate(model_dir,
             split='test',
             num_samples=None,
             max_examples=None,
             batch_size=32,
             data_dir=None,
             chunk_size=None,
             seed=0,
             strategy=None,
             progress=True,
             checkpoint=None):
  """Evaluates a checkpoint of a run with its averaged weights; writes eval_<split>.json.

  Rebuilds the model from <model_dir>/config.gin (this clears any gin config already parsed).
  Evaluates the newest intact checkpoint (a damaged newer one is named in a warning), or
  `checkpoint`.

  Args:
    model_dir: the run directory.
    split: the dataset split.
    num_samples: importance samples K (default 4096 for binary data, 512 for 8-bit data).
    max_examples: evaluate a strided subset of this many images (default: the whole split).
    batch_size: global batch (rounded up to a multiple of the number of replicas).
    data_dir: where `datasets.load` finds raw data.
    chunk_size: importance samples per chunk in `model.log_likelihood` (default: the model's).
    seed: integer seed of the importance samples.
    strategy: a `tf.distribute.Strategy` (default: `distribution.make_strategy()`).
    progress: show a progress bar on stderr.
    checkpoint: a checkpoint prefix (<model_dir>/ckpt-N) or a step N; default: the newest intact.

  Returns:
    A dict with nll_nats, nll_stderr_nats, bits_per_dim, elbo_nats, nll_bound_nats,
    nll_bound_bits_per_dim, kl_nats, kl_bits, reconstruction_nats, num_examples, num_samples,
    num_dims, dataset, split, step, checkpoint, seconds.
  """
  began = time.time()
  evaluator = CheckpointEvaluator(model_dir, split, num_samples, max_examples, batch_size,
                                  data_dir, chunk_size, seed, strategy, checkpoint=checkpoint)
  evaluator.partial_on_interrupt = True

  def stop(signum):  # In signals.py's watcher thread, while a batch may be running.
    return _keep_partial(model_dir, evaluator.partial_report(evaluator.checkpoint), began,
                         signals.signal_name(signum), evaluator.total)

  with signals.when_signalled(stop):
    report = evaluator(evaluator.checkpoint, progress=progress)
  report['seconds'] = time.time() - began
  if report.get('partial'):  # Ctrl-C in-process: kept apart, not recorded as the split's result.
    _keep_partial(model_dir, report, began)
    return report
  files.atomic_write_json(os.path.join(model_dir, REPORT_FILE.format(split=split)), report)
  append_history(model_dir, report)
  write_summary(model_dir, report)
  return report


def _keep_partial(model_dir, report, began, signame=None, total=None):
  """Writes a partial report to eval_<split>_partial.json (atomically); the `stopped:` line."""
  if report is None:
    return (f'interrupted by {signame} during the evaluation, before its first batch of '
            f'images ended: nothing evaluated, nothing written')
  report['seconds'] = time.time() - began
  path = os.path.join(model_dir, PARTIAL_FILE.format(split=report['split']))
  files.atomic_write_json(path, report)
  return (f'interrupted by {signame} during the evaluation: the partial result of '
          f'{report["num_examples"]} of {total} images (NLL {report["nll_nats"]:.3f} +- '
          f'{report["nll_stderr_nats"]:.3f} nats, K={report["num_samples"]}, step '
          f'{report["step"]}) is in {path}')


def write_summary(model_dir, report):
  """Writes the report's NLL (nats, bits/dim), ELBO and KL at its step to TensorBoard, in
  <model_dir>/eval (tags eval/<split>/...), beside the run's train/ and validation/ events."""
  writer = tf.summary.create_file_writer(os.path.join(model_dir, EVAL_SUMMARY_DIR))
  split = report['split']
  with writer.as_default():
    for key in ('nll_nats', 'bits_per_dim', 'elbo_nats', 'kl_nats'):
      tf.summary.scalar(f'eval/{split}/{key}', report[key], step=report['step'])
    tf.summary.text(f'eval/{split}/settings', f'K={report["num_samples"]}, '
                    f'{report["num_examples"]} images, checkpoint {report["checkpoint"]}',
                    step=report['step'])
  writer.close()


def append_history(model_dir, report):
  """Appends `report` as one JSON line to <model_dir>/eval_history.jsonl.

  eval_<split>.json holds the latest evaluation of a split; the history keeps every one, whatever
  its settings (K, subset, checkpoint), so that no result is lost to a later evaluation.
  """
  path = os.path.join(model_dir, HISTORY_FILE)
  line = json.dumps(dict(report, unix_time=time.time()), sort_keys=True) + '\n'
  files.append_line(path, line)  # One write of one line: a reader sees whole lines.


def evaluate_curve(model_dir,
                   split='test',
                   num_samples=None,
                   max_examples=None,
                   batch_size=32,
                   data_dir=None,
                   chunk_size=None,
                   seed=0,
                   strategy=None,
                   progress=True):
  """Evaluates every kept checkpoint of a run: test NLL against training time.

  Same arguments as `evaluate` (but `checkpoint`). Damaged checkpoints are left out, each named in
  a one-line warning. The training time of a checkpoint is the time it was written
  minus the start of the run (<model_dir>/started.json, written by a fresh `train`): it counts
  everything the training process did, start-up, data init and checkpointing included, and for a
  resumed run also the time it was stopped.

  Writes eval_<split>_curve.json (the list of reports, each with `checkpoint_time` and
  `train_seconds`) and eval_<split>_curve.png (NLL with standard errors against minutes, or
  against steps when the start time is unknown), both atomically.

  Returns:
    The list of reports, oldest checkpoint first.
  """
  evaluator = CheckpointEvaluator(model_dir, split, num_samples, max_examples, batch_size,
                                  data_dir, chunk_size, seed, strategy)
  started = run_directory.run_start_time(model_dir)
  reports = []
  curve_path = os.path.join(model_dir, CURVE_FILE.format(split=split))

  def stop(signum):  # In signals.py's watcher thread.
    return (f'interrupted by {signals.signal_name(signum)} during the curve: '
            + (f'the {len(reports)} checkpoint(s) evaluated before are in {curve_path}'
               if reports else 'no checkpoint was evaluated, nothing written'))

  with signals.when_signalled(stop):
    for checkpoint, written in checkpoints.intact_run_checkpoints(model_dir):
      report = evaluator(checkpoint, progress=progress)
      report['checkpoint_time'] = written
      report['train_seconds'] = None if started is None else written - started
      # After every checkpoint, so that an interrupted curve keeps what it measured.
      files.atomic_write_json(curve_path, reports + [report])
      reports.append(report)
  by_time = started is not None
  points = [((r['train_seconds'] / 60.0) if by_time else r['step'], r['nll_nats'],
             r['nll_stderr_nats']) for r in reports]
  first = reports[0]
  plots.write_line_plot(
      os.path.join(model_dir, CURVE_PLOT.format(split=split)), points,
      x_label='training wall time (minutes)' if by_time else 'training step',
      y_label=f'{split} NLL (nats)',
      title=(f'{first["dataset"]} {split}: importance-weighted NLL, K={first["num_samples"]}, '
             f'{first["num_examples"]} images'))
  return reports
