"""Tests of the run directory (vlae_tf/runs/): the config of a run, the resume check, opening a run.

The run directory is tests/testdata/run_e06a543 (two steps of the tiny static MNIST VLAE), copied.
Damaged checkpoints and configs are checkpoints_test.py's; the binaries' one-line errors are
reliability_test.py's.
"""

import os

import gin
import pytest
import tensorflow as tf

from vlae_tf import errors
from vlae_tf.runs import directory
from vlae_tf.runs import opening
from vlae_tf.runs import run_config


def test_load_run_config_parses_the_runs_bindings(run_dir):
  path = run_config.load_run_config(run_dir)
  assert path == os.path.join(run_dir, run_config.CONFIG_FILE)
  assert run_config.run_dataset() == 'static_mnist'
  assert gin.query_parameter('%LATENT_SIZE') == 3
  assert directory.run_start_time(run_dir) > 1.7e9


def test_open_run_gives_the_model_step_checkpoint_and_dataset(run_dir):
  run = opening.open_run(run_dir)
  assert (run.step, os.path.basename(run.checkpoint_path)) == (2, 'ckpt-2')
  assert run.model.latent_shape == (3,)
  assert (run.dataset, run.config_path) == ('static_mnist', os.path.join(run_dir, 'config.gin'))
  assert run.strategy is None


def test_open_run_takes_a_step_and_makes_the_strategy_after_the_config(run_dir):
  made = []

  def make_strategy():
    made.append(gin.query_parameter('%LATENT_SIZE'))  # the run's config is parsed by now
    return tf.distribute.OneDeviceStrategy('/cpu:0')

  gin.clear_config()
  run = opening.open_run(run_dir, 2, strategy=make_strategy)
  assert made == [3] and isinstance(run.strategy, tf.distribute.OneDeviceStrategy)
  assert run.model.trainable_variables[0].device.endswith('CPU:0')
  with pytest.raises(errors.RunError, match='No checkpoint .*ckpt-5'):
    opening.open_run(run_dir, 5)


def test_open_run_computes_in_another_precision_from_the_same_weights(run_dir):
  from vlae_tf.cli import shared_flags  # pylint: disable=g-import-not-at-top
  from vlae_tf.layers import precision  # pylint: disable=g-import-not-at-top
  assert shared_flags.PRECISIONS == precision.PRECISIONS  # bin/eval's --precision choices
  own = opening.open_run(run_dir)
  other = opening.open_run(run_dir, precision='mixed_bfloat16')
  assert (own.model.precision, other.model.precision) == ('float32', 'mixed_bfloat16')
  for mine, theirs in zip(own.model.weights, other.model.weights):
    assert mine.dtype == theirs.dtype  # float32 variables in every precision
    assert (mine.numpy() == theirs.numpy()).all()
  with pytest.raises(ValueError, match="VLAE.precision must be one of"):
    opening.open_run(run_dir, precision='float64')


def test_a_run_without_a_dataset_opens_but_its_readers_are_told(run_dir):
  path = os.path.join(run_dir, 'config.gin')
  with open(path) as f:
    config = f.read()
  with open(path, 'w') as f:
    f.write('\n'.join(line for line in config.splitlines() if not line.startswith('train.dataset')))
  run = opening.open_run(run_dir)
  assert run.dataset is None
  with pytest.raises(errors.RunError, match='binds no train.dataset: pass --dataset'):
    run.needs_dataset()


def test_a_changed_model_is_not_resumed_but_bookkeeping_may_change(run_dir):
  with open(os.path.join(run_dir, run_config.CONFIG_FILE)) as f:
    config = f.read()
  run_config.check_resumable(run_dir, config.replace('TRAIN_STEPS = 2', 'TRAIN_STEPS = 9'))
  with pytest.raises(errors.IncompatibleRunError, match=r'1 binding\(s\) differ: LATENT_SIZE: '
                     r'3 -> 4'):
    run_config.check_resumable(run_dir, config.replace('LATENT_SIZE = 3', 'LATENT_SIZE = 4'))


def test_missing_and_empty_configs(tmp_path):
  with pytest.raises(errors.ConfigNotFoundError, match='No such run directory'):
    run_config.load_run_config(str(tmp_path / 'missing'))
  with pytest.raises(errors.ConfigNotFoundError, match='No config.gin in'):
    run_config.load_run_config(str(tmp_path))
  (tmp_path / 'config.gin').write_text('\n')
  with pytest.raises(errors.DamagedConfigError, match='is damaged \\(empty\\)'):
    run_config.load_run_config(str(tmp_path))


def test_prepare_model_dir(tmp_path):
  directory.prepare_model_dir(str(tmp_path / 'a' / 'b'))
  assert (tmp_path / 'a' / 'b').is_dir()
  (tmp_path / 'file').write_text('')
  with pytest.raises(errors.RunError, match='Cannot create --model_dir'):
    directory.prepare_model_dir(str(tmp_path / 'file' / 'run'))


def test_partial_saves_are_removed(tmp_path):
  (tmp_path / 'ckpt-4_temp').mkdir()
  (tmp_path / 'ckpt-4_temp' / 'part-00000-of-00001.data-00000-of-00001').write_text('x')
  (tmp_path / 'ckpt-2.index').write_text('')
  directory.remove_partial_checkpoints(str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ['ckpt-2.index']


def test_the_error_family():
  for error in (errors.CheckpointNotFoundError, errors.DamagedCheckpointError,
                errors.ConfigNotFoundError, errors.DamagedConfigError,
                errors.IncompatibleRunError, errors.NonFiniteError):
    assert issubclass(error, errors.RunError)
  assert issubclass(errors.CheckpointNotFoundError, FileNotFoundError)
  assert not issubclass(errors.TrainingInterrupted, errors.RunError)
  interrupted = errors.TrainingInterrupted(15, 7, '/run/ckpt-7')
  assert str(interrupted) == ('interrupted by SIGTERM at step 7; saved /run/ckpt-7; run the same '
                              'command again to resume')


def test_config_differences_ignore_bookkeeping():
  old = "LATENT_SIZE = 3\nTRAIN_STEPS = 3\ntrain.train_steps = %TRAIN_STEPS\nVLAE.x = [1,\n    2]\n"
  new = "LATENT_SIZE = 3\nTRAIN_STEPS = 9\ntrain.train_steps = %TRAIN_STEPS\nVLAE.x = [1,\n    3]\n"
  assert run_config.config_differences(old, old) == []
  assert run_config.config_differences(old, new) == ['VLAE.x: [1, 2] -> [1, 3]']


def test_config_differences_ignore_a_new_parameter_at_its_default():
  """A run started before a parameter existed resumes under today's code, which writes it."""
  old = "VLAE.image_shape = (28, 28, 1)\n"
  assert run_config.config_differences(old, old + "VLAE.latent_shape = ()\n") == []
  assert run_config.config_differences(old + "VLAE.latent_shape = ()\n", old) == []
  assert run_config.config_differences(old, old + "VLAE.latent_shape = (4,)\n") == [
      'VLAE.latent_shape: <unset> -> (4,)']
  assert run_config.config_differences(old, old + "NotAConfigurable.x = 1\n") == [
      'NotAConfigurable.x: <unset> -> 1']


def test_a_run_may_change_its_precision_between_pieces():
  """The arithmetic of a piece, not the model: float32 variables under every precision."""
  old = "VLAE.precision = 'float32'\nVLAE.latent_shape = (4,)\n"
  new = "VLAE.precision = 'mixed_bfloat16'\nVLAE.latent_shape = (4,)\n"
  assert run_config.config_differences(old, new) == []
