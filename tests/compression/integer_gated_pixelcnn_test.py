"""Tests of integer_gated_pixelcnn.py: the fixed-point gated PixelCNN against the float decoder of
a tiny gin/cifar10_resnet_vlae.gin model (initialized on real CIFAR-10 test images), its
pixel-by-pixel pass equal to the parallel one, and the masses it feeds the coder against the
float likelihood."""

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vlae_tf import gin_parsing
from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import integer_gated_pixelcnn
from vlae_tf.compression import mixture_masses
from vlae_tf.data import datasets
from vlae_tf.models import vlae as model_lib


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('cifar10', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(3)])


def _model(images, params=()):
  gin.clear_config()
  gin_parsing.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'], list(params))
  keras.utils.set_random_seed(0)
  model = model_lib.make_model()
  model.initialize(images)
  rng = np.random.default_rng(1)  # Trained weights are not at their init: move every weight.
  for weight in model.decoder.weights:
    if weight.dtype == tf.float32:
      weight.assign(weight + rng.normal(size=weight.shape).astype(np.float32) * 0.05)
  return model


def _float_params(model, images, context):
  return model.decoder(model.likelihood.network_input(tf.constant(images, tf.float32)),
                       tf.constant(context, tf.float32)).numpy()


def test_network_input_rounds_the_float_scaling():
  pixels = np.arange(256)
  np.testing.assert_allclose(integer_gated_pixelcnn.network_input(pixels) / fxp.ONE,
                             pixels / 127.5 - 1, atol=0.5 / fxp.ONE + 1e-12)


def test_params_match_the_float_decoder_and_the_masses_its_likelihood(images):
  model = _model(images)
  crop = images[:2]  # The float layers are built for 32 x 32 (their input spec).
  context = np.random.default_rng(2).normal(size=crop.shape[:3] + (2,)).round(3)
  network = integer_gated_pixelcnn.GatedPixelCNN(model.decoder, crop.shape[1:])
  params = network.params(crop, fxp.quantize(context))
  expected = _float_params(model, crop, context)
  np.testing.assert_allclose(params / 2.0 ** integer_gated_pixelcnn.PARAMS_BITS, expected,
                             atol=0.02)
  # The coder's probabilities: log2 masses against the float likelihood, per channel.
  masses = mixture_masses.pixel_masses(params, crop, model.likelihood.num_mixtures,
                                       integer_gated_pixelcnn.PARAMS_BITS)
  chosen = np.take_along_axis(masses, crop[..., None].astype(np.int64), axis=-1)[..., 0]
  expected_bits = model.likelihood.pixel_log_prob(
      tf.constant(expected), tf.constant(crop, tf.float32)).numpy() / np.log(2)
  # Where a channel or an earlier one of its pixel is below 2^-13 under the float model, the
  # masses' floor (2^-30 per component) decides: compared only where it does not.
  kept = np.cumsum(expected_bits < -13, axis=-1) == 0
  assert kept.mean() > 0.8
  np.testing.assert_allclose((np.log2(chosen) - mixture_masses.MASS_BITS)[kept],
                             expected_bits[kept], atol=0.05)


@pytest.mark.parametrize('window', [(7, 4), (4, 2), (1, 1)])
def test_pixel_by_pixel_gives_the_parallel_integers(images, window):
  """Decoding pixel by pixel sees the pixels decoded so far and gives exactly `params`."""
  model = _model(images, [f'gated_pixelcnn.GatedPixelCNN.window_size = {window}'])
  crop = images[:2, :6, :5].astype(np.int64)
  context = fxp.quantize(np.random.default_rng(3).normal(size=crop.shape[:3] + (2,)))
  network = integer_gated_pixelcnn.GatedPixelCNN(model.decoder, crop.shape[1:])
  expected = network.params(crop, context)
  seen = np.zeros_like(expected)

  def choose_pixel(params, row, col):
    seen[:, row, col] = params
    return crop[:, row, col]

  decoded = network.decode_pixels(context, choose_pixel)
  np.testing.assert_array_equal(decoded, crop)
  np.testing.assert_array_equal(seen, expected)
