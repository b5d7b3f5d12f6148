"""Every reader of checkpoints checks them (docs/reliability.md): bin/reproduce's training check,
rows and curves, and bin/inspect (which takes --checkpoint like bin/eval), on a copy of the fixture
run with an intact ckpt-1 and a truncated ckpt-2."""

import os
import pathlib
import shutil
import subprocess
import sys

from absl import logging
import pytest

from vlae_tf import errors
from vlae_tf.experiments import inspection
from vlae_tf.experiments import reproduce
from vlae_tf.experiments import table_training
from vlae_tf.runs import checkpoints

REPO = str(pathlib.Path(__file__).resolve().parents[2])


@pytest.fixture
def damaged_run(run_dir):
  """The fixture run with ckpt-1 (a copy of ckpt-2's files) and ckpt-2 truncated."""
  for suffix in ('.index', '.data-00000-of-00001'):
    shutil.copy(os.path.join(run_dir, 'ckpt-2' + suffix), os.path.join(run_dir, 'ckpt-1' + suffix))
  with open(os.path.join(run_dir, 'checkpoint'), 'w') as f:
    f.write('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-1"\n'
            'all_model_checkpoint_paths: "ckpt-2"\n')
  with open(os.path.join(run_dir, 'ckpt-2.data-00000-of-00001'), 'r+b') as f:
    f.truncate(100)
  return run_dir


def test_reproduce_uses_the_intact_checkpoints_only(damaged_run, monkeypatch):
  warnings = []
  monkeypatch.setattr(logging, 'warning', lambda text, *args: warnings.append(text % args))
  # The training check: the damaged checkpoint at the budget is not "done"; bin/train moves it
  # aside and trains again.
  assert table_training.step_checkpoint(damaged_run, 2) == os.path.join(damaged_run, 'ckpt-1')
  assert any('ckpt-2 is damaged (its data file is truncated): left out (bin/train moves it '
             'aside and trains again)' in warning for warning in warnings), warnings
  # A row's evaluation of a damaged checkpoint is a one-line error, not TensorFlow's traceback.
  settings = reproduce.Settings(num_samples=2, max_examples=2, batch_size=2)
  with pytest.raises(errors.DamagedCheckpointError,
                     match=r'ckpt-2 is damaged \(its data file is truncated\); the intact '
                           r'checkpoints of .* are at steps 1\.'):
    reproduce.evaluate_run(damaged_run, os.path.join(damaged_run, 'ckpt-2'), settings)
  assert [path for path, _ in checkpoints.intact_run_checkpoints(damaged_run)] == [
      os.path.join(damaged_run, 'ckpt-1')]


def test_inspect_takes_a_checkpoint_and_checks_it(damaged_run):
  with pytest.raises(errors.DamagedCheckpointError, match=r'ckpt-2 is damaged'):
    inspection.inspect(damaged_run, checkpoint=2)
  with pytest.raises(errors.CheckpointNotFoundError, match=r'No checkpoint .*ckpt-7'):
    inspection.inspect(damaged_run, checkpoint='7')
  completed = subprocess.run([sys.executable, os.path.join(REPO, 'bin', 'inspect'), '--help'],
                             env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                             text=True, timeout=120, check=False)
  assert completed.returncode == 0 and '--checkpoint' in completed.stdout, completed.stdout
