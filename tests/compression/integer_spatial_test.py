"""Tests of integer_spatial.py: the fixed-point encoder and context network against the float
networks of a tiny gin/cifar10_resnet_vlae.gin model initialized on real CIFAR-10 test images."""

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vlae_tf import gin_parsing
from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import integer_gated_pixelcnn
from vlae_tf.compression import integer_spatial
from vlae_tf.data import datasets
from vlae_tf.models import vlae as model_lib


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('cifar10', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(3)])


@pytest.fixture(scope='module')
def model(images):
  gin.clear_config()
  gin_parsing.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'])
  keras.utils.set_random_seed(0)
  model = model_lib.make_model()
  model.initialize(images)
  rng = np.random.default_rng(1)  # Trained weights are not at their init: move every weight.
  for weight in model.weights:
    if weight.dtype == tf.float32:
      weight.assign(weight + rng.normal(size=weight.shape).astype(np.float32) * 0.05)
  return model


def test_encoder_matches_the_float_encoder(model, images):
  encoder = integer_spatial.SpatialEncoder(model.encoder)
  loc, scale = encoder(integer_gated_pixelcnn.network_input(images))
  expected = model.encoder(model.likelihood.network_input(tf.constant(images)))
  assert loc.shape == tuple(expected.loc.shape) == (3, *model.latent_shape)
  assert loc.dtype == scale.dtype == np.int64 and scale.min() > 0
  np.testing.assert_allclose(loc / 2.0 ** fxp.LATENT_BITS, expected.loc.numpy(), atol=0.01)
  np.testing.assert_allclose(scale / 2.0 ** fxp.LATENT_BITS, expected.scale.numpy(), rtol=0.01,
                             atol=2.0 ** -8)


def test_context_network_matches_the_float_network(model):
  z = np.rint(np.random.default_rng(2).normal(size=(2, *model.latent_shape)) * fxp.ONE)
  context = integer_spatial.SpatialContextNetwork(model.context_network)(z)
  expected = model.context_network(tf.constant(z / fxp.ONE, tf.float32)).numpy()
  assert context.shape == expected.shape
  np.testing.assert_allclose(context / fxp.ONE, expected, atol=0.01)
