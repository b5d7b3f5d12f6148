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
from vlae_tf import accelerators
from vlae_tf.runs import checkpoints
from vlae_tf.data import datasets
from vlae_tf import distribution
from vlae_tf import files
from vlae_tf.models import objectives
from vlae_tf.evaluation import pieces
from vlae_tf.evaluation import plots
from vlae_tf import progress as progress_lib
from vlae_tf.runs import directory
from vlae_tf.runs import opening
from vlae_tf import signals
from vlae_tf import seeds
from vlae_tf import time_limits

DEFAULT_NUM_SAMPLES = {'binary': 4096, '8bit': 512}
# bin/eval's protocols: `quick` (its default) is an estimate in about a minute on a 2-core CPU
# (K=128 on 500 evenly spread images; the bound is looser than K=4096's by a few tenths of a nat
# on MNIST); `paper` is Chen et al.'s: DEFAULT_NUM_SAMPLES on every image of the split.
PROTOCOLS = {'quick': {'num_samples': 128, 'max_examples': 500},
             'paper': {'num_samples': None, 'max_examples': None}}
EVAL_SUMMARY_DIR = 'eval'  # <model_dir>/eval: TensorBoard events of every evaluation's NLL
REPORT_FILE = 'eval_{split}.json'
PER_IMAGE_FILE = 'eval_{split}_per_image.json'  # every image's values of eval_<split>.json
CURVE_FILE = 'eval_{split}_curve.json'
HISTORY_FILE = 'eval_history.jsonl'
CURVE_PLOT = 'eval_{split}_curve.png'


