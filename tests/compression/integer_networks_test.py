"""Tests of integer_networks.py: the fixed-point networks against the float model they come from,
the pixel-by-pixel pass equal to the parallel one, and the integer flow a bijection of the grid.

Tiny models of gin/mnist_vlae.gin (gin/testing/tiny.gin) initialized on real static-MNIST test
images."""

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vlae_tf import errors
from vlae_tf import gin_parsing
from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import integer_networks
from vlae_tf.data import datasets
from vlae_tf.models import vlae as model_lib


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('static_mnist', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(5)])


def _model(gin_files, images):
  gin.clear_config()
  gin_parsing.parse_gin(list(gin_files) + ['testing/tiny.gin'])
  keras.utils.set_random_seed(0)
  model = model_lib.make_model()
  model.initialize(images[:4])
  # Trained weights are not at their init: move every weight a little (the MADE's zero output
  # layer too), keeping the MADE's masks.
  rng = np.random.default_rng(1)
  for weight in model.weights:
    if weight.dtype == tf.float32:
      weight.assign(weight + rng.normal(size=weight.shape).astype(np.float32) * 0.05)
  for network in getattr(model.prior, 'made_networks', []):
    for layer, mask in zip([l for l in network._network.layers  # pylint: disable=protected-access
                            if isinstance(l, keras.layers.Dense)], network._masks):  # pylint: disable=protected-access
      layer.kernel.assign(layer.kernel * mask)
  return model


@pytest.fixture(scope='module')
def model(images):
  return _model(['mnist_vlae.gin'], images)


def test_the_networks_follow_the_float_model(model, images):
  networks = integer_networks.IntegerVLAE(model)
  loc, scale = networks.posterior(images)
  encoded = model.encoder(model.likelihood.network_input(images))
  np.testing.assert_allclose(loc / 2.0 ** 24, encoded.loc.numpy(), atol=0.01)
  np.testing.assert_allclose(scale / 2.0 ** 24, encoded.scale.numpy(), rtol=0.01)
  z = np.rint(encoded.loc.numpy() * fxp.ONE)
  context = networks.context_network(z)
  float_context = model.context_network(tf.constant(z / fxp.ONE, tf.float32)).numpy()
  np.testing.assert_allclose(context / fxp.ONE, float_context, atol=0.01)
  logits = networks.pixelcnn.logits(images, context)
  float_logits = model.decoder(model.likelihood.network_input(images),
                               tf.constant(context / fxp.ONE, tf.float32)).numpy()
  np.testing.assert_allclose(logits / fxp.ONE, float_logits, atol=0.02)
  eps = networks.flow.inverse(z)
  float_eps = model.prior.bijector().inverse(tf.constant(z / fxp.ONE, tf.float32)).numpy()
  np.testing.assert_allclose(eps / fxp.ONE, float_eps, atol=0.01)


def test_pixel_by_pixel_gives_the_parallel_integers(model, images):
  networks = integer_networks.IntegerVLAE(model)
  context = networks.context_network(np.rint(networks.posterior(images)[0] / 2.0 ** 12))
  parallel = networks.pixelcnn.logits(images, context)
  seen = np.zeros_like(parallel)

  def choose(logits, row, col):
    seen[:, row, col] = logits
    return images[:, row, col, 0]

  decoded = networks.pixelcnn.decode_pixels(context, choose)
  np.testing.assert_array_equal(seen, parallel)
  np.testing.assert_array_equal(decoded, images)


def test_the_flow_is_a_bijection_of_the_grid(model):
  flow = integer_networks.IntegerVLAE(model).flow
  rng = np.random.default_rng(3)
  z = rng.integers(-3 * fxp.ONE, 3 * fxp.ONE, size=(11, model.latent_shape[0]))
  eps = flow.inverse(z)
  assert not np.array_equal(eps, z)
  np.testing.assert_array_equal(flow.forward(eps), z)


def test_other_architectures_are_refused(images):
  model = _model(['mnist_vlae.gin', 'models/gaussian_prior.gin'], images)
  assert not integer_networks.supports(model)
  with pytest.raises(errors.UnsupportedModelError, match='architecture of gin/mnist_vlae.gin'):
    integer_networks.IntegerVLAE(model)
