"""Every shipped experiment file builds its model and takes one training step under tiny.gin."""

import os
import pathlib

import gin
import pytest
import tensorflow as tf
import tf_keras as keras

from vlae_tf.data import datasets
from vlae_tf import gin_parsing
from vlae_tf.models import vlae as model_lib

REPO = str(pathlib.Path(__file__).resolve().parents[2])
EXPERIMENTS = sorted(name for name in os.listdir(os.path.join(REPO, 'gin'))
                     if name.endswith('.gin') and name != 'base.gin')


def test_every_table_row_has_an_experiment():
  expected = {'mnist_vlae.gin', 'dynamic_mnist_vlae.gin', 'omniglot_vlae.gin',
              'caltech101_vlae.gin', 'cifar10_resnet_vlae.gin', 'cifar10_densenet_vlae.gin',
              'cifar10_window_4x2.gin', 'cifar10_window_5x3.gin', 'cifar10_window_7x4.gin',
              'cifar10_grayscale_window.gin', 'mnist_factorized_vae.gin',
              'dynamic_mnist_pixelcnn.gin', 'dynamic_mnist_gaussian_prior.gin',
              'mnist_iaf_vae.gin'}
  assert expected <= set(EXPERIMENTS)


@pytest.mark.slow
@pytest.mark.parametrize('experiment', EXPERIMENTS)
def test_experiment_builds_and_trains_one_step(experiment, shared_data):
  gin_parsing.parse_gin([experiment, 'testing/tiny.gin'])
  name = gin.query_parameter('train.dataset')
  assert gin.query_parameter('%TRAIN_STEPS') == 3  # Shrunk by tiny.gin.
  images = next(iter(datasets.load(name, 'train', data_dir=shared_data).batch(4)))
  model = model_lib.VLAE()
  assert model.image_shape == tuple(images.shape[1:])
  model.initialize(images)
  optimizer = keras.optimizers.Adamax(learning_rate=2e-3)
  before = [v.numpy() for v in model.trainable_variables]
  with tf.GradientTape() as tape:
    terms = model.elbo(images, tf.constant([0, 1]))  # As traced by initialize: no retrace.
    loss = -tf.reduce_mean(terms['elbo'])
  gradients = tape.gradient(loss, model.trainable_variables)
  assert all(g is not None for g in gradients)
  optimizer.apply_gradients(zip(gradients, model.trainable_variables))
  assert tf.math.is_finite(loss)
  moved = [not (b == v.numpy()).all() for b, v in zip(before, model.trainable_variables)]
  assert sum(moved) > len(moved) // 2
  if 'window_' in experiment:
    width, height = model.decoder.window_size
    assert experiment == f'cifar10_window_{width}x{height}.gin'
  if 'grayscale' in experiment:
    assert model.decoder.grayscale
