"""Tests of 'mixed_float16' (layers/precision.py) and its dynamic loss scale
(training/loss_scaling.py) on CPU: float16 layers, float32 everything the loss and the optimizer
see, overflow steps skipped without counting as bad steps, the scale in the checkpoint, and
training parity with float32 on the tiny real VLAE. Resuming a float16 run is loop_test.py's.
"""

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import doubles

from vlae_tf import gin_parsing
from vlae_tf.data import datasets
from vlae_tf.layers import precision
from vlae_tf.training import loss_scaling
from vlae_tf.training import settings
from vlae_tf.training import trainer as trainer_lib


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('static_mnist', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(12)])


def test_an_unknown_precision_is_one_line_listing_the_values():
  with pytest.raises(ValueError) as raised:
    precision.check('float16')
  assert str(raised.value) == ("VLAE.precision must be one of 'float32', 'mixed_bfloat16', "
                               "'mixed_float16'; got 'float16'.")


def _bare_trainer(strategy, loss_scale, global_batch_size=4):
  """A trainer of a fresh noiseless double with `loss_scale`, not initialized (to restore into)."""
  with strategy.scope():
    model, averaged = doubles.DeterministicVLAE(), doubles.DeterministicVLAE()
    return trainer_lib.Trainer(strategy, model, averaged, keras.optimizers.Adamax(0.01),
                               global_batch_size=global_batch_size, free_bits_lambda=0.0,
                               ema_decay=0.9, seed=0, loss_scale=loss_scale)


def _trainer(strategy, loss_scale, offset=0.0, global_batch_size=4):
  """A trainer of the noiseless double with `loss_scale`; `offset` NaN makes every loss NaN."""
  trainer = _bare_trainer(strategy, loss_scale, global_batch_size)
  model = trainer.model
  trainer.initialize(doubles.binary_images(1))
  doubles.fill_deterministically(model)
  trainer.ema.copy()
  model.offset.assign(offset)
  return trainer


def _batches(count=12):
  return iter(tf.data.Dataset.from_tensor_slices(doubles.binary_images(count, seed=7)).batch(4)
              .repeat())


def test_overflows_are_skipped_halve_the_scale_and_are_not_bad_steps():
  strategy = doubles.two_replicas()
  with strategy.scope():
    scale = loss_scaling.DynamicLossScale(initial_scale=2.0**127, growth_steps=2)
  trainer = _trainer(strategy, scale)
  before = [v.numpy() for v in trainer.model.variables]
  metrics = trainer.train_loop(_batches(), 1, max_consecutive_bad_steps=1)
  # Gradients above 2 times 2^127 overflow float32: skipped, not bad, the scale halved; nothing
  # else moved.
  assert (metrics['loss_scale_skips'], metrics['bad_steps']) == (1.0, 0.0)
  assert metrics['loss_scale'] == 2.0**126
  assert int(trainer.consecutive_bad_steps.numpy()) == 0 and int(trainer.step.numpy()) == 1
  for want, variable in zip(before, trainer.model.variables):
    np.testing.assert_array_equal(variable.numpy(), want)
  assert int(trainer.optimizer.iterations.numpy()) == 0
  # Step by step: an overflow halves the scale; 2 finite steps in a row double it (while the
  # double is finite); no step is bad.
  iterator = _batches()
  for _ in range(30):
    old_scale, old_good = float(scale.scale.numpy()), int(scale.good_steps.numpy())
    metrics = trainer.train_loop(iterator, 1, max_consecutive_bad_steps=1)
    assert metrics['bad_steps'] == 0
    if metrics['loss_scale_skips']:
      assert (metrics['loss_scale'], int(scale.good_steps.numpy())) == (old_scale / 2, 0)
    elif old_good + 1 == 2 and old_scale * 2 < float(np.finfo(np.float32).max):
      assert (metrics['loss_scale'], int(scale.good_steps.numpy())) == (old_scale * 2, 0)
    else:
      assert (metrics['loss_scale'], int(scale.good_steps.numpy())) == (old_scale, old_good + 1)
  assert int(trainer.optimizer.iterations.numpy()) >= 10  # Most steps applied.


def test_a_non_finite_loss_is_a_bad_step_whatever_the_scale():
  trainer = _trainer(doubles.one_replica(), loss_scaling.DynamicLossScale(), offset=np.nan)
  metrics = trainer.train_loop(_batches(), 5, max_consecutive_bad_steps=3)
  assert metrics['bad_steps'] == 3 and metrics['loss_scale_skips'] == 0
  assert int(trainer.consecutive_bad_steps.numpy()) == 3  # The loop stopped at the limit.
  assert float(trainer.loss_scale.scale.numpy()) == 2.0**15 / 8  # Halved on every skip.


