"""Tests of summaries.py: readable image grids, their time budget, and the hparams dashboard read
back by TensorBoard's own hparams plugin (two runs, one table)."""

import json
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import hparams_plugin
from tensorboard.plugins.scalar import scalars_plugin
import tensorflow as tf
import tensorflow_probability as tfp
from werkzeug import test as werkzeug_test
from werkzeug import wrappers

import doubles
from vlae_tf import image_grids
from vlae_tf.training import summaries


class NoiseModel(doubles.SamplesAsTheVLAE):
  """A model double with the VLAE's sampling contract: binary noise images of 5x7x1, 4 latents."""

  image_shape = (5, 7, 1)
  latent_shape = (4,)
  data_kind = 'binary'
  encoder = posterior = prior = context_network = decoder = likelihood = None

  def prior_distribution(self):
    return tfp.distributions.Sample(tfp.distributions.Normal(0.0, 1.0), [4])

  def encode(self, images, seed):
    z = tf.random.stateless_normal([tf.shape(images)[0], 4], seed)
    return z, z

  def decode(self, z, seed, method='fast', num_images=None):  # Without z: num_images of them.
    del method
    count = num_images if z is None else tf.shape(z)[0]
    return tf.cast(tf.random.stateless_uniform([count, 5, 7, 1], seed) < 0.5, tf.float32)


def images_in(directory):
  """{tag: [(step, uint8 image)]} of the image summaries in `directory`."""
  found = {}
  for path in sorted(directory.glob('events.out.tfevents.*')):
    for record in tf.data.TFRecordDataset(str(path)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == 'images':
          encoded = tf.make_ndarray(value.tensor)[2]  # [width, height, png, ...]
          found.setdefault(value.tag, []).append((event.step, tf.io.decode_png(encoded).numpy()))
  return found


def test_upscale_is_nearest_neighbour():
  grid = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
  big = image_grids.upscale(grid, 4)
  assert big.shape == (8, 12, 1)
  np.testing.assert_array_equal(big[::4, ::4], grid)
  for dy in range(4):
    for dx in range(4):
      np.testing.assert_array_equal(big[dy::4, dx::4], grid)
  with pytest.raises(ValueError, match='positive integer'):
    image_grids.upscale(grid, 0)


def test_image_summaries_are_four_times_the_grid_and_repeat_their_draws(tmp_path):
  originals = tf.data.Dataset.from_tensor_slices(np.ones([3, 5, 7, 1], np.float32))
  images = summaries.ImageSummaries(NoiseModel(), originals, count=8, seed=3)
  writer = tf.summary.create_file_writer(str(tmp_path))
  for step in (10, 20):
    with writer.as_default(step=step):
      images.write()
  writer.flush()
  found = images_in(tmp_path)
  # 8 samples on a 3x3 grid of 5x7 tiles with 1-pixel borders: 19x25, then 4x.
  (step_10, samples_10), (step_20, samples_20) = found['samples']
  assert (step_10, step_20) == (10, 20)
  assert samples_10.shape == (4 * 19, 4 * 25, 1)
  np.testing.assert_array_equal(samples_10, samples_20)  # The same draws at every step.
  # 8 // 4 = 2 originals, each followed by 3 decodings: 2 rows of 4 tiles, 13x33, then 4x.
  reconstructions = found['reconstructions'][0][1]
  assert reconstructions.shape == (4 * 13, 4 * 33, 1)
  grid = reconstructions[::4, ::4]
  np.testing.assert_array_equal(image_grids.upscale(grid, 4), reconstructions)
  assert (grid[1:6, 1:8] == 255).all()  # The first original, all ones.


def test_models_without_latent_get_samples_only(tmp_path):
  model = NoiseModel()
  model.has_latent = False
  images = summaries.ImageSummaries(model, tf.data.Dataset.from_tensor_slices(
      np.ones([3, 5, 7, 1], np.float32)), count=4, seed=0)
  writer = tf.summary.create_file_writer(str(tmp_path))
  with writer.as_default(step=1):
    images.write()
  writer.flush()
  assert set(images_in(tmp_path)) == {'samples'}


def test_image_writes_stay_within_their_share_of_wall_time():
  images = summaries.ImageSummaries(NoiseModel(), None, count=2, seed=0, budget=0.05)
  assert images.due()
  with tf.summary.create_noop_writer().as_default(step=0):
    images.write()  # Traces: not measured.
    assert images.last_seconds is None and images.due()
    images.write()
  cost = images.last_seconds
  end = images._last_end  # pylint: disable=protected-access
  assert cost > 0
  assert not images.due(now=end + 0.9 * cost / 0.05)
  assert images.due(now=end + 1.1 * cost / 0.05)


def session_groups(logdir):
  """The hparams table as TensorBoard's hparams plugin serves it (POST /session_groups)."""
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(str(logdir))
  multiplexer.Reload()
  plugins = {}
  context = base_plugin.TBContext(
      logdir=str(logdir), multiplexer=multiplexer, plugin_name_to_instance=plugins,
      data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(logdir)))
  plugins['scalars'] = scalars_plugin.ScalarsPlugin(context)
  app = hparams_plugin.HParamsPlugin(context).get_plugin_apps()['/session_groups']
  request = {'experimentName': '', 'allowedStatuses': ['STATUS_UNKNOWN'], 'colParams': [],
             'startIndex': 0, 'sliceSize': 100}
  response = werkzeug_test.Client(app, wrappers.Response).post(
      '/session_groups', data=json.dumps(request), content_type='application/json')
  assert response.status_code == 200, response.get_data(as_text=True)
  return json.loads(response.get_data(as_text=True))['sessionGroups']


def test_two_runs_side_by_side_in_the_hparams_table(tmp_path):
  for name, learning_rate, final_nll in (('vlae', 0.002, 90.5), ('iaf_vae', 0.001, 95.25)):
    run = tmp_path / 'runs' / name
    summaries.write_hparams(
        tf.summary.create_file_writer(str(run)),
        summaries.run_hparams(NoiseModel(), dataset='static_mnist', learning_rate=learning_rate,
                              batch_size=np.int64(128), soft_free_bits=False, seed=0),
        start_time=1234.5)
    writer = tf.summary.create_file_writer(str(run / 'validation'))
    with writer.as_default():
      tf.summary.scalar('nll_bound_nats', 200.0, step=1)
      tf.summary.scalar('nll_bound_nats', final_nll, step=2)
    writer.flush()

  rows = {}
  for group in session_groups(tmp_path):
    (session,) = group['sessions']
    metrics = {(m['name']['group'], m['name']['tag']): m['value'] for m in group['metricValues']}
    rows[session['name']] = (group['hparams'], metrics)
  assert set(rows) == {'runs/vlae', 'runs/iaf_vae'}
  hparams, metrics = rows['runs/vlae']
  assert hparams['dataset'] == 'static_mnist'
  assert hparams['learning_rate'] == pytest.approx(0.002)
  assert hparams['batch_size'] == 128
  assert hparams['soft_free_bits'] is False
  assert hparams['model'] == 'NoiseModel' and hparams['encoder'] == 'None'
  assert hparams['latent_size'] == 4 and hparams['latent_shape'] == '4'
  assert metrics[('validation', 'nll_bound_nats')] == pytest.approx(90.5)  # The final value.
  assert rows['runs/iaf_vae'][1][('validation', 'nll_bound_nats')] == pytest.approx(95.25)
