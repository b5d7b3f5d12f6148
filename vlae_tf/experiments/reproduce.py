"""The results harness behind bin/reproduce: train a group of experiments, evaluate them alike.

    bin/reproduce --table=mnist --train_steps=6000 --num_samples=128 --max_examples=1000
        --output_dir=results/mnist --data_dir=../shared/data

For every experiment (a gin file of gin/, or a named group of them, `TABLES`), in order:

1. Train in <output_dir>/runs/<experiment> with `bin/train` in a subprocess (its log in
   <output_dir>/<experiment>.log), resuming a run that exists and skipping one that has reached its
   step budget. With `train_steps`, every run of the table gets the same budget in steps (fair
   whatever else the machine does); without it, each follows its gin file's own schedule (the
   paper's, for GPUs). Checkpoints are kept about every 1/12 of the budget, for the curve.
2. Evaluate the checkpoint at the budget with the same split, the same evenly spread subset, the
   same K, the same seed and the same evaluation batch for every run: the importance-weighted
   NLL, -ELBO and KL (bits per image), and every image's values, so that differences between runs
   come with paired standard errors (same images, same noise):

       d_i = NLL_a(x_i) - NLL_b(x_i),   mean(d) +- std(d) / sqrt(N)

3. Evaluate every kept checkpoint up to the budget with a cheaper K and subset (the curve). With
   `select_split` (e.g. 'valid'), the curve is on that split and the row reports the checkpoint
   with the best curve NLL there (model selection, as the paper does on validation data).

It writes <output_dir>/results.json (settings, rows with per-image values, paired differences),
results.md (the table beside the paper's numbers) and nll_vs_steps.png (every run's NLL against
training steps). Evaluations are cached in the run directories (reproduce_*.json) under their
settings, so a second call retrains and re-evaluates nothing; with a time limit
(`--time_limit`), or stopped by a signal, the work done is kept and the same call goes on. One progress line for the whole table
goes to stderr (run, phase, ETA).

Wall time and images/s of a row count from the run's started.json to its checkpoint at the budget:
start-up and checkpointing included; a run stopped and resumed counts the pause too.
"""

import dataclasses
import json
import math
import os
import time
from typing import List, Optional, Sequence

import gin

from vlae_tf.data import datasets
from vlae_tf.evaluation import evaluator as evaluation
from vlae_tf.evaluation import pieces
from vlae_tf import code_version
from vlae_tf import files
from vlae_tf import time_limits
from vlae_tf.experiments import paper
from vlae_tf.evaluation import plots
from vlae_tf import errors
from vlae_tf.experiments import results_tables
from vlae_tf.experiments import table_training
from vlae_tf.runs import checkpoints
from vlae_tf.runs import directory
from vlae_tf.runs import run_config

# The paper's groups and numbers (vlae_tf/paper.py), under the names the harness always used.
TABLES = paper.TABLES
PAPER = paper.PAPER
PaperNumber = paper.PaperNumber
experiment_name = paper.experiment_name

RESULTS_JSON = 'results.json'
RESULTS_MD = 'results.md'
CURVE_PNG = 'nll_vs_steps.png'
_LOG2 = math.log(2.0)


Settings = table_training.Settings  # Re-exported: the settings of bin/reproduce.


def resolve_experiments(table: Optional[str], gin_files: Sequence[str]) -> List[str]:
  """The experiment gin files of `table` followed by `gin_files`, without repeats."""
  files = []
  if table:
    if table not in TABLES:
      raise errors.ReproduceError(f'Unknown --table {table!r}; expected one of '
                                  f'{", ".join(TABLES)}.')
    files += list(TABLES[table])
  files += list(gin_files or ())
  if not files:
    raise errors.ReproduceError('Nothing to reproduce: pass --table=NAME or --experiment=FILE.gin.')
  names = [experiment_name(path) for path in files]
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise errors.ReproduceError(f'Experiment(s) named twice: {", ".join(repeated)}; each run '
                                'directory is named after its gin file.')
  return files


def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def _evaluation_cache(run_dir: str, kind: str, settings: Settings, num_samples, max_examples,
                      split=None):
  subset = 'all' if max_examples is None else str(max_examples)
  # An image's noise depends on its index and the seed only (evaluator.py): the batch size is not
  # part of the key.
  return os.path.join(run_dir, f'reproduce_{kind}_{split or settings.split}_k{num_samples}_'
                               f'n{subset}_seed{settings.seed}.json')


