"""Tests of gradient accumulation (`train.accumulation_steps`, training/replica_gradients.py): k
micro-batches per replica make the step of the whole batch.

The parity cases use models without noise (the noiseless double of trainer_test.py and the tiny
real PixelCNN without z), since micro-batch m draws its noise with its own seed.
"""

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import doubles

from vlae_tf import errors
from vlae_tf import gin_parsing
from vlae_tf.data import datasets
from vlae_tf.models import objectives
from vlae_tf.training import settings
from vlae_tf.training import trainer as trainer_lib


def _double_trainer(accumulation_steps, free_bits_lambda, soft_free_bits, jit_compile=False):
  """Two replicas of the noiseless double, fixed weights, a global batch of 8."""
  strategy = doubles.two_replicas()
  with strategy.scope():
    model, averaged = doubles.DeterministicVLAE(), doubles.DeterministicVLAE()
    soft = (objectives.SoftFreeBits(model.num_dims, lambda_per_dim=free_bits_lambda)
            if soft_free_bits else None)
    trainer = trainer_lib.Trainer(
        strategy, model, averaged, keras.optimizers.Adamax(0.01), global_batch_size=8,
        free_bits_lambda=free_bits_lambda, ema_decay=0.9, seed=0, soft_free_bits=soft,
        ema_warmup=True, jit_compile=jit_compile, accumulation_steps=accumulation_steps)
  trainer.initialize(doubles.binary_images(1))
  doubles.fill_deterministically(model)
  trainer.ema.copy()
  return trainer


def _state(trainer):
  state = [v.numpy() for v in trainer.model.variables + trainer.averaged_model.variables]
  state += [v.numpy() for v in trainer.optimizer.variables()]
  if trainer.soft_free_bits is not None:
    state.append(trainer.soft_free_bits.gamma.numpy())
  return state


@pytest.mark.parametrize('free_bits_lambda, soft_free_bits, jit_compile', [
    (0.0, False, False),  # Every micro-batch's KL above the threshold.
    (10.0, False, False),  # Every one below it.
    (0.05, True, False),  # Soft free bits: gamma follows the batch's KL.
    (0.0, False, True),  # Each micro-batch compiled by XLA.
])
def test_accumulated_steps_equal_the_whole_batch_steps(free_bits_lambda, soft_free_bits,
                                                       jit_compile):
  batches = tf.data.Dataset.from_tensor_slices(doubles.binary_images(24, seed=9)).batch(8)
  runs = {}
  for k in (1, 2):
    trainer = _double_trainer(k, free_bits_lambda, soft_free_bits, jit_compile and k == 2)
    iterator = iter(batches)
    metrics = [trainer.train_loop(iterator, 1) for _ in range(3)]
    runs[k] = trainer, metrics
  (whole, whole_metrics), (accumulated, accumulated_metrics) = runs[1], runs[2]
  assert int(accumulated.step.numpy()) == 3 and int(accumulated.optimizer.iterations.numpy()) == 3
  assert whole_metrics[0]['loss'] != whole_metrics[-1]['loss']  # The steps moved the model.
  for want, got in zip(whole_metrics, accumulated_metrics):
    for key in trainer_lib.METRIC_KEYS:
      np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)
  for want, got in zip(_state(whole), _state(accumulated)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_the_real_pixelcnn_accumulates_to_the_whole_batch(shared_data):
  test = datasets.load('static_mnist', 'test', data_dir=str(shared_data))
  images = np.stack([x.numpy() for x in test.take(8)])
  runs = {}
  for k in (1, 2):
    gin.clear_config()
    gin_parsing.parse_gin(['dynamic_mnist_pixelcnn.gin', 'testing/tiny.gin'],
                          [f'train.accumulation_steps = {k}'])
    keras.utils.set_random_seed(3)
    trainer = trainer_lib.make_trainer(doubles.one_replica(), global_batch_size=4,
                                       **settings.trainer_settings())
    assert trainer.accumulation_steps == k
    trainer.initialize(tf.constant(images[:4]))
    iterator = iter(tf.data.Dataset.from_tensor_slices(images).batch(4))
    losses = [trainer.train_loop(iterator, 1)['loss'] for _ in range(2)]
    runs[k] = losses, [v.numpy() for v in trainer.model.trainable_variables]
  np.testing.assert_allclose(runs[2][0], runs[1][0], rtol=1e-5)
  for want, got in zip(runs[1][1], runs[2][1]):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_a_batch_that_does_not_split_is_one_line_naming_the_fix():
  with pytest.raises(errors.CliError) as raised:
    settings.TrainSettings(dataset='static_mnist', batch_size=8, accumulation_steps=3)
  assert str(raised.value).splitlines()[0] == (
      'train.batch_size = 8 is not a multiple of train.accumulation_steps = 3: choose an '
      'accumulation that divides the batch.')
  with pytest.raises(errors.CliError, match=r'train.accumulation_steps = 0: it must be an '
                     r'integer >= 1'):
    settings.TrainSettings(dataset='static_mnist', accumulation_steps=0)
  with pytest.raises(errors.CliError, match='a multiple of 6'):
    _double_trainer(3, 0.0, False)  # 8 images on 2 replicas of 3 micro-batches.