def test_unscaled_gradients_equal_the_float32_ones():
  """Scaling the loss by 2^15 and dividing the gradients by it gives the same step."""
  strategy = doubles.two_replicas()
  with strategy.scope():
    scale = loss_scaling.DynamicLossScale()
  scaled, plain = _trainer(strategy, scale), _trainer(strategy, None)
  for trainer in (scaled, plain):
    trainer.train_loop(_batches(), 3)
  for a, b in zip(scaled.model.variables, plain.model.variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_the_checkpoint_keeps_the_scale(tmp_path):
  strategy = doubles.one_replica()
  with strategy.scope():
    scale = loss_scaling.DynamicLossScale()
  trainer = _trainer(strategy, scale)
  scale.scale.assign(1024.0)
  scale.good_steps.assign(7)
  path = trainer.checkpoint().save(str(tmp_path / 'ckpt'))
  with strategy.scope():
    restored_scale = loss_scaling.DynamicLossScale()
  restored = _bare_trainer(strategy, restored_scale)
  restored.restore(path)
  assert (float(restored_scale.scale.numpy()), int(restored_scale.good_steps.numpy())) == (
      1024.0, 7)


def test_a_checkpoint_of_another_precision_restores_with_a_fresh_scale(tmp_path):
  """A run's next piece may switch to mixed_float16 (run_directory.RESUMABLE_ARITHMETIC)."""
  strategy = doubles.one_replica()
  float32 = _trainer(strategy, None)
  float32.train_loop(_batches(), 2)
  path = float32.checkpoint().save(str(tmp_path / 'ckpt'))
  with strategy.scope():
    scale = loss_scaling.DynamicLossScale()
  float16 = _bare_trainer(strategy, scale)
  model = float16.model
  float16.restore(path)
  assert int(float16.step.numpy()) == 2 and float(scale.scale.numpy()) == 2.0**15
  for want, got in zip(float32.model.variables, model.variables):
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def _tiny_trainer(precision_name, images):
  gin.clear_config()
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'],
                        [f"VLAE.precision = '{precision_name}'"])
  keras.utils.set_random_seed(0)
  trainer = trainer_lib.make_trainer(doubles.one_replica(), global_batch_size=4,
                                     **settings.trainer_settings())
  trainer.initialize(tf.constant(images[:4]))
  return trainer


@pytest.mark.slow
def test_float16_training_follows_float32_on_the_tiny_vlae(images):
  """Three steps in each precision from the same weights, data and noise. The float16 run starts
  at a scale of 2^4: the tiny model's gradients reach a few hundred (2^8 already overflows
  float16), so from the default 2^15 its first steps would be skipped while the scale comes down
  (as they should), and the steps would no longer pair up."""
  runs = {}
  for precision_name in ('float32', 'mixed_float16'):
    trainer = _tiny_trainer(precision_name, images)
    if trainer.loss_scale is not None:
      trainer.loss_scale.scale.assign(2.0**4)
    iterator = iter(tf.data.Dataset.from_tensor_slices(images).batch(4))
    runs[precision_name] = trainer, [trainer.train_loop(iterator, 1) for _ in range(3)]
  float32_trainer, float32_metrics = runs['float32']
  float16_trainer, float16_metrics = runs['mixed_float16']
  assert float32_trainer.loss_scale is None
  assert float(float16_trainer.loss_scale.scale.numpy()) == 2.0**4  # No overflow, no growth yet.
  for want, got in zip(float32_metrics, float16_metrics):
    assert got['bad_steps'] == 0 and got['loss_scale_skips'] == 0
    np.testing.assert_allclose(got['loss'], want['loss'], rtol=1e-2)
  # The layers computed in float16 (so the parity is not float32 against itself), with float32
  # variables, optimizer slots and averages.
  model = float16_trainer.model
  # pylint: disable-next=protected-access
  layers = [layer for layer in model.decoder._flatten_layers() if layer.weights]
  assert layers and {layer.compute_dtype for layer in layers} == {'float16'}
  assert float16_metrics[0]['loss'] != float32_metrics[0]['loss']
  for m in (model, float16_trainer.averaged_model):
    assert {precision.variable_dtype(v) for v in m.variables} <= {tf.float32, tf.bool}
  assert {v.dtype for v in float16_trainer.optimizer.variables()} <= {tf.float32, tf.int64}
  outputs = model.elbo(tf.constant(images[:2]), tf.constant([0, 1]))
  assert {t.dtype for t in outputs.values()} == {tf.float32}
