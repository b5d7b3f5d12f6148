"""Tests of gin_parsing.py: base.gin first, files by name, strict bindings, one-line errors with
suggestions (a misspelled file, configurable, parameter or macro)."""

import os

import gin
import pytest

from vlae_tf import errors
from vlae_tf import gin_parsing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TestParseGin:

  def test_base_defaults(self):
    gin_parsing.parse_gin()
    assert gin.query_parameter('train.learning_rate') == 0.002
    assert gin.query_parameter('train.ema_decay') == 0.998
    assert gin.query_parameter('train.batch_size') == 128
    assert gin.query_parameter('train.free_bits_lambda') == 0.01

  def test_files_then_params(self):
    gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'], ['train.train_steps = 5'])
    assert gin.query_parameter('train.dataset') == 'static_mnist'
    assert gin.query_parameter('train.train_steps') == 5

  def test_unknown_file(self):
    with pytest.raises(errors.CliError, match='gin file not found: no_such.gin'):
      gin_parsing.parse_gin(['no_such.gin'])

  @pytest.mark.parametrize('binding', ['train.no_such_parameter = 1', 'NoSuchThing.x = 1',
                                       'train.batch_size = ('])
  def test_unknown_or_bad_binding(self, binding):
    with pytest.raises(errors.CliError, match='bad gin config'):
      gin_parsing.parse_gin([], [binding])

  @pytest.mark.parametrize('path', sorted(
      name for name in os.listdir(os.path.join(REPO, 'gin'))
      if name.endswith('.gin') and name != 'base.gin'))
  def test_every_shipped_experiment_parses_strictly(self, path):
    gin_parsing.parse_gin([path])
    assert gin.query_parameter('train.dataset')

  def test_suggestions_for_misspellings(self):
    with pytest.raises(errors.CliError, match='did you mean mnist_vlae.gin'):
      gin_parsing.parse_gin(['mnist_vlea.gin'])
    with pytest.raises(errors.CliError, match='did you mean learning_rate'):
      gin_parsing.parse_gin([], ['train.learning_rat = 0.1'])
    with pytest.raises(errors.CliError, match='gin macro TRAIN_STEP is bound by --gin_param but '
                                              'nothing uses it.*did you mean TRAIN_STEPS'):
      gin_parsing.parse_gin(['mnist_vlae.gin'], ['TRAIN_STEP=150'])


def test_a_models_folder_on_the_path_does_not_break_the_includes(tmp_path, monkeypatch):
  """A user's project with a models/ folder (a namespace package to Python) in the current
  directory: gin's package-resource lookup of "include 'models/vlae_binary.gin'" crashed on it."""
  (tmp_path / 'models').mkdir()
  monkeypatch.chdir(tmp_path)
  monkeypatch.syspath_prepend(str(tmp_path))
  gin_parsing.parse_gin(['mnist_vlae.gin'])
  assert gin.query_parameter('%LATENT_SIZE') == 64
