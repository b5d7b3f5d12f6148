"""Tests of bitsback.py: exact round trips through real (tiny) models, and code lengths.

The models are the tiny versions of shipped experiments (gin/testing/tiny.gin), initialized on real
static MNIST test images: the AF prior VLAE of Table 1, the same with a Gaussian prior (Table 3),
the plain VAE with an IAF posterior and a factorized decoder, and the PixelCNN without z.
"""

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vlae_tf import errors
from vlae_tf.compression import bitsback
from vlae_tf.data import datasets
from vlae_tf import gin_parsing
from vlae_tf.models import vlae as model_lib


def test_batch_sizes_cover_the_chain_and_grow_with_what_is_coded():
  sizes = bitsback.batch_sizes(10000, first=1, largest=500, growth_percent=5)
  assert sum(sizes) == 10000 and min(sizes) >= 1 and max(sizes) <= 500
  assert max(bitsback.batch_sizes(20000, first=1, largest=500, growth_percent=5)) == 500
  done = np.cumsum([0] + sizes[:-1])
  # Each batch holds at most 5% of the images already coded (or `first`): its pops fit on the stack.
  assert all(size <= max(1, d * 5 // 100) or size == 10000 - d for size, d in zip(sizes, done))
  assert bitsback.batch_sizes(3, 4, 10, 5) == [3]
  assert bitsback.batch_sizes(0, 1, 10, 5) == []
  with pytest.raises(ValueError, match='Bad batch schedule'):
    bitsback.batch_sizes(5, 0, 10, 5)


CONFIGS = {
    'af_prior': ['mnist_vlae.gin'],
    'gaussian_prior': ['mnist_vlae.gin', 'models/gaussian_prior.gin'],
    'iaf_posterior_factorized_decoder': ['mnist_iaf_vae.gin'],
    'no_latent': ['dynamic_mnist_pixelcnn.gin'],
}


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('static_mnist', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(9)])


def _model(gin_files, images, seed):
  gin.clear_config()
  gin_parsing.parse_gin(list(gin_files) + ['testing/tiny.gin'])
  keras.utils.set_random_seed(seed)
  model = model_lib.make_model()
  model.initialize(images[:4])
  return model


@pytest.mark.parametrize('name', [
    'af_prior', 'gaussian_prior',
    pytest.param('iaf_posterior_factorized_decoder', marks=pytest.mark.slow),
    pytest.param('no_latent', marks=pytest.mark.slow)])
def test_round_trip_is_exact_and_costs_the_ideal_code_length(name, images):
  model = _model(CONFIGS[name], images, seed=0)
  coder = bitsback.BitsBackCoder(model, first_batch=2, largest_batch=4, growth_percent=50)
  assert coder.schedule(len(images)) == [2, 2, 2, 3]
  words, lengths, initial_bits = coder.encode(images)
  decoded, leftover = coder.decode(words, len(images))
  np.testing.assert_array_equal(decoded, images)
  np.testing.assert_array_equal(leftover, coder.initial_words())  # The chain ends where it began.
  # The coder spends the information it counts (its rounding of probabilities is tiny): words
  # beyond the initial ones are the images' cost. (It can spend a little less: at the bottom of an
  # empty stack, symbols at the start of their range are free, which the PixelCNN without z, with
  # no initial words, gets for its last background pixels.)
  spent = 32 * len(words) - initial_bits
  assert 0.85 * lengths.net < spent < 1.02 * lengths.net + 64, (spent, lengths)
  assert lengths.pixels > 0 and (lengths.latent_pushed > 0) == model.has_latent
  # Deterministic: the same images give the same words.
  again, _, _ = coder.encode(images)
  np.testing.assert_array_equal(again, words)


@pytest.mark.slow
def test_decoding_with_other_weights_does_not_give_the_images(images):
  model = _model(CONFIGS['af_prior'], images, seed=0)
  words, _, _ = bitsback.BitsBackCoder(model).encode(images)
  other = bitsback.BitsBackCoder(_model(CONFIGS['af_prior'], images, seed=1))
  try:
    decoded, leftover = other.decode(words, len(images))
  except ValueError:  # A value far outside a coded window: also a detected failure.
    return
  assert not (np.array_equal(decoded, images) and
              np.array_equal(leftover, other.initial_words()))


def test_eight_bit_models_are_refused(shared_data):
  del shared_data
  gin_parsing.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'])
  with pytest.raises(errors.UnsupportedModelError, match='binary images'):
    bitsback.BitsBackCoder(model_lib.make_model())