def evaluate_run(run_dir: str, checkpoint: str, settings: Settings, time_limit=None) -> dict:
  """The row's evaluation of `checkpoint` (cached): report + per-image nll, elbo, kl (nats).

  In pieces: stopped by a signal or by `time_limit`, it keeps the images done beside the cache
  (<cache>.partial.json) and the next call continues (evaluation/pieces.py).
  """
  path = _evaluation_cache(run_dir, 'eval', settings, settings.num_samples or 'default',
                           settings.max_examples)
  if os.path.exists(path):
    cached = _read_json(path)
    if cached['report']['step'] == checkpoints.checkpoint_step(checkpoint):
      return cached
  # Same split, subset, K and seed for every run: the same images and the same noise, so
  # per-image differences between runs give paired standard errors.
  evaluator = evaluation.CheckpointEvaluator(
      run_dir, settings.split, settings.num_samples, settings.max_examples, settings.batch_size,
      settings.data_dir, None, settings.seed, None, per_example=True,
      checkpoint=checkpoint)  # Checked: a damaged one is a one-line error naming the intact ones.
  report, per_image = pieces.evaluate_in_pieces(
      evaluator, evaluator.checkpoint, path[:-len('.json')] + '.partial.json', time_limit)
  if report.get('partial'):  # Ctrl-C in-process: the images done are kept for the next call.
    raise KeyboardInterrupt
  result = {'report': report,
            'per_image': {key: [round(float(v), 4) for v in values]
                          for key, values in per_image.items() if key in ('nll', 'elbo', 'kl')}}
  files.atomic_write_json(path, result)
  return result


def curve_run(run_dir: str, steps: int, settings: Settings, split: str,
              time_limit=None) -> List[dict]:
  """NLL on `split` of every kept checkpoint up to `steps`, the curve's K and subset (cached
  after every checkpoint: stopped before `time_limit`, the next call goes on)."""
  path = _evaluation_cache(run_dir, 'curve', settings, settings.curve_num_samples,
                           settings.curve_max_examples, split)
  cached = {int(step): report for step, report in
            (_read_json(path).items() if os.path.exists(path) else [])}
  todo = [checkpoint for checkpoint, _ in checkpoints.intact_run_checkpoints(run_dir)
          if checkpoints.checkpoint_step(checkpoint) <= steps and
          checkpoints.checkpoint_step(checkpoint) not in cached]
  if todo:
    evaluator = evaluation.CheckpointEvaluator(
        run_dir, split, settings.curve_num_samples, settings.curve_max_examples,
        settings.batch_size, settings.data_dir, None, settings.seed, None)
    estimate = time_limits.EstimatedWork(first_write=1.0)
    for index, checkpoint in enumerate(todo):
      if time_limits.stop_before(time_limit, estimate):
        raise time_limits.limit_reached(
            time_limit, f'the curve of {run_dir}: {index} of {len(todo)} checkpoints left '
            f'evaluated, kept in {path}')
      began = time.time()
      report = evaluator(checkpoint, progress=False)
      estimate.record_unit(time.time() - began)
      cached[report['step']] = report
      files.atomic_write_json(path, {str(k): v for k, v in sorted(cached.items())})
  return [cached[step] for step in sorted(cached) if step <= steps]


def _train_seconds(run_dir: str, checkpoint: str) -> Optional[float]:
  """From the run's started.json to the time `checkpoint` was written."""
  started = directory.run_start_time(run_dir)
  written = dict(checkpoints.run_checkpoints(run_dir)).get(checkpoint)
  if started is None or written is None:
    return None
  return written - started


def _run_facts(run_dir: str) -> dict:
  """Seed, batch size and dataset from the run's config.gin; commit from its record."""
  run_config.load_run_config(run_dir)
  try:
    facts = {'seed': int(table_training.query(gin.query_parameter('train.seed'))),
             'batch_size': int(table_training.query(gin.query_parameter('train.batch_size'))),
             'dataset': run_config.run_dataset()}
  finally:
    gin.clear_config()
  record = os.path.join(run_dir, table_training.RUN_RECORD)
  facts['commit'] = _read_json(record).get('commit') if os.path.exists(record) else None
  return facts


