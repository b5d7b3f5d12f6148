"""Tests of training.py: the outer loop.

A checkpoint resume of the real VLAE (tiny settings, real static MNIST, 2 replicas) that reaches
the state of an uninterrupted run, runs without validation and without z, and the settings that
`train` passes to the trainer factory. The inner step is trainer_test.py's; signals, damaged runs
and bad steps are reliability_test.py's and checkpoints_test.py's.
"""

import shutil

import gin
import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
import tensorflow as tf

import doubles

from vlae_tf.cli import gin_parsing
from vlae_tf.training import loop as training


def test_train_settings_are_the_bindings_else_trains_defaults():
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'], ['train.ema_decay = 0.9'])
  settings = training.train_settings()
  assert settings['batch_size'] == 4  # %BATCH_SIZE, resolved.
  assert settings['ema_decay'] == 0.9 and settings['ema_warmup'] is True
  assert settings['soft_free_bits'] is False  # Unbound: train's default.
  assert settings['dataset'] == 'static_mnist'
  assert set(training.trainer_settings()) == set(training.TRAINER_SETTINGS)
  gin.clear_config()
  assert training.train_settings()['learning_rate'] == 2e-3


# ---------------------------------------------------------------------------------------------
# End to end: the real VLAE, tiny, on real static MNIST, 2 replicas.


def tiny_run_config(**train_bindings):
  """The static MNIST VLAE shrunk by gin/testing/tiny.gin, plus `train` bindings."""
  bindings = dict(batch_size=4, summary_every=1, checkpoint_every=2, eval_every=0,
                  eval_examples=4, num_summary_images=0, max_checkpoints_to_keep=5)
  bindings.update(train_bindings)
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'],
                [f'train.{key} = {value!r}' for key, value in bindings.items()])


def read_checkpoint(path):
  reader = tf.train.load_checkpoint(path)
  names = [name for name in reader.get_variable_to_shape_map()
           if name.endswith('.ATTRIBUTES/VARIABLE_VALUE')]
  return {name: reader.get_tensor(name) for name in names}


@pytest.mark.slow
def test_resume_reaches_the_uninterrupted_state(shared_data, tmp_path):
  """Run A trains 4 steps (checkpoints at 2 and 4); run B starts from A's step-2 checkpoint alone,
  as if A had been killed after it, and must reach A's step-4 state: weights, averages, optimizer.
  """
  data_dir = str(shared_data)
  uninterrupted = tmp_path / 'uninterrupted'
  tiny_run_config(train_steps=4, eval_examples=4, num_summary_images=2)
  validation = training.train(str(uninterrupted), data_dir=data_dir, strategy=doubles.two_replicas())

  resumed = tmp_path / 'resumed'
  resumed.mkdir()
  for path in uninterrupted.glob('ckpt-2.*'):
    shutil.copy(path, resumed / path.name)
  (resumed / 'checkpoint').write_text('model_checkpoint_path: "ckpt-2"\n'
                                      'all_model_checkpoint_paths: "ckpt-2"\n')
  tiny_run_config(train_steps=4, eval_examples=0)
  training.train(str(resumed), data_dir=data_dir, strategy=doubles.two_replicas())

  want = read_checkpoint(str(uninterrupted / 'ckpt-4'))
  got = read_checkpoint(tf.train.latest_checkpoint(str(resumed)))
  assert set(want) == set(got)
  assert any(name.startswith('averaged_model/') for name in want)
  assert any(name.startswith('optimizer/') for name in want)
  before = read_checkpoint(str(uninterrupted / 'ckpt-2'))
  assert any(not np.array_equal(before[name], want[name]) for name in want)
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
  assert int(want['step/.ATTRIBUTES/VARIABLE_VALUE']) == 4

  # The run directory has what eval/sample/export need, and the summaries.
  config = (uninterrupted / 'config.gin').read_text()
  assert "train.dataset = 'static_mnist'" in config
  assert 'VLAE.' in config
  assert 'VLAE.' in (uninterrupted / 'operative_config.gin').read_text()
  assert list((uninterrupted / 'train').glob('events.out.tfevents.*'))
  assert list((uninterrupted / 'validation').glob('events.out.tfevents.*'))
  tags = summary_tags(uninterrupted / 'train')
  assert {'elbo_nats', 'kl_nats', 'kl_bits', 'reconstruction_nats', 'nll_bound_bits_per_dim',
          'learning_rate', 'gradient_norm', 'examples_per_second',
          'gin/operative_config'} <= tags, tags
  assert {'elbo_nats', 'samples', 'reconstructions'} <= summary_tags(uninterrupted / 'validation')
  assert np.isfinite(validation['elbo'])
  # Images at summary steps, not only at validation (the first, traced at step 1, and the last),
  # 4x the grid: 2 samples on a 1x2 grid of 28x28 tiles with 1-pixel borders are 30x59.
  images = summary_images(uninterrupted / 'validation')
  assert {1, 4} <= set(images['samples']), sorted(images['samples'])
  assert images['samples'][4].shape == (4 * 30, 4 * 59, 1)
  assert images['reconstructions'][4].shape == (4 * 30, 4 * (4 * 29 + 1), 1)
  # The hparams dashboard's row of the run.
  hparams = run_hparams(uninterrupted)
  assert hparams['dataset'] == 'static_mnist' and hparams['model'] == 'VLAE'
  assert hparams['decoder'] == 'DepthLimitedPixelCNN' and hparams['latent_size'] == 3
  assert hparams['batch_size'] == 4 and hparams['train_steps'] == 4


