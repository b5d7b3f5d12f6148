"""Checkpoints of a run directory: which exist, which are intact, and the newest intact one.

A checkpoint <model_dir>/ckpt-N is the pair ckpt-N.index (an sstable mapping each tensor to its
place, size and CRC32C) and ckpt-N.data-00000-of-00001 (the tensors' bytes). The `checkpoint`
state file (a text proto written by the CheckpointManager) names the latest one and the kept
ones. Damage after the save (a full disk, a bad copy, a storage fault) shows when every tensor
is read back: TensorFlow checks each tensor's CRC32C as it reads it. What each fault raises:

    data file truncated (0, 100 B, half)     IndexError: Read less bytes than requested
    data file zero-filled, one bit flipped   tf.errors.OpError: ... Checksum does not match ...
    data file missing                        tf.errors.OpError: ...data-00000-of-00001; No such
                                             file or directory
    .index missing                           tf.errors.NotFoundError: Unsuccessful
                                             TensorSliceReader constructor: Failed to find ...
    .index truncated, zero-filled, flipped   tf.errors.OpError: not an sstable (bad magic number)
      near its end (the sstable footer)
    .index with a bit flipped mid-file       tf.errors.OpError: Unable to read file (...index)
    bytes appended to the data file          nothing (every tensor is intact)

The state file: missing, or text that is not a CheckpointState, makes tf.train.latest_checkpoint
return None (as if the run had no checkpoint); binary garbage raises UnicodeDecodeError; an empty
file raises ValueError; a latest checkpoint whose files are gone gives None. So the list of
checkpoints is rebuilt from the files present whenever the state file cannot be trusted.

Readers (eval, sample, export, inspect, compress, vlae_tf.load, bin/reproduce's evaluations) take
`latest_checkpoint` or `resolve_checkpoint`; curves and bin/reproduce list a run's intact
checkpoints, oldest first, with `intact_run_checkpoints` (`run_checkpoints` lists the damaged ones
too: for their times only), and name them by `checkpoint_step`; `train` takes `prepare_resume`,
which moves damaged checkpoints to <model_dir>/damaged/ (never deleting).
"""

import contextlib
import glob
import json
import os
import re
import time

from absl import logging
import tensorflow as tf

from vlae_tf import errors
from vlae_tf import files

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
    raise errors.CheckpointNotFoundError(f'No such run directory: {model_dir}')
  path, damaged, checkpoints = newest_intact_checkpoint(model_dir)
  if not checkpoints.paths:
    raise errors.CheckpointNotFoundError(
        f'No checkpoint in {model_dir}: train first (bin/train --model_dir={model_dir} ...) or '
        'pass the --model_dir of a run that has written a checkpoint.')
  if path is None:
    raise errors.DamagedCheckpointError(
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
    raise errors.CheckpointNotFoundError(
        f'No checkpoint {path} (no {os.path.basename(path)}.index or data file); '
        f'{_checkpoints_of(model_dir)}')
  damage = checkpoint_damage(path)
  if damage:
    raise errors.DamagedCheckpointError(f'Checkpoint {path} is damaged ({damage}); '
                                        f'{_checkpoints_of(model_dir)}')
  return path


def run_checkpoints(model_dir):
  """[(checkpoint prefix, unix time it was written)] of a run, oldest first.

  The checkpoints the CheckpointManager still keeps (`train.max_checkpoints_to_keep`), from its
  state file, or from the checkpoint files present when that file is missing or damaged
  (`CheckpointList`). Damaged checkpoints are listed too: `intact_run_checkpoints`
  leaves them out.
  """
  listed = CheckpointList(model_dir)
  if not listed.paths:
    latest_checkpoint(model_dir)  # Raises the error that says what to do.
  return [(path, listed.timestamp(path)) for path in reversed(listed.paths)]


def intact_run_checkpoints(model_dir, left_out='left out of the curve'):
  """`run_checkpoints` without the damaged ones, each named in a one-line warning (`left_out`
  says what that costs)."""
  kept = []
  for path, written in run_checkpoints(model_dir):
    damage = checkpoint_damage(path)
    if damage:
      logging.warning('Checkpoint %s is damaged (%s): %s.', path, damage, left_out)
    else:
      kept.append((path, written))
  return kept


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
  present = checkpoint_files(prefix)
  if not present:
    return None
  os.makedirs(target_dir, exist_ok=True)
  base = os.path.basename(prefix)
  new_base, copy = base, 0
  while any(os.path.exists(os.path.join(target_dir, new_base + path[len(prefix):]))
            for path in present):
    copy += 1
    new_base = f'{base}.{copy}'  # An earlier damaged copy of the same step is kept too.
  for path in present:
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
      raise errors.DamagedCheckpointError(
          f'No intact checkpoint in {model_dir}: {_describe_damaged(damaged)}; moved the files to '
          f'{damaged_dir}/ (nothing was deleted). To start this run afresh, move {damaged_dir} '
          'elsewhere and rerun; or use a new --model_dir.')
    if damaged_files(model_dir):
      raise errors.DamagedCheckpointError(
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
