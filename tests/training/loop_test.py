"""Tests of loop.py: the controller with a fake trainer, and the outer loop end to end.

The controller alone: chunk lengths, the order of the actions' hooks, stopping. End to end: a
checkpoint resume of the real VLAE (tiny settings, real static MNIST, one replica) that reaches the
state of an uninterrupted run, runs without validation and without z. The inner step is
trainer_test.py's; each action is actions_test.py's or validation_test.py's; signals, damaged runs
and bad steps in whole runs are reliability_test.py's and checkpoints_test.py's.
"""

import dataclasses
import shutil
import signal
from unittest import mock

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
import tensorflow as tf

import doubles

from vlae_tf import gin_parsing
from vlae_tf import distribution
from vlae_tf.training import controller as controller_lib
from vlae_tf.training import loop as training
from vlae_tf.runs import directory
from vlae_tf.training import settings as settings_lib


# ---------------------------------------------------------------------------------------------
# The controller, with a fake trainer and recording actions.


def test_controller_runs_one_traced_step_then_chunks_to_each_boundary():
  trainer, calls, chunks = doubles.FakeTrainer(), [], []
  recorders = [doubles.Recorder('a', calls, chunks.append), doubles.Recorder('b', calls)]
  controller = controller_lib.Controller(trainer, None, recorders, doubles.no_stop(), train_steps=8,
                                   boundaries=(3, 0, None))
  assert controller.run(0) == (8, None)
  # The traced step, one timed step (progress.ChunkPacer), then to each boundary: never past a
  # multiple of 3.
  assert trainer.chunks == [1, 1, 1, 3, 2]
  assert [(c.step, c.num_steps, c.first, c.final) for c in chunks] == [
      (1, 1, True, False), (2, 1, False, False), (3, 1, False, False), (6, 3, False, False),
      (8, 2, False, True)]
  # Every start, in order, after the first chunk; then every call.
  assert calls[:4] == [('a', 'start', 1), ('b', 'start', 1), ('a', 'call', 1), ('b', 'call', 1)]
  assert [call for call in calls if call[1] == 'start'] == calls[:2]


def test_controller_resumes_from_a_step_and_stops_before_a_chunk_on_a_signal():
  trainer, calls = doubles.FakeTrainer(step=4), []
  stop = doubles.no_stop()

  def signal_arrives(chunk):
    if chunk.step == 6:
      stop.signum, stop.requested = signal.SIGTERM, True

  controller = controller_lib.Controller(trainer, None, [doubles.Recorder('a', calls, signal_arrives)], stop,
                                   train_steps=100, boundaries=(2,))
  assert controller.run(4) == (6, signal.SIGTERM)
  assert trainer.chunks == [1, 1]  # Steps 5 (traced), 6; then the flag stops the loop.
  assert controller.run(6) == (6, signal.SIGTERM)  # Nothing runs once stopping.


def test_controller_marks_the_chunk_that_reaches_too_many_bad_steps():
  trainer, chunks = doubles.FakeTrainer(bad={3, 4}), []
  controller = controller_lib.Controller(trainer, None, [doubles.Recorder('a', [], chunks.append)], doubles.no_stop(),
                                   train_steps=10, boundaries=(10,), max_consecutive_bad_steps=2)
  controller.run(0)  # No action raises NonFiniteError here: the loop goes on.
  assert trainer.chunks == [1, 1, 8, 6]  # The third chunk, of 8 steps, stopped at step 4.
  assert [(c.step, c.num_steps, c.consecutive_bad_steps, c.too_many_bad_steps)
          for c in chunks[2:]] == [(4, 2, 2, True), (10, 6, 0, False)]


def test_workers_stop_together_when_any_of_them_got_a_signal():
  trainer = doubles.FakeTrainer()
  with mock.patch.object(distribution, 'agree_across_workers',
                         side_effect=[(1, False), (1, True)]) as agree:
    controller = controller_lib.Controller(trainer, None, [], doubles.no_stop(), train_steps=5,
                                     multi_worker=True, strategy='strategy')
    assert controller.run(0) == (1, signal.SIGTERM)  # Another worker's signal: SIGTERM.
  assert agree.call_args_list[0] == mock.call('strategy', 1, False)
  assert trainer.chunks == [1]


def test_train_takes_settings_instead_of_gin(shared_data, tmp_path):
  """A settings object given to train: gin's `train` bindings are not read."""
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'])
  settings = dataclasses.replace(settings_lib.TrainSettings(), train_steps=1, batch_size=2,
                                 eval_examples=0, num_summary_images=0)
  assert training.train(str(tmp_path / 'run'), data_dir=str(shared_data), settings=settings,
                        strategy=doubles.one_replica()) == {}
  assert tf.train.latest_checkpoint(str(tmp_path / 'run')).endswith('ckpt-1')


# ---------------------------------------------------------------------------------------------
# End to end: the real VLAE, tiny, on real static MNIST, 2 replicas.


def tiny_run_config(precision='float32', **train_bindings):
  """The static MNIST VLAE shrunk by gin/testing/tiny.gin, plus `train` bindings."""
  bindings = dict(batch_size=4, summary_every=1, checkpoint_every=2, eval_every=0,
                  eval_examples=4, num_summary_images=0, max_checkpoints_to_keep=5)
  bindings.update(train_bindings)
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'],
                        [f'train.{key} = {value!r}' for key, value in bindings.items()]
                        + [f'VLAE.precision = {precision!r}'])