class CheckpointEvaluator:
  """A run's averaged model and a traced evaluation step, reusable across its checkpoints.

  The importance samples of an image are a function of (seed, the image's index in the split)
  only (`DistributedEvaluator` with `per_image_seeds`): the same image gets the same noise in
  every subset, batch size, replica count and piece of an evaluation, so that an evaluation can
  stop and continue (pieces.py) and two checkpoints or runs evaluated alike can be
  compared image by image.

  With `per_example`, calls also return every image's values (see `__call__`).

  `jit_compile` (None: the run's `train.jit_compile`, 'auto' when unbound) compiles every
  replica's statistics, the importance-weighted log-likelihood included, with XLA
  (accelerators.py): on by default on GPUs, off on CPUs. XLA draws its stateless random
  numbers with its own algorithm, so the importance samples (not their distribution) differ
  between XLA and no XLA.
  """

  def __init__(self, model_dir, split, num_samples, max_examples, batch_size, data_dir,
               chunk_size, seed, strategy, per_example=False, checkpoint=None, jit_compile=None,
               precision=None):
    # The newest intact checkpoint, or `checkpoint` if given; fails clearly when there is none.
    # The default strategy is made after the run's config is parsed (it may bind its devices).
    run = opening.open_run(model_dir, checkpoint, strategy=strategy or distribution.make_strategy,
                           precision=precision)
    self.strategy = run.strategy
    self.checkpoint = run.checkpoint_path
    self.dataset = run.needs_dataset()
    self.model = run.model
    with self.strategy.scope():
      self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    model = self.model
    self.split = split
    self.seed = int(seed)
    self.num_samples = int(num_samples or DEFAULT_NUM_SAMPLES[model.data_kind])
    num_replicas = self.strategy.num_replicas_in_sync
    self.batch_size = -(-int(batch_size) // num_replicas) * num_replicas
    self._images = datasets.load(self.dataset, split, data_dir=data_dir)
    self._size = batching.cardinality(self._images)
    self.total = len(batching.subset_indices(self._size, max_examples))
    self.max_examples = max_examples
    likelihood_kwargs = {} if chunk_size is None else {'chunk_size': int(chunk_size)}
    num_samples = self.num_samples

    def statistics(x, image_seeds):
      outputs = model.elbo(x, seeds.fold_in_each(image_seeds, 0), training=False)
      return {
          'log_likelihood': model.log_likelihood(x, num_samples,
                                                 seeds.fold_in_each(image_seeds, 1),
                                                 **likelihood_kwargs),
          'elbo': outputs['elbo'],
          'kl': outputs['kl'],
          'log_px_z': outputs['log_px_z'],
      }

    self.per_example = per_example
    if jit_compile is None:  # The run's own setting (config.gin, parsed by open_run).
      jit_compile = accelerators.bound_jit_compile()
    self.jit_compile = accelerators.use_xla(jit_compile, self.strategy)
    accelerators.log_start(self.strategy, getattr(model, 'precision', None), jit_compile)
    self._evaluator = distribution.DistributedEvaluator(
        self.strategy, statistics, seed=seed, salt=seeds.EVALUATION_SALT, per_example=True,
        per_image_seeds=True, jit_compile=self.jit_compile)
    self.step = None

  def restore(self, checkpoint):
    """Restores `checkpoint`'s averaged weights; returns its step."""
    status = tf.train.Checkpoint(step=self._step, averaged_model=self.model).restore(checkpoint)
    status.expect_partial()
    status.assert_existing_objects_matched()
    self.step = int(self._step.numpy())
    return self.step

  def settings(self, checkpoint):
    """What must be equal for two pieces of one evaluation (pieces.py)."""
    return {'dataset': self.dataset, 'split': self.split, 'num_samples': self.num_samples,
            'num_images': self.total, 'seed': self.seed,
            'checkpoint': os.path.basename(checkpoint), 'step': self.step,
            'precision': self.model.precision}

  def batches(self, start=0):
    """Per-image values of the subset's images from its element `start` on, batch by batch:
    {key: float64 [n]} for each of VALUE_KEYS (nats)."""
    pairs = batching.indexed_subset(self._images, self.max_examples, self._size, start)
    for index, batch in enumerate(batching.padded_indexed_batches(pairs, self.batch_size)):
      _, values = self._evaluator.evaluate_batch(batch, index)
      yield {'nll': -values['log_likelihood'], 'elbo': values['elbo'], 'kl': values['kl'],
             'log_px_z': values['log_px_z']}

  def __call__(self, checkpoint, progress=True):
    """The report of one checkpoint (restored into the same model), in one go.

    With `per_example`, returns (report, {'nll', 'elbo', 'kl', 'log_px_z': float64 [N]}), the
    values of every image in subset order (nats).
    """
    began = time.time()
    self.restore(checkpoint)
    bar = self.progress_bar() if progress else None
    parts = []
    for values in self.batches():
      parts.append(values)
      if bar is not None:
        bar(sum(len(part['nll']) for part in parts))
    per_image = pieces.concatenate(parts)
    report = self.report(per_image, checkpoint, time.time() - began)
    return (report, per_image) if self.per_example else report

  def progress_bar(self, done=0):
    logging.info('Evaluating %s %s, step %d: %d images, K=%d importance samples.',
                 self.dataset, self.split, self.step, self.total, self.num_samples)
    return progress_lib.ProgressBar(self.total, f'eval {self.split} K={self.num_samples} '
                                    f'step {self.step}', done=done)

  def report(self, per_image, checkpoint, seconds, partial=False):
    """The report dict of per-image values (plain floats and ints)."""
    count = len(per_image['nll'])
    num_dims = int(self.model.num_dims)
    means = {key: float(np.mean(per_image[key])) for key in pieces.VALUE_KEYS}
    nll = means['nll']
    report = {
        'dataset': self.dataset,
        'split': self.split,
        'step': self.step,
        'checkpoint': checkpoint,
        'num_examples': count,
        'num_samples': self.num_samples,
        'num_dims': num_dims,
        'seed': self.seed,
        'precision': self.model.precision,
        'nll_nats': nll,
        'nll_stderr_nats': float(np.std(per_image['nll']) / np.sqrt(count)),
        'bits_per_dim': float(objectives.bits_per_dim(nll, num_dims)),
        'elbo_nats': means['elbo'],
        'nll_bound_nats': -means['elbo'],
        'nll_bound_bits_per_dim': float(objectives.bits_per_dim(-means['elbo'], num_dims)),
        'kl_nats': means['kl'],
        'kl_bits': means['kl'] / float(np.log(2.0)),
        'reconstruction_nats': -means['log_px_z'],
        'seconds': seconds,
    }
    if partial:
      report['partial'] = True  # stopped: the images done so far
      report['num_examples_planned'] = int(self.total)
    return report


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
             checkpoint=None,
             time_limit=None,
             jit_compile=None,
             precision=None):
  """Evaluates a checkpoint of a run with its averaged weights; writes eval_<split>.json.

  Rebuilds the model from <model_dir>/config.gin (this clears any gin config already parsed).
  Evaluates the newest intact checkpoint (a damaged newer one is named in a warning), or
  `checkpoint`. Stopped by a signal or by `time_limit`, it keeps the images done in
  <model_dir>/eval_<split>_k<K>_n<N>_seed<S>.partial.json, and the same call continues from there
  (pieces.py).

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
    time_limit: a `time_limits.TimeLimit` (bin/eval's --time_limit), or None.
    jit_compile: XLA for the statistics: 'auto', True, False, or None (the run's
      `train.jit_compile`).
    precision: the precision to compute in (`opening.open_run`); None: the run's. Part of the
      settings that every piece of the evaluation must share.

  Returns:
    A dict with nll_nats, nll_stderr_nats, bits_per_dim, elbo_nats, nll_bound_nats,
    nll_bound_bits_per_dim, kl_nats, kl_bits, reconstruction_nats, num_examples, num_samples,
    num_dims, dataset, split, step, checkpoint, seed, seconds, pieces. Every image's values are
    in <model_dir>/eval_<split>_per_image.json.

  Raises:
    errors.TimeLimitReached: stopped before `time_limit`, the images done kept.
  """
  evaluator = CheckpointEvaluator(model_dir, split, num_samples, max_examples, batch_size,
                                  data_dir, chunk_size, seed, strategy, checkpoint=checkpoint,
                                  jit_compile=jit_compile, precision=precision)
  path = os.path.join(model_dir, pieces.progress_file(split, evaluator.num_samples,
                                                      evaluator.total, evaluator.seed))
  report, per_image = pieces.evaluate_in_pieces(evaluator, evaluator.checkpoint, path, time_limit,
                                                progress)
  if report.get('partial'):  # Ctrl-C in-process: kept apart, not recorded as the split's result.
    return report
  files.atomic_write_json(os.path.join(model_dir, PER_IMAGE_FILE.format(split=split)), {
      'settings': evaluator.settings(evaluator.checkpoint),
      'values': {key: per_image[key].tolist() for key in pieces.VALUE_KEYS}})
  files.atomic_write_json(os.path.join(model_dir, REPORT_FILE.format(split=split)), report)
  append_history(model_dir, report)
  write_summary(model_dir, report)
  return report


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
                   progress=True,
                   time_limit=None,
                   jit_compile=None,
                   precision=None):
  """Evaluates every kept checkpoint of a run: test NLL against training time.

  Same arguments as `evaluate` (but `checkpoint`), `jit_compile` and `precision` included. Damaged checkpoints
  are left out, each named in a one-line warning. The training time of a checkpoint is the time it
  was written minus the start of the run (<model_dir>/started.json, written by a fresh `train`):
  it counts everything the training process did, start-up, data init and checkpointing included,
  and for a resumed run also the time it was stopped.

  Writes eval_<split>_curve.json (the list of reports, each with `checkpoint_time` and
  `train_seconds`) and eval_<split>_curve.png (NLL with standard errors against minutes, or
  against steps when the start time is unknown or the run was trained in pieces), both
  atomically.

  A curve stopped by a signal or by `time_limit` (before a checkpoint that would end after it)
  keeps the checkpoints evaluated; the same call evaluates the others (those in the curve file
  with the same K, images and seed are not evaluated again).

  Returns:
    The list of reports, oldest checkpoint first.

  Raises:
    errors.TimeLimitReached: stopped before `time_limit`.
  """
  evaluator = CheckpointEvaluator(model_dir, split, num_samples, max_examples, batch_size,
                                  data_dir, chunk_size, seed, strategy,
                                  jit_compile=jit_compile, precision=precision)
  started = directory.run_start_time(model_dir)
  reports = []
  curve_path = os.path.join(model_dir, CURVE_FILE.format(split=split))
  done = {}  # checkpoint file name: report, of an earlier piece with the same settings
  if os.path.exists(curve_path):
    try:
      with open(curve_path) as f:
        done = {os.path.basename(report['checkpoint']): report for report in json.load(f)
                if (report['num_samples'], report['num_examples'], report.get('seed'),
                    report.get('precision', 'float32')) ==
                (evaluator.num_samples, evaluator.total, evaluator.seed,
                 evaluator.model.precision)}
    except (OSError, ValueError, KeyError, TypeError):
      done = {}  # unreadable: evaluated again, and rewritten
  estimate = time_limits.EstimatedWork(first_write=1.0)

  def stop(signum):  # In signals.py's watcher thread.
    return (f'interrupted by {signals.signal_name(signum)} during the curve: '
            + (f'the {len(reports)} checkpoint(s) evaluated before are in {curve_path}'
               if reports else 'no checkpoint was evaluated, nothing written'))

  kept = checkpoints.intact_run_checkpoints(model_dir)
  with signals.when_signalled(stop):
    for index, (checkpoint, written) in enumerate(kept):
      if os.path.basename(checkpoint) in done:
        reports.append(done[os.path.basename(checkpoint)])
        continue
      if time_limits.stop_before(time_limit, estimate):
        raise time_limits.limit_reached(
            time_limit, f'{index} of {len(kept)} checkpoints evaluated, kept in {curve_path}')
      began = time.time()
      report = evaluator(checkpoint, progress=progress)
      estimate.record_unit(time.time() - began)
      report['checkpoint_time'] = written
      report['train_seconds'] = None if started is None else written - started
      # After every checkpoint, so that an interrupted curve keeps what it measured.
      files.atomic_write_json(curve_path, reports + [report])
      reports.append(report)
  # Wall time measures training only for a run trained in one piece: between pieces it stood.
  by_time = started is not None and len(directory.read_pieces(model_dir)) <= 1
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
