"""Checkpoints written by commit e06a543, before the training loop was split into modules, still
restore.

tests/testdata/run_e06a543/ is a two-step run of a tiny static-MNIST VLAE written by commit
e06a543, with what that code computed from it (expected.json, made by
tests/testdata/make_run_e06a543.py): today's code must restore it and give the same numbers, for
the averaged model that eval, sample and export read and for the full training state that a
resumed bin/train reads. checkpoint_keys_e06a543.json.gz lists the tensors a checkpoint of every
shipped experiment held at that commit; today's code must write the same keys.
"""

import gzip
import json
import os
import pathlib
import shutil
import tempfile

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vlae_tf import distribution
from vlae_tf.evaluation import evaluator as evaluation
from vlae_tf import gin_parsing
from vlae_tf.models import vlae as model_lib
from vlae_tf.models import objectives
from vlae_tf.runs import opening
from vlae_tf.runs import run_config
from vlae_tf.training import trainer as trainer_lib
from vlae_tf.training import settings as settings_lib

TESTDATA = str(pathlib.Path(__file__).resolve().parents[1] / 'testdata')
RUN = os.path.join(TESTDATA, 'run_e06a543')
KEYS = os.path.join(TESTDATA, 'checkpoint_keys_e06a543.json.gz')
# The experiments checked in every run; the others are slow.
QUICK_EXPERIMENTS = ('mnist_vlae.gin', 'cifar10_densenet_vlae.gin')

with open(os.path.join(RUN, 'expected.json')) as _f:
  EXPECTED = json.load(_f)
with gzip.open(KEYS, 'rt') as _f:
  EXPECTED_KEYS = json.load(_f)


def fixed_images(count=3):
  rng = np.random.default_rng(13)
  return tf.constant((rng.uniform(size=(count, 28, 28, 1)) < 0.3).astype(np.float32))


@pytest.fixture
def run_dir(tmp_path):
  """A copy of the old run directory (readers must not change it, but a failure might)."""
  path = tmp_path / 'run'
  shutil.copytree(RUN, path)
  return str(path)


def assert_close(actual, expected):
  np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                             rtol=1e-5, atol=1e-3)


def test_averaged_model_restores_with_the_same_outputs(run_dir):
  run = opening.open_run(run_dir)
  model = run.model
  assert run.step == EXPECTED['step'] and run.checkpoint_path == os.path.join(run_dir, 'ckpt-2')
  images = fixed_images()
  outputs = model.elbo(images, tf.constant([1, 2]), training=False)
  for key, values in EXPECTED['averaged_elbo'].items():
    assert_close(outputs[key], values)
  assert_close(model.log_likelihood(images, 8, tf.constant([3, 4])),
               EXPECTED['averaged_log_likelihood_k8'])
  samples = model.sample(2, tf.constant([5, 6]), method='fast').numpy()
  assert ''.join(str(int(v)) for v in samples.reshape(-1)) == EXPECTED['averaged_fast_samples']


def test_training_state_resumes_with_the_same_next_step(run_dir):
  """Weights, Adamax slots and iterations, step and averages restore: the next step agrees."""
  run_config.load_run_config(run_dir)
  strategy = distribution.make_strategy(['/cpu:0'])
  batch_size = gin.query_parameter('%BATCH_SIZE')
  # As bin/train builds it on resume: the factory with train's settings, then restore.
  trainer = trainer_lib.make_trainer(strategy, global_batch_size=batch_size,
                                     **settings_lib.trainer_settings())
  trainer.restore(os.path.join(run_dir, 'ckpt-2'))
  assert int(trainer.optimizer.iterations.numpy()) == EXPECTED['optimizer_iterations']
  batch = fixed_images(batch_size)
  metrics = trainer.train_loop(iter(tf.data.Dataset.from_tensors(batch).repeat()), 1)
  for key, value in EXPECTED['next_step_metrics'].items():
    assert_close(metrics[key], value)
  assert int(trainer.step.numpy()) == EXPECTED['after_step']
  outputs = trainer.averaged_model.elbo(fixed_images(), tf.constant([1, 2]), training=False)
  assert_close(outputs['elbo'], EXPECTED['averaged_elbo_after_step'])


def test_evaluation_of_the_old_run_is_unchanged(run_dir, shared_data):
  """The numbers of the old run's evaluation (recorded since importance samples are drawn per
  image: expected.json's eval_test_k4_n4_made_by), on two replicas and on one alike."""
  expected = EXPECTED['eval_test_k4_n4']
  for devices in (['/cpu:0', '/cpu:1'], ['/cpu:0']):
    evaluator = evaluation.CheckpointEvaluator(
        run_dir, 'test', 4, 4, 4, str(shared_data), None, 0, distribution.make_strategy(devices))
    report = evaluator(evaluator.checkpoint, progress=False)
    assert report['num_examples'] == expected['num_examples']
    for key in ('nll_nats', 'elbo_nats', 'kl_nats'):
      assert_close(report[key], expected[key])


def _soft_free_bits():
  try:
    return gin.query_parameter('train.soft_free_bits')
  except ValueError:
    return False


def checkpoint_keys(experiment):
  """'name shape dtype' of every tensor of a training checkpoint of `experiment` under tiny.gin.

  The binary experiments whose decoder became the first author's after e06a543
  (gin/models/vlae_binary.gin) are built with the decoder they had then,
  models/depth_limited_decoder.gin: that config must still write what their checkpoints held.
  """
  gin_parsing.parse_gin([experiment, 'testing/tiny.gin'])
  if gin.query_parameter('VLAE.decoder').selector == 'gated_resnet_pixelcnn.GatedResNetPixelCNN':
    gin_parsing.parse_gin([experiment, 'models/depth_limited_decoder.gin', 'testing/tiny.gin'])
  strategy = distribution.make_strategy(['/cpu:0'])
  with strategy.scope():
    model = model_lib.make_model()
    averaged_model = model_lib.make_model()
    optimizer = keras.optimizers.Adamax(learning_rate=1e-3)
    soft = objectives.SoftFreeBits(model.num_dims) if _soft_free_bits() else None
  trainer = trainer_lib.Trainer(strategy, model, averaged_model, optimizer, global_batch_size=4,
                             free_bits_lambda=0.01, ema_decay=0.9, seed=0, soft_free_bits=soft)
  with strategy.scope():
    model_lib.create_variables(model)
    model_lib.create_variables(averaged_model)
    trainer.build()
  with tempfile.TemporaryDirectory() as directory:
    path = trainer.checkpoint().save(os.path.join(directory, 'ckpt'))
    reader = tf.train.load_checkpoint(path)
    dtypes = reader.get_variable_to_dtype_map()
    return sorted(f'{name} {shape} {dtypes[name].name}'
                  for name, shape in reader.get_variable_to_shape_map().items())


@pytest.mark.parametrize('experiment', [
    name if name in QUICK_EXPERIMENTS else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(EXPECTED_KEYS)])
def test_checkpoints_hold_the_same_tensors(experiment):
  keys = checkpoint_keys(experiment)
  expected = EXPECTED_KEYS[experiment]
  assert keys == expected, (f'missing: {sorted(set(expected) - set(keys))[:10]}; '
                            f'new: {sorted(set(keys) - set(expected))[:10]}')