def reproduce(output_dir: str, gin_files: Sequence[str], settings: Settings,
              stream=None, time_limit=None) -> dict:
  """Trains, evaluates and tabulates `gin_files` into `output_dir` (see the module docstring).

  With `time_limit` (a `time_limits.TimeLimit`), every training, curve and evaluation stops
  before it, its state kept; the same call continues.

  Returns:
    The content of results.json.

  Raises:
    errors.TimeLimitReached: stopped before `time_limit`.
  """
  for flag, split in (('split', settings.split), ('select_split', settings.select_split)):
    if split is not None and split not in datasets.SPLITS:
      raise errors.ReproduceError(f'--{flag}={split} is not a split; expected one of '
                                  f'{", ".join(datasets.SPLITS)}.')
  if settings.select_split is not None and settings.select_split == settings.split:
    raise errors.ReproduceError(f'--select_split={settings.select_split} is the split the table '
                                'reports: select the model on another split (e.g. valid).')
  os.makedirs(output_dir, exist_ok=True)
  names = [experiment_name(path) for path in gin_files]
  progress = table_training.TableProgress(names, stream)
  targets = {}
  for gin_file, name in zip(gin_files, names):
    run_dir = os.path.join(output_dir, 'runs', name)
    targets[name] = table_training.target_steps(gin_file, settings, run_dir)
    done = table_training.step_checkpoint(run_dir, targets[name])
    progress.remaining_steps[name] = targets[name] - (0 if done is None else
                                                      checkpoints.checkpoint_step(done))
  rows = []
  for index, (gin_file, name) in enumerate(zip(gin_files, names)):
    run_dir = os.path.join(output_dir, 'runs', name)
    steps = targets[name]
    trained = table_training.train_run(
        gin_file, run_dir, os.path.join(output_dir, f'{name}.log'), settings, steps, progress,
        index, time_limit)
    checkpoint = table_training.step_checkpoint(run_dir, steps)
    if checkpoint is None or checkpoints.checkpoint_step(checkpoint) != steps:
      found = 'none' if checkpoint is None else f'step {checkpoints.checkpoint_step(checkpoint)}'
      raise errors.ReproduceError(f'{run_dir} has no checkpoint at step {steps}, the budget (at or '
                                  f'before it: {found}): it was trained past the budget without '
                                  'keeping that checkpoint, or training stopped early; use another '
                                  '--output_dir or the budget the run was trained with.')
    began = time.time()
    curve_split = settings.select_split or settings.split
    progress.show(index, f'evaluating every checkpoint on {curve_split}', force=True)
    curve = curve_run(run_dir, steps, settings, curve_split, time_limit)
    if settings.select_split:  # model selection: the checkpoint with the best curve NLL
      best = min(curve, key=lambda report: report['nll_nats'])
      checkpoint = {checkpoints.checkpoint_step(path): path
                    for path, _ in checkpoints.run_checkpoints(run_dir)}[best['step']]
    progress.show(index, f'evaluating step {checkpoints.checkpoint_step(checkpoint)}', force=True)
    result = evaluate_run(run_dir, checkpoint, settings, time_limit)
    if time.time() - began > 1.0:
      progress.seconds_per_evaluation = time.time() - began
    progress.remaining_evaluations.discard(name)
    report = result['report']
    facts = _run_facts(run_dir)
    seconds = _train_seconds(run_dir, checkpoint)
    paper = PAPER.get(name, PaperNumber(''))
    rows.append({
        'experiment': name,
        'gin_file': gin_file,
        'paper_row': paper.row,
        'paper_nll': paper.nll,
        'paper_unit': paper.unit,
        'paper_kl_bits': None if paper.kl_nats is None else paper.kl_nats / _LOG2,
        'nll_nats': report['nll_nats'],
        'nll_stderr_nats': report['nll_stderr_nats'],
        'bits_per_dim': report['bits_per_dim'],
        'nll_bound_nats': report['nll_bound_nats'],
        'nll_bound_bits_per_dim': report['nll_bound_bits_per_dim'],
        'kl_bits': report['kl_bits'],
        'reconstruction_nats': report['reconstruction_nats'],
        'num_samples': report['num_samples'],
        'num_examples': report['num_examples'],
        'split': report['split'],
        'steps': report['step'],
        'trained_steps': steps,
        'selected_on': settings.select_split,
        'train_seconds': seconds,
        'images_per_second': (None if not seconds else
                              report['step'] * facts['batch_size'] / seconds),
        'trained_now': trained,
        'run_dir': run_dir,
        'curve': [{'step': r['step'], 'nll_nats': r['nll_nats'],
                   'nll_stderr_nats': r['nll_stderr_nats']} for r in curve],
        'per_image': result['per_image'],
        **facts,
    })
    progress.show(index, f'done: NLL {report["nll_nats"]:.2f} nats', force=True)
  differences = []
  for i, first in enumerate(rows):
    for second in rows[i + 1:]:
      if any(first[key] != second[key] for key in ('dataset', 'split', 'num_examples')):
        continue  # not the same images: no paired comparison
      differences.append({
          'first': first['experiment'], 'second': second['experiment'],
          'nll_nats': results_tables.paired_difference(first, second, 'nll'),
          'nll_bound_nats': results_tables.paired_difference(first, second, 'elbo'),
          'kl_nats': results_tables.paired_difference(first, second, 'kl')})
      # elbo differences have the sign of -(-ELBO) differences: flip to -ELBO.
      bound = differences[-1]['nll_bound_nats']
      bound['mean'] = -bound['mean']
  results = {'settings': dataclasses.asdict(settings), 'commit_of_table': code_version.commit(),
             'written_unix_time': time.time(), 'rows': rows, 'differences': differences}
  results['settings']['gin_files'] = list(settings.gin_files)
  results['settings']['gin_params'] = list(settings.gin_params)
  files.atomic_write_json(os.path.join(output_dir, RESULTS_JSON), results)
  files.atomic_write_text(os.path.join(output_dir, RESULTS_MD), results_tables.results_markdown(results))
  series = {row['experiment']: [(p['step'], p['nll_nats'], p['nll_stderr_nats'])
                                for p in row['curve']] for row in rows}
  curve_split = settings.select_split or settings.split
  plots.write_lines_plot(
      os.path.join(output_dir, CURVE_PNG), series, x_label='training step',
      y_label=f'{curve_split} NLL (nats)',
      title=(f'{curve_split} NLL, K={settings.curve_num_samples}, '
             f'{settings.curve_max_examples or "all"} images per point'))
  return results
