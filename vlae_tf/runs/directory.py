"""The run directory (model_dir): its files, and readying it for a training process.

    config.gin              every binding the run was started with (run_config.py)
    operative_config.gin    the bindings actually used (written after the first step)
    started.json            when the first (fresh) train call began: the origin of training time
    pieces.jsonl            one line per training process: steps, wall time, CPU, how it ended
    data_source.json        the dataset and where its files come from (data/sources.py)
    model_summary.json      trainable parameters per part and the decoder window (models/summary.py)
    ckpt-<step>.*           checkpoints (tf.train.CheckpointManager; checkpoints.py)
    checkpoint              the CheckpointManager's list of kept checkpoints
    damaged/                damaged checkpoints that `train` moved aside (never deleted)
    events.out.tfevents.*   the hparams dashboard's settings of the run (training/summaries.py)
    train/, validation/     TensorBoard summaries (training/summaries.py)

Readers open a run with `opening.open_run`; `train` readies one with `prepare_training_run`.
Every error is one of the family in errors.py.
"""

import glob
import json
import os
import shutil
import time

from absl import logging

from vlae_tf import code_version
from vlae_tf import errors
from vlae_tf import files
from vlae_tf import time_limits
from vlae_tf.runs import checkpoints
from vlae_tf.runs import run_config

OPERATIVE_CONFIG_FILE = 'operative_config.gin'
STARTED_FILE = 'started.json'
# One line per training process (a piece of the run): its steps, wall time, machine and how it
# ended (`record_piece`): the provenance of a run trained in pieces.
PIECES_FILE = 'pieces.jsonl'
MODEL_SUMMARY_FILE = 'model_summary.json'  # parameters per part, the decoder's window


def run_start_time(model_dir):
  """The unix time at which the run's first `train` call began, or None if not recorded."""
  path = os.path.join(model_dir, STARTED_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return float(json.load(f)['unix_time'])


def check_model_dir_creatable(model_dir):
  """Raises the RunError of `prepare_model_dir` without creating anything: for the checks that
  come before anything is written (the data and the model are loaded first).

  The nearest existing ancestor of `model_dir` must be a directory we can write to (or
  `model_dir` itself a writable directory)."""
  path = os.path.abspath(model_dir)
  while not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  if path != os.path.abspath(model_dir) and not os.path.isdir(path):
    raise errors.RunError(
        f'Cannot create --model_dir {model_dir}: {path} is not a directory; choose a '
        'directory you can write to.')
  if os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
    raise errors.RunError(
        f'Cannot create --model_dir {model_dir}: {path} is not writable; choose a '
        'directory you can write to.')
  if path == os.path.abspath(model_dir) and not os.path.isdir(path):
    raise errors.RunError(f'--model_dir {model_dir} is not a directory.')


def prepare_model_dir(model_dir):
  """Creates model_dir if needed and checks that it is a writable directory (else RunError)."""
  try:
    os.makedirs(model_dir, exist_ok=True)
  except OSError as error:
    raise errors.RunError(
        f'Cannot create --model_dir {model_dir}: {error.strerror or error}; choose a '
        'directory you can write to.') from None
  if not os.path.isdir(model_dir):
    raise errors.RunError(f'--model_dir {model_dir} is not a directory.')
  if not os.access(model_dir, os.W_OK | os.X_OK):
    raise errors.RunError(
        f'--model_dir {model_dir} is not writable; choose a directory you can write '
        'to or fix its permissions.')


def prepare_training_run(model_dir, config, chief, began):
  """Checks and readies model_dir for `loop.train`; returns the checkpoint to resume from.

  The chief refuses a model_dir whose checkpoints were written with other bindings
  (`check_resumable`), removes what an interrupted save left, moves damaged checkpoints aside
  (`checkpoints.prepare_resume`, before the CheckpointManager reads the state file), and writes
  config.gin, and started.json for a fresh run. Other workers only look for the newest intact
  checkpoint (the chief's directory is theirs to read, not to change).

  Args:
    model_dir: the run directory (created if needed).
    config: the run's gin config, `gin.config_str()`: written to config.gin.
    chief: whether this task writes the run directory (`distribution.is_chief`).
    began: the unix time the train call began (a fresh run's clock starts there).

  Returns:
    The path of the checkpoint to resume from, or None for a fresh run.

  Raises:
    RunError, IncompatibleRunError, DamagedConfigError, DamagedCheckpointError.
  """
  prepare_model_dir(model_dir)
  # The commit as the piece starts (cached): a commit made while it trains is not the code it ran.
  code_version.commit()
  if not chief:
    latest, _, _ = checkpoints.newest_intact_checkpoint(model_dir)
    return latest
  run_config.check_resumable(model_dir, config)
  remove_partial_checkpoints(model_dir)
  latest = checkpoints.prepare_resume(model_dir)
  files.atomic_write_text(os.path.join(model_dir, run_config.CONFIG_FILE), config)
  if latest is None:  # A fresh run: its clock starts now.
    files.atomic_write_text(os.path.join(model_dir, STARTED_FILE),
                            json.dumps({'unix_time': began}) + '\n')
  return latest


def record_piece(model_dir, began, first_step, last_step, ended, **facts):
  """Appends this training process's line to <model_dir>/pieces.jsonl.

  Args:
    model_dir: the run directory.
    began: the unix time the process's train call began.
    first_step, last_step: the step it resumed from (0 for a fresh run) and the step it saved.
    ended: 'finished', 'time limit', the signal's name, or 'failure'.
    **facts: more keys (precision, replicas, ...).
  """
  line = dict(started_unix_time=round(began, 1), wall_seconds=round(time.time() - began, 1),
              first_step=int(first_step), last_step=int(last_step),
              steps=int(last_step) - int(first_step), cpu=time_limits.cpu_name(), ended=ended,
              commit=code_version.commit(), **facts)
  files.append_line(os.path.join(model_dir, PIECES_FILE), json.dumps(line, sort_keys=True) + '\n')


def read_pieces(model_dir):
  """The lines of <model_dir>/pieces.jsonl (oldest first), or []."""
  path = os.path.join(model_dir, PIECES_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def remove_partial_checkpoints(model_dir):
  """Deletes what a save killed midway leaves behind: ckpt-N_temp* directories.

  TensorFlow writes a checkpoint's shards to <prefix>_temp*/ before merging them into
  <prefix>.index / <prefix>.data-*, and the CheckpointManager updates the `checkpoint` state file
  (atomically) only after that, so a kill mid-save leaves the previous checkpoint as the latest;
  the partial files of the interrupted one are overwritten by the next save of the same step.
  """
  for path in glob.glob(os.path.join(glob.escape(model_dir), 'ckpt-*_temp*')):
    logging.info('Removing %s, left by an interrupted checkpoint save.', path)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)
