"""An evaluation in pieces: stopped by a signal or a time limit, continued by the same call.

A long evaluation (K = 1024 importance samples on 10,000 images is hours on a 2-core CPU) keeps
every image's values in a progress file, <model_dir>/eval_<split>_k<K>_n<N>_seed<S>.partial.json:

    {"settings": {dataset, split, num_samples, num_images, seed, checkpoint, step},
     "report": the report of the images done so far (partial),
     "pieces": [{images, wall_seconds, cpu, commit, batch_size, replicas}, ...], one per process
     "values": {"nll": [...], "elbo": [...], "kl": [...], "log_px_z": [...]}}   nats, subset order

An image's importance samples are a function of the seed and its index in the split only
(evaluator.CheckpointEvaluator), so the values of a continued evaluation equal those of one
uninterrupted run. The file name carries K, the number of images and the seed: evaluations with
other settings never mix; one of another checkpoint or dataset is refused.
"""

import json
import os
import time

from absl import logging
import numpy as np

from vlae_tf import code_version
from vlae_tf import errors
from vlae_tf import files
from vlae_tf import time_limits
from vlae_tf import signals

# An evaluation stopped before its end: its settings and every image's values so far.
PROGRESS_FILE = 'eval_{split}_k{k}_n{n}_seed{seed}.partial.json'
PROGRESS_SECONDS = 30.0  # the progress file is written at least this often
VALUE_KEYS = ('nll', 'elbo', 'kl', 'log_px_z')  # the per-image values of an evaluation (nats)


def progress_file(split, num_samples, num_images, seed):
  """The progress file of an evaluation: one per split, K, number of images and seed, so that
  evaluations with other settings never mix (the checkpoint is checked inside)."""
  return PROGRESS_FILE.format(split=split, k=num_samples, n=num_images, seed=seed)


def concatenate(parts):
  """{key: float64 [N]} of a list of per-batch value dicts."""
  return {key: np.concatenate([part[key] for part in parts]) if parts else np.zeros([0])
          for key in VALUE_KEYS}


def evaluate_in_pieces(evaluator, checkpoint, path, time_limit=None, progress=True):
  """Evaluates `checkpoint` with `evaluator`, continuing the progress file `path` if there is one.

  The images done so far, with every image's values, are written atomically to `path` at least
  every `PROGRESS_SECONDS`, when a signal stops the process (signals.py's watcher thread) and
  before `time_limit` (a `time_limits.TimeLimit`); the same call continues after the last image
  written, with the same noise per image, so the pieces' values equal one uninterrupted run's (but
  for float round-off when the batch size or replica count changed between pieces). A progress
  file of another checkpoint, dataset or subset is refused in one line; a damaged one (unreadable,
  or values that do not fit its settings) is set aside, named, and the evaluation starts again.
  The file is removed once the evaluation is complete.

  Returns:
    (report, per_image): the report has `pieces`, one {images, wall_seconds, cpu, commit,
    batch_size, replicas} per process that worked on it; per_image is {key: float64 [N]} in subset
    order.
    After an in-process KeyboardInterrupt (Ctrl-C without the binaries' signal watcher), the
    report of the images done so far with `partial` and `progress_file`.

  Raises:
    errors.TimeLimitReached: the next batch would have ended after `time_limit`.
    errors.IncompatibleRunError: `path` holds an evaluation of another checkpoint or dataset.
  """
  began = time.time()
  evaluator.restore(checkpoint)
  settings = evaluator.settings(checkpoint)
  state = _read_progress(path, settings)
  parts = [{key: np.asarray(state['values'][key], np.float64) for key in VALUE_KEYS}]
  done = len(parts[0]['nll'])
  piece = {'images': 0, 'wall_seconds': 0.0, 'cpu': time_limits.cpu_name(),
           'commit': code_version.commit(), 'batch_size': evaluator.batch_size,
           'replicas': evaluator.strategy.num_replicas_in_sync}
  pieces = state['pieces'] + [piece]
  snapshot = (tuple(parts), 0)  # replaced whole after each batch: a consistent view for a signal

  def write():
    written_parts, images = snapshot
    piece.update(images=images, wall_seconds=round(time.time() - began, 1))
    values = concatenate(list(written_parts))
    files.atomic_write_json(path, {
        'settings': settings,
        'report': evaluator.report(values, checkpoint, sum(p['wall_seconds'] for p in pieces),
                                   partial=True),
        'pieces': pieces,
        'values': {key: values[key].tolist() for key in VALUE_KEYS}})
    return values

  def stop(signum):  # In signals.py's watcher thread, while a batch may be running.
    values = write()
    return (f'interrupted by {signals.signal_name(signum)} during the evaluation: '
            + _progress_line(len(values['nll']), evaluator, values, path))

  if done:
    logging.info('Continuing the evaluation in %s: %d of %d images done in %d piece(s).', path,
                 done, evaluator.total, len(state['pieces']))
  bar = evaluator.progress_bar(done) if progress else None
  estimate = time_limits.EstimatedWork(first_write=1.0)
  last_write = time.time()
  try:
    with signals.when_signalled(stop):
      batch_began = time.time()
      for values in evaluator.batches(done):
        parts.append(values)
        done += len(values['nll'])
        if snapshot[1]:  # The first batch of a process traces and compiles: not a measure.
          estimate.record_unit(time.time() - batch_began)
        snapshot = (tuple(parts), snapshot[1] + len(values['nll']))
        if bar is not None:
          bar(done)
        if done < evaluator.total and time_limits.stop_before(time_limit, estimate):
          values = write()
          raise time_limits.limit_reached(
              time_limit, _progress_line(done, evaluator, values, path))
        if time.time() - last_write >= PROGRESS_SECONDS:
          write()
          last_write = time.time()
        batch_began = time.time()
  except KeyboardInterrupt:  # In-process Ctrl-C: the images done so far, kept for the next call.
    values = write()
    report = evaluator.report(values, checkpoint, time.time() - began, partial=True)
    report['progress_file'] = path
    return report, values
  piece.update(images=snapshot[1], wall_seconds=round(time.time() - began, 1))
  per_image = concatenate(parts)
  report = evaluator.report(per_image, checkpoint, sum(p['wall_seconds'] for p in pieces))
  report['pieces'] = pieces
  if os.path.exists(path):
    os.remove(path)
  return report, per_image