def read_checkpoint(path):
  reader = tf.train.load_checkpoint(path)
  names = [name for name in reader.get_variable_to_shape_map()
           if name.endswith('.ATTRIBUTES/VARIABLE_VALUE')]
  return {name: reader.get_tensor(name) for name in names}


@pytest.mark.slow
def test_resume_reaches_the_uninterrupted_state(shared_data, tmp_path):
  """Run A trains 4 steps (checkpoints at 2 and 4); run B starts from A's step-2 checkpoint alone,
  as if A had been killed after it, and must reach A's step-4 state: weights, averages, optimizer.

  One replica, as bin/train runs on a CPU (two replicas cost twice the tracing). Two replicas
  resume over two workers in multiworker_test.py (slow); two-replica steps of a stand-in model
  are trainer_test.py's.
  """
  data_dir = str(shared_data)
  uninterrupted = tmp_path / 'uninterrupted'
  tiny_run_config(train_steps=4, eval_examples=4, num_summary_images=2)
  validation = training.train(str(uninterrupted), data_dir=data_dir, strategy=doubles.one_replica())

  resumed = tmp_path / 'resumed'
  resumed.mkdir()
  for path in uninterrupted.glob('ckpt-2.*'):
    shutil.copy(path, resumed / path.name)
  (resumed / 'checkpoint').write_text('model_checkpoint_path: "ckpt-2"\n'
                                      'all_model_checkpoint_paths: "ckpt-2"\n')
  tiny_run_config(train_steps=4, eval_examples=0)
  training.train(str(resumed), data_dir=data_dir, strategy=doubles.one_replica())

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
  assert hparams['decoder'] == 'GatedResNetPixelCNN' and hparams['latent_size'] == 3
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


@pytest.mark.slow
def test_a_run_continues_in_another_precision_and_records_each_piece(shared_data, tmp_path):
  """Two pieces: 2 steps in float32, then 2 in mixed_bfloat16 (the faster one on a CPU with AMX);
  the checkpoint restores into either, and pieces.jsonl says what each piece did."""
  run = str(tmp_path / 'run')
  tiny_run_config(train_steps=2, eval_examples=0)
  training.train(run, data_dir=str(shared_data), strategy=doubles.one_replica())
  tiny_run_config(train_steps=4, eval_examples=0, precision='mixed_bfloat16')
  training.train(run, data_dir=str(shared_data), strategy=doubles.one_replica())
  assert int(read_checkpoint(tf.train.latest_checkpoint(run))[
      'step/.ATTRIBUTES/VARIABLE_VALUE']) == 4
  pieces = directory.read_pieces(run)
  assert [(p['first_step'], p['last_step'], p['precision'], p['ended']) for p in pieces] == [
      (0, 2, 'float32', 'finished'), (2, 4, 'mixed_bfloat16', 'finished')]
  assert "VLAE.precision = 'mixed_bfloat16'" in (tmp_path / 'run' / 'config.gin').read_text()


@pytest.mark.slow
def test_a_float16_run_resumes_exactly_with_its_loss_scale(shared_data, tmp_path):
  """As test_resume_reaches_the_uninterrupted_state, in 'mixed_float16' (float16 layers, a
  dynamic loss scale): 14 steps (checkpoints every 2, the last 5 kept), resumed from step 6. The
  tiny model's gradients overflow float16 at the initial scale of 2^15, so the first steps are
  skipped while the scale comes down, and the later ones train: the checkpoint must carry the
  scale for the resumed run to reach the uninterrupted run's step-14 state bit for bit."""
  data_dir = str(shared_data)
  uninterrupted, resumed = tmp_path / 'uninterrupted', tmp_path / 'resumed'
  tiny_run_config('mixed_float16', train_steps=14, eval_examples=0)
  training.train(str(uninterrupted), data_dir=data_dir, strategy=doubles.one_replica())
  resumed.mkdir()
  for path in uninterrupted.glob('ckpt-6.*'):
    shutil.copy(path, resumed / path.name)
  (resumed / 'checkpoint').write_text('model_checkpoint_path: "ckpt-6"\n'
                                      'all_model_checkpoint_paths: "ckpt-6"\n')
  tiny_run_config('mixed_float16', train_steps=14, eval_examples=0)
  training.train(str(resumed), data_dir=data_dir, strategy=doubles.one_replica())
  want = read_checkpoint(str(uninterrupted / 'ckpt-14'))
  got = read_checkpoint(tf.train.latest_checkpoint(str(resumed)))
  assert set(want) == set(got)
  scale = 'loss_scale/scale/.ATTRIBUTES/VARIABLE_VALUE'
  middle = read_checkpoint(str(uninterrupted / 'ckpt-6'))
  assert middle[scale] < 2.0**15  # Overflows brought it down before the checkpoint.
  assert int(want['optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE']) > int(
      middle['optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE'])  # Steps after it trained.
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  pieces = directory.read_pieces(str(resumed))
  assert [(p['precision'], p['xla'], p['accumulation_steps']) for p in pieces] == [
      ('mixed_float16', False, 1)]
