"""Tests of errors.py: one family for every error a user can meet, one guard that catches it."""

import importlib
import inspect
import os
import pkgutil
import signal
import subprocess
import sys

import pytest

import vlae_tf
from vlae_tf import errors
from vlae_tf.cli import user_errors


def _package_modules():
  """Every module of vlae_tf, imported."""
  names = [info.name for info in pkgutil.walk_packages(vlae_tf.__path__, prefix='vlae_tf.')]
  return [importlib.import_module(name) for name in sorted(names)]


def _exception_classes():
  """(module name, class) of every public exception class defined in a vlae_tf module."""
  found = []
  for module in _package_modules():
    for name, value in vars(module).items():
      if (inspect.isclass(value) and issubclass(value, BaseException) and
          value.__module__ == module.__name__ and not name.startswith('_')):
        found.append((module.__name__, value))
  return found


def test_every_error_class_of_the_package_is_in_the_one_family():
  classes = _exception_classes()
  assert len(classes) >= 15, classes  # The walk found the package's errors.
  outside = [f'{module}.{cls.__name__}' for module, cls in classes
             if not issubclass(cls, errors.VlaeError)]
  assert not outside, f'errors outside errors.VlaeError: {outside}'


def test_every_error_class_is_defined_in_errors_py():
  elsewhere = [f'{module}.{cls.__name__}' for module, cls in _exception_classes()
               if module != 'vlae_tf.errors']
  assert not elsewhere, f'define errors in vlae_tf/errors.py: {elsewhere}'


def test_an_error_has_one_name_errors_x():
  """No module re-exports an error of the family (`DatasetError = errors.DatasetError`)."""
  family = {value for value in vars(errors).values()
            if inspect.isclass(value) and issubclass(value, BaseException)}
  aliases = [f'{module.__name__}.{name}' for module in _package_modules()
             if module is not errors for name, value in vars(module).items()
             if inspect.isclass(value) and value in family]
  assert not aliases, f'say errors.X instead of re-exporting it: {aliases}'


@pytest.mark.parametrize('name, builtin', [
    ('DatasetError', ValueError), ('LabelsUnavailableError', ValueError),
    ('CodecError', ValueError), ('UnsupportedModelError', ValueError),
    ('ReproduceError', Exception), ('ImageSizeError', ValueError),
])
def test_the_errors_keep_their_builtin_bases(name, builtin):
  error = getattr(errors, name)
  assert issubclass(error, errors.VlaeError) and issubclass(error, builtin)


def test_labels_unavailable_is_a_dataset_error_and_reproduce_error_a_run_error():
  assert issubclass(errors.LabelsUnavailableError, errors.DatasetError)
  assert issubclass(errors.ReproduceError, errors.RunError)
  assert issubclass(errors.CheckpointNotFoundError, FileNotFoundError)
  assert issubclass(errors.NonFiniteError, FloatingPointError)


@pytest.mark.parametrize('error', [
    errors.CliError('bad\nflag'), errors.DatasetError('no data'), errors.CodecError('bad file'),
    errors.UnsupportedModelError('8-bit'), errors.LabelsUnavailableError('no labels'),
    errors.ReproduceError('failed run'), errors.DamagedCheckpointError('truncated'),
])
def test_the_guard_reports_every_family_member_in_one_line(error):

  def run():
    raise error

  with pytest.raises(SystemExit) as raised:
    user_errors.guard(run)
  message = str(raised.value.code)
  assert message.startswith('error: ') and '\n' not in message


def test_the_guard_exits_with_128_plus_the_signal_on_an_interruption(capsys):

  def run():
    raise errors.TrainingInterrupted(signal.SIGTERM, 7, '/run/ckpt-7')

  with pytest.raises(SystemExit) as raised:
    user_errors.guard(run)
  assert raised.value.code == 128 + signal.SIGTERM
  assert capsys.readouterr().err.startswith('stopped: interrupted by SIGTERM at step 7')


def test_the_guard_lets_bugs_through():

  def run():
    raise KeyError('a bug')

  with pytest.raises(KeyError):
    user_errors.guard(run)


def test_the_guard_imports_nothing_for_the_errors_it_catches():
  script = ('import sys\n'
            'from vlae_tf import errors\n'
            'from vlae_tf.cli import binaries\n'
            'from vlae_tf.cli import user_errors\n'
            'def run():\n'
            '  raise errors.CodecError("bad")\n'
            'try:\n'
            '  user_errors.guard(run)\n'
            'except SystemExit:\n'
            '  pass\n'
            'heavy = [name for name in ("tensorflow", "vlae_tf.compression.codec",\n'
            '                           "vlae_tf.data.datasets") if name in sys.modules]\n'
            'print(heavy)\n')
  environment = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(vlae_tf.__file__)))
  output = subprocess.run([sys.executable, '-c', script], env=environment, check=True,
                          capture_output=True, text=True).stdout
  assert output.strip() == '[]'
