"""Tests of XLA (`train.jit_compile`, accelerators.py) on CPU.

XLA draws stateless random numbers with its own algorithm (tf.random.stateless_normal under
jit_compile=True gives other numbers for the same seed), so the parity of compiled and uncompiled
steps is checked on models without noise: the noiseless double of trainer_test.py and the tiny
real PixelCNN without z. The tiny VLAE is compiled whole (TFP's flows, posterior sampling, the
importance-weighted log-likelihood): jit_compile=True raises when an op cannot be compiled.
"""

import types

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import doubles

from vlae_tf import errors
from vlae_tf import gin_parsing
from vlae_tf import seeds
from vlae_tf.data import datasets
from vlae_tf.evaluation import evaluator
from vlae_tf import accelerators
from vlae_tf import distribution
from vlae_tf.training import settings
from vlae_tf.training import trainer as trainer_lib


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('static_mnist', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(8)])


def test_unknown_values_are_one_line_listing_the_values():
  with pytest.raises(errors.CliError) as raised:
    settings.TrainSettings(dataset='static_mnist', jit_compile='on')
  message = str(raised.value).splitlines()[0]  # gin adds a line naming the configurable.
  assert message.startswith("train.jit_compile = 'on': it must be one of")
  assert "'auto', True, False" in message


def test_auto_is_off_on_cpus_and_forced_values_are_kept():
  strategy = doubles.two_replicas()
  assert not accelerators.use_xla('auto', strategy)
  assert accelerators.use_xla(True, strategy) and not accelerators.use_xla(False, strategy)
  assert accelerators.start_line(strategy, 'float32', 'auto') is None  # Nothing new on CPUs.
  assert 'slowly' in accelerators.slow_precision_note('mixed_float16', strategy)
  assert accelerators.slow_precision_note('mixed_bfloat16', strategy) is None


def _double_trainer(jit_compile):
  trainer = doubles.deterministic_trainer(doubles.two_replicas())
  compiled = trainer_lib.Trainer(
      trainer.strategy, trainer.model, trainer.averaged_model, trainer.optimizer,
      global_batch_size=4, free_bits_lambda=0.0, ema_decay=0.9, seed=0, jit_compile=jit_compile)
  compiled.build()
  return compiled


def test_compiled_steps_equal_uncompiled_steps_with_two_replicas():
  batches = tf.data.Dataset.from_tensor_slices(doubles.binary_images(12, seed=5)).batch(4)
  runs = {}
  for jit_compile in (False, True):
    trainer = _double_trainer(jit_compile)
    iterator = iter(batches)
    metrics = [trainer.train_loop(iterator, 1) for _ in range(3)]
    runs[jit_compile] = metrics, [v.numpy() for v in trainer.averaged_model.variables]
  (plain, plain_averages), (xla, xla_averages) = runs[False], runs[True]
  assert plain[0]['loss'] != plain[-1]['loss']  # The steps moved the model.
  for want, got in zip(plain, xla):
    for key in trainer_lib.METRIC_KEYS:
      np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
  for want, got in zip(plain_averages, xla_averages):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_an_op_without_xla_kernel_raises_instead_of_running_uncompiled():

  class StringOp(doubles.DeterministicVLAE):

    def elbo(self, x, seed, training=None):
      outputs = super().elbo(x, seed, training)
      length = tf.cast(tf.strings.length(tf.strings.as_string(outputs['kl'])), tf.float32)
      return dict(outputs, kl=outputs['kl'] + 0.0 * length)

  strategy = doubles.one_replica()
  with strategy.scope():
    model, averaged = StringOp(), StringOp()
    trainer = trainer_lib.Trainer(strategy, model, averaged, keras.optimizers.Adamax(0.01),
                                  global_batch_size=2, free_bits_lambda=0.0, ema_decay=0.9,
                                  seed=0, jit_compile=True)
  trainer.initialize(doubles.binary_images(2))
  batches = tf.data.Dataset.from_tensor_slices(doubles.binary_images(2)).batch(2)
  with pytest.raises(tf.errors.InvalidArgumentError, match='(?i)compil|XLA'):
    trainer.train_loop(iter(batches), 1)


def _tiny(experiment, *bindings):
  gin.clear_config()
  gin_parsing.parse_gin([experiment, 'testing/tiny.gin'], list(bindings))


