"""Tests of the public API in vlae_tf/__init__.py: `vlae_tf.load` and `vlae_tf.VLAE`."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import vlae_tf
from vlae_tf import errors

REPO = str(pathlib.Path(__file__).resolve().parents[2])
with open(os.path.join(REPO, 'tests', 'testdata', 'run_e06a543', 'expected.json')) as _f:
  EXPECTED = json.load(_f)


def _images():
  rng = np.random.default_rng(13)  # the images of checkpoint_compat_test's expected numbers
  return tf.constant((rng.uniform(size=(3, 28, 28, 1)) < 0.3).astype(np.float32))


def test_load_returns_the_averaged_model_of_the_newest_checkpoint(run_dir):
  model = vlae_tf.load(run_dir)
  assert isinstance(model, vlae_tf.VLAE)
  assert model.checkpoint_step == EXPECTED['step']
  assert model.checkpoint_path == os.path.join(run_dir, f'ckpt-{EXPECTED["step"]}')
  np.testing.assert_allclose(model.log_likelihood(_images(), 8, tf.constant([3, 4])),
                             EXPECTED['averaged_log_likelihood_k8'], rtol=1e-5, atol=1e-3)


def test_load_takes_a_step(run_dir):
  assert vlae_tf.load(run_dir, checkpoint=EXPECTED['step']).checkpoint_step == EXPECTED['step']


def test_load_errors_are_one_line_run_errors(tmp_path, run_dir):
  with pytest.raises(errors.ConfigNotFoundError, match='No such run directory'):
    vlae_tf.load(str(tmp_path / 'nowhere'))
  with pytest.raises(errors.CheckpointNotFoundError):
    vlae_tf.load(run_dir, checkpoint=999)


def test_import_vlae_tf_loads_no_tensorflow():
  code = ('import sys, vlae_tf; assert vlae_tf.__version__; '
          'print("tensorflow" in sys.modules)')
  out = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True,
                       cwd=REPO).stdout
  assert out.strip() == 'False'


def test_unknown_attribute_is_an_attribute_error():
  with pytest.raises(AttributeError, match='no attribute'):
    vlae_tf.Nope  # pylint: disable=pointless-statement
