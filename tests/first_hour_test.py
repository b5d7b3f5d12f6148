"""Issue 27, a new user's first hour: --help, early path and flag errors, a quiet console,
validated budgets and shapes, the run's recorded data source, results once on stdout, intervals
that scale with the budget. Subprocess tests reuse cli_test's helpers."""

import subprocess
import sys
import time

import pytest

from cli_test import BINARIES
from cli_test import REPO
from cli_test import run_binary


def _broken_tensorflow(tmp_path):
  """A path entry whose `tensorflow` cannot be imported: proves a binary did not load it."""
  broken = tmp_path / 'tensorflow'
  broken.mkdir(exist_ok=True)
  (broken / '__init__.py').write_text('raise ImportError("tensorflow was imported")\n')
  return [str(tmp_path)]


def test_help_exits_0_and_lists_configs_and_datasets(tmp_path):
  for name in BINARIES:
    completed = run_binary(name, '--help', python_path=_broken_tensorflow(tmp_path), timeout=60)
    assert completed.returncode == 0, (name, completed.stderr[-2000:])
    assert 'static_mnist' in completed.stdout and 'cifar10' in completed.stdout, name
    assert 'A shim' not in completed.stdout and 'usage: bin/' + name in completed.stdout, name
    if name in ('train', 'reproduce', 'benchmark'):
      assert 'mnist_vlae.gin' in completed.stdout and 'TRAIN_STEPS' in completed.stdout, name


def test_installed_command_help_is_the_checkouts_help():
  env_path = {'PYTHONPATH': REPO}
  for name in ('train', 'eval'):
    installed = subprocess.run(
        [sys.executable, '-c', f'from vlae_tf import cli; cli.{name}_command()', '--help'],
        env=env_path, capture_output=True, text=True, timeout=60, check=False)
    checkout = run_binary(name, '--help', timeout=60)
    assert installed.returncode == 0 and installed.stdout == checkout.stdout, installed.stderr


def test_path_and_flag_mistakes_are_reported_before_tensorflow_loads(tmp_path):
  broken = _broken_tensorflow(tmp_path)
  cases = [
      (('eval', f'--model_dir={tmp_path / "nope"}'), 'error: No such run directory'),
      (('sample', f'--model_dir={tmp_path}'), 'error: No config.gin in'),
      (('train', f'--model_dir={tmp_path / "run"}', '--gin_file=mnist_vla.gin'),
       'did you mean mnist_vlae.gin'),
      (('train', f'--model_dir={tmp_path / "run"}', '--gin_file=mnist_vlae.gin',
        f'--data_dir={tmp_path / "no_data"}'), 'error: --data_dir='),
      (('train', f'--model_dir={tmp_path / "run"}', '--train_steps=5'),
       '--gin_param=TRAIN_STEPS=N'),
      (('eval', '--model_dri=x'), "Unknown command line flag 'model_dri'"),
  ]
  for args, expected in cases:
    began = time.monotonic()
    completed = run_binary(*args, python_path=broken, timeout=60)
    seconds = time.monotonic() - began
    assert completed.returncode == 1, (args, completed.stderr)
    assert expected in completed.stderr, (args, completed.stderr)
    assert 'tensorflow was imported' not in completed.stderr and 'Traceback' not in (
        completed.stderr), (args, completed.stderr)
    assert seconds < 5, (args, seconds)
  assert not (tmp_path / 'run').exists()