def summary_images(directory):
  """{tag: {step: uint8 image}} of the image summaries in `directory`."""
  images = {}
  for path in directory.glob('events.out.tfevents.*'):
    for record in tf.data.TFRecordDataset(str(path)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == 'images':
          png = tf.make_ndarray(value.tensor)[2]
          images.setdefault(value.tag, {})[event.step] = tf.io.decode_png(png).numpy()
  return images


def run_hparams(model_dir):
  """{name: value} of the hparams session written in model_dir (its root run)."""
  for path in model_dir.glob('events.out.tfevents.*'):
    for record in tf.data.TFRecordDataset(str(path)):
      for value in event_pb2.Event.FromString(record.numpy()).summary.value:
        if value.tag == hparams_metadata.SESSION_START_INFO_TAG:
          info = hparams_metadata.parse_session_start_info_plugin_data(
              value.metadata.plugin_data.content)
          return {name: getattr(item, item.WhichOneof('kind'))
                  for name, item in info.hparams.items()}
  raise AssertionError(f'no hparams in {model_dir}')


def summary_tags(directory):
  tags = set()
  for path in directory.glob('events.out.tfevents.*'):
    for record in tf.data.TFRecordDataset(str(path)):
      event = event_pb2.Event.FromString(record.numpy())
      tags.update(value.tag for value in event.summary.value)
  return tags


@pytest.mark.slow
def test_without_validation_the_validation_split_is_not_read(shared_data, tmp_path):
  """shared/data's CIFAR-10 holds one training batch, so it has no 'valid' split."""
  gin_parsing.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'],
                ['train.train_steps = 1', 'train.batch_size = 2', 'train.eval_examples = 0',
                 'train.num_summary_images = 0'])
  training.train(str(tmp_path / 'run'), data_dir=str(shared_data), strategy=doubles.one_replica())
  assert tf.train.latest_checkpoint(str(tmp_path / 'run')).endswith('ckpt-1')


@pytest.mark.slow
def test_model_without_latent_trains_through_validation_and_image_summaries(shared_data, tmp_path):
  """The PixelCNN without z (Table 3's baseline) has no encode: its validation summaries are
  samples only (its first validation, at step 5,000 of a reproduce run, once crashed there)."""
  gin_parsing.parse_gin(['dynamic_mnist_pixelcnn.gin', 'testing/tiny.gin'],
                ['train.train_steps = 2', 'train.batch_size = 2', 'train.eval_every = 1',
                 'train.eval_examples = 2', 'train.num_summary_images = 2',
                 'train.checkpoint_every = 2'])
  run = tmp_path / 'run'
  validation = training.train(str(run), data_dir=str(shared_data), strategy=doubles.one_replica())
  assert np.isfinite(validation['elbo'])
  assert 'samples' in summary_tags(run / 'validation')
  assert tf.train.latest_checkpoint(str(run)).endswith('ckpt-2')
