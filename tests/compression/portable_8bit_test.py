"""Tests of portable_8bit.py: exact round trips of real 8-bit images (CIFAR-10 test images)
through a tiny gin/cifar10_resnet_vlae.gin model (weights moved off their init), and the code
length against what the coder spends."""

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vlae_tf import errors
from vlae_tf import gin_parsing
from vlae_tf.compression import portable_8bit
from vlae_tf.data import datasets
from vlae_tf.models import vlae as model_lib


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('cifar10', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(5)]).astype(np.uint8)


def _model(images, seed=0):
  gin.clear_config()
  gin_parsing.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'])
  keras.utils.set_random_seed(seed)
  model = model_lib.make_model()
  model.initialize(images[:4].astype(np.float32))
  rng = np.random.default_rng(seed + 1)  # Trained weights are not at their init.
  for weight in model.weights:
    if weight.dtype == tf.float32:
      weight.assign(weight + rng.normal(size=weight.shape).astype(np.float32) * 0.05)
  return model


def test_round_trip_is_exact_and_costs_the_ideal_code_length(images):
  coder = portable_8bit.PortableMixtureCoder(_model(images), first_batch=2, largest_batch=4,
                                             growth_percent=50)
  words, lengths, initial_bits = coder.encode(images)
  decoded, leftover = coder.decode(words, len(images))
  np.testing.assert_array_equal(decoded, images)
  np.testing.assert_array_equal(leftover, coder.initial_words())  # The chain ends where it began.
  spent = 32 * len(words) - initial_bits
  assert 0.98 * lengths.net < spent < 1.02 * lengths.net + 64, (spent, lengths)
  assert lengths.pixels > 0 and lengths.latent_pushed > 0 and lengths.latent_popped > 0
  again, _, _ = coder.encode(images)
  np.testing.assert_array_equal(again, words)


def test_binary_models_are_refused(images):
  del images
  gin.clear_config()
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'])
  with pytest.raises(errors.UnsupportedModelError, match='8-bit portable codec'):
    portable_8bit.PortableMixtureCoder(model_lib.make_model())