def test_real_pixelcnn_steps_and_log_likelihoods_compiled_equal_uncompiled(images):
  """The tiny PixelCNN without z: its loss and log p(x) have no noise, so XLA must agree."""
  runs = {}
  for jit_compile in (False, True):
    _tiny('dynamic_mnist_pixelcnn.gin', f'train.jit_compile = {jit_compile}')
    keras.utils.set_random_seed(3)
    strategy = doubles.two_replicas()
    trainer = trainer_lib.make_trainer(strategy, global_batch_size=4,
                                       **settings.trainer_settings())
    assert trainer.jit_compile is jit_compile
    trainer.initialize(tf.constant(images[:4]))
    iterator = iter(tf.data.Dataset.from_tensor_slices(images).batch(4))
    losses = [trainer.train_loop(iterator, 1)['loss'] for _ in range(2)]
    model = trainer.averaged_model
    statistics = distribution.DistributedEvaluator(
        strategy, lambda x, seed: {'log_likelihood': model.log_likelihood(x, 2, seed)},
        seed=0, salt=seeds.EVALUATION_SALT, per_example=True, jit_compile=jit_compile)
    batch = (tf.constant(images[:4]), tf.ones([4]))
    runs[jit_compile] = losses, statistics.evaluate_batch(batch, 0)[1]['log_likelihood']
  (plain_losses, plain_values), (xla_losses, xla_values) = runs[False], runs[True]
  np.testing.assert_allclose(xla_losses, plain_losses, rtol=1e-5)
  np.testing.assert_allclose(xla_values, plain_values, rtol=1e-5)


@pytest.mark.slow
def test_the_vlae_compiles_whole_for_training_and_evaluation(images, run_dir, shared_data):
  """The tiny VLAE (AF prior, posterior sampling) under XLA: a step compiles and trains, and the
  fixture run's importance-weighted evaluation compiles (one replica: XLA compiles per device)."""
  _tiny('mnist_vlae.gin', 'train.jit_compile = True')
  trainer = trainer_lib.make_trainer(doubles.one_replica(), global_batch_size=2,
                                     **settings.trainer_settings())
  trainer.initialize(tf.constant(images[:2]))
  metrics = trainer.train_loop(iter(tf.data.Dataset.from_tensor_slices(images).batch(2)), 1)
  assert metrics['bad_steps'] == 0 and np.isfinite(metrics['loss'])
  compiled = evaluator.CheckpointEvaluator(
      run_dir, 'test', 4, 2, 2, str(shared_data), None, 0, doubles.one_replica(),
      per_example=True, jit_compile=True)
  assert compiled.jit_compile
  report, per_image = compiled(compiled.checkpoint, progress=False)
  assert report['num_examples'] == 2 and np.all(np.isfinite(per_image['nll']))
  # log p(x) estimated with K=4 is at least the ELBO in expectation; with one draw of noise, a
  # compiled estimator of the same quantity lands within a few nats of it (a sign or a chunk
  # summed twice would not: the tiny model's NLL is about 540 nats).
  assert report['nll_nats'] < report['nll_bound_nats'] + 5.0


def test_the_start_line_on_gpus_names_devices_precision_and_xla(monkeypatch):
  """What bin/train and bin/eval log at start on a machine with GPUs (faked: this one has none)."""
  gpus = [tf.config.PhysicalDevice(f'/physical_device:GPU:{i}', 'GPU') for i in range(2)]
  monkeypatch.setattr(tf.config, 'list_physical_devices',
                      lambda kind=None: gpus if kind == 'GPU' else [])
  monkeypatch.setattr(tf.config.experimental, 'get_device_details', lambda device: {
      'device_name': 'NVIDIA A100-SXM4-80GB', 'compute_capability': (8, 0)})
  strategy = types.SimpleNamespace(
      num_replicas_in_sync=2, extended=types.SimpleNamespace(worker_devices=(
          '/job:localhost/replica:0/task:0/device:GPU:0',
          '/job:localhost/replica:0/task:0/device:GPU:1')))
  assert accelerators.use_xla('auto', strategy)
  assert accelerators.start_line(strategy, 'mixed_float16', 'auto') == (
      'GPUs: 2x NVIDIA A100-SXM4-80GB, compute capability 8.0 (2 replicas); precision '
      "mixed_float16; XLA on (train.jit_compile = 'auto')")
  assert 'XLA off' in accelerators.start_line(strategy, 'float32', False)
  assert accelerators.slow_precision_note('mixed_float16', strategy) is None