def _progress_line(done, evaluator, values, path):
  mean = float(np.mean(values['nll'])) if done else float('nan')
  return (f'{done} of {evaluator.total} images done (NLL so far {mean:.3f} nats, '
          f'K={evaluator.num_samples}, step {evaluator.step}), kept in {path}')


def _read_progress(path, settings):
  """The progress file's {'values', 'pieces'}, or empty ones; see `evaluate_in_pieces`."""
  empty = {'values': {key: [] for key in VALUE_KEYS}, 'pieces': []}
  if not os.path.exists(path):
    return empty
  try:
    with open(path) as f:
      state = json.load(f)
    lengths = {len(state['values'][key]) for key in VALUE_KEYS}
    stored = state['settings']
    if (len(lengths) != 1 or lengths.pop() > stored['num_images']
        or not isinstance(state['pieces'], list)
        or not all(np.all(np.isfinite(state['values'][key])) for key in VALUE_KEYS)):
      raise ValueError('values that do not fit its settings')
  except (OSError, ValueError, KeyError, TypeError) as error:
    aside = f'{path}.damaged-{int(time.time())}'
    os.replace(path, aside)
    logging.warning('The evaluation\'s progress file %s was damaged (%s): set aside as %s; '
                    'starting the evaluation again.', path, error, aside)
    return empty
  differing = [f'{key} {stored.get(key)} there, {value} here' for key, value in settings.items()
               if stored.get(key) != value]
  if differing:
    same = []  # The flags that finish the stored evaluation.
    if stored.get('checkpoint') != settings['checkpoint']:
      same.append(f'--checkpoint={stored.get("step")}')
    if stored.get('precision', settings['precision']) != settings['precision']:
      same.append(f'--precision={stored.get("precision")}')
    raise errors.IncompatibleRunError(
        f'{path} holds {len(state["values"]["nll"])} of {stored.get("num_images")} images of an '
        f'evaluation of {stored.get("checkpoint")} ({"; ".join(differing)}): finish it with '
        f'{" ".join(same) or "its own settings"}, or remove the file to start this one.')
  return state
