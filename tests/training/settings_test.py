"""Tests of settings.py: `TrainSettings` is the gin configurable `train` of every shipped config
and every existing run's config.gin."""

import dataclasses

import gin
import pytest

from vlae_tf import gin_parsing
from vlae_tf.runs import run_config
from vlae_tf.training import settings


def test_bindings_else_defaults():
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'], ['train.ema_decay = 0.9'])
  train = settings.TrainSettings()
  assert train.batch_size == 4  # %BATCH_SIZE of tiny.gin.
  assert train.ema_decay == 0.9 and train.dataset == 'static_mnist'
  assert train.max_checkpoints_to_keep == 3 and train.soft_free_bits is False  # Unbound.
  assert train.trainer_kwargs() == {'seed': 0, 'learning_rate': 0.002, 'ema_decay': 0.9,
                                    'ema_warmup': True, 'free_bits_lambda': 0.01,
                                    'soft_free_bits': False, 'jit_compile': 'auto',
                                    'accumulation_steps': 1}
  with pytest.raises(dataclasses.FrozenInstanceError):
    train.batch_size = 8  # pylint: disable=assigning-non-slot


def test_train_settings_are_the_bindings_else_the_defaults_without_constructing():
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'], ['train.ema_decay = 0.9'])
  values = settings.train_settings()
  assert values['batch_size'] == 4  # %BATCH_SIZE, resolved.
  assert values['ema_decay'] == 0.9 and values['ema_warmup'] is True
  assert values['soft_free_bits'] is False  # Unbound: the default.
  assert values['dataset'] == 'static_mnist'
  assert set(values) == {field.name for field in dataclasses.fields(settings.TrainSettings)}
  assert set(settings.trainer_settings()) == set(settings.TRAINER_SETTINGS)
  assert 'Parameters for train' not in gin.operative_config_str()  # Nothing was constructed.
  gin.clear_config()
  assert settings.train_settings()['learning_rate'] == 2e-3


def test_the_operative_config_lists_every_train_setting_once_constructed():
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'])
  settings.TrainSettings()
  operative = run_config.config_bindings(gin.operative_config_str())
  train = {name for name in operative if name.startswith('train.')}
  assert train == {f'train.{field.name}' for field in dataclasses.fields(settings.TrainSettings)}
  assert operative['train.batch_size'] == '%BATCH_SIZE'


def test_replace_does_not_read_gin_again():
  gin.parse_config(["train.dataset = 'static_mnist'", 'train.train_steps = 7'])
  train = dataclasses.replace(settings.TrainSettings(), train_steps=3, batch_size=2)
  assert (train.train_steps, train.batch_size, train.dataset) == (3, 2, 'static_mnist')


def test_dataset_is_required():
  with pytest.raises(RuntimeError, match=r"Required bindings for `train` not provided in config: "
                     r"\['dataset'\]"):
    settings.TrainSettings()


def test_an_existing_runs_config_binds_the_same_settings(run_dir):
  """The config.gin of a run written before settings.py (tests/testdata/run_e06a543)."""
  run_config.load_run_config(run_dir)
  train = settings.TrainSettings()
  assert (train.dataset, train.batch_size, train.train_steps) == ('static_mnist', 4, 2)
  assert (train.checkpoint_every, train.eval_examples, train.shuffle_buffer) == (2, 4, 64)


def test_a_misspelled_setting_gets_a_suggestion():
  with pytest.raises(Exception, match='did you mean batch_size, eval_batch_size'):
    gin_parsing.parse_gin([], ['train.batch_sise = 3'])
