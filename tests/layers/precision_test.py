"""Tests of mixed precision (VLAE.precision, vlae_tf/layers/precision.py) on tiny real models.

With 'mixed_bfloat16' the convolutions and dense layers of the encoder, context network and decoder
compute in bfloat16 with float32 variables; flows, densities, KL, loss, optimizer and Polyak
averages stay float32. 'float32' must be today's model, bit for bit.
"""

import pathlib

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vlae_tf.compression import bitsback
from vlae_tf.data import datasets
from vlae_tf.export import saved_model
from vlae_tf import gin_parsing
from vlae_tf.layers import precision
from vlae_tf.models import vlae as model_lib
from vlae_tf import distribution
from vlae_tf.training import settings
from vlae_tf.training import trainer as trainer_lib

DECODERS = {
    'depth_limited': ['mnist_vlae.gin', 'models/depth_limited_decoder.gin'],
    'authors': ['mnist_vlae.gin'],
}
FIXTURE_RUN = pathlib.Path(__file__).resolve().parents[1] / 'testdata' / 'run_e06a543'
# |log p(x) in bfloat16 - log p(x) in float32| for the same weights and samples, relative.
LOG_LIKELIHOOD_RTOL = 1e-2


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('static_mnist', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(9)])


def _model(gin_files, precision_name, images=None, seed=0, bindings=()):
  gin.clear_config()
  gin_parsing.parse_gin(list(gin_files) + ['testing/tiny.gin'],
                        [f"VLAE.precision = '{precision_name}'", *bindings])
  keras.utils.set_random_seed(seed)
  model = model_lib.make_model()
  if images is not None:
    model.initialize(images[:4])
  return model


def _networks(model):
  return {'encoder': model.encoder, 'context_network': model.context_network,
          'decoder': model.decoder}


def test_unknown_precisions_are_refused():
  with pytest.raises(ValueError, match='precision must be one of'):
    precision.check('float16')


@pytest.mark.parametrize('decoder', sorted(DECODERS))
def test_networks_compute_in_bfloat16_with_float32_variables(decoder, images):
  mixed = _model(DECODERS[decoder], 'mixed_bfloat16', images)
  reference = _model(DECODERS[decoder], 'float32', images)
  for name, network in _networks(mixed).items():
    layers = list(network._flatten_layers(  # pylint: disable=protected-access
        include_self=True, recursive=True))
    assert {layer.compute_dtype for layer in layers} == {'bfloat16'}, name
    assert {layer.variable_dtype for layer in layers} == {'float32'}, name
  for flow in (mixed.prior, mixed.posterior):
    assert flow.compute_dtype == 'float32'
  # Every variable is stored in float32 (the weight-norm flags are bool).
  assert {v.dtype for v in mixed.variables} == {tf.float32, tf.bool}
  assert {getattr(v, 'true_dtype', v.dtype) for v in mixed.variables} == {tf.float32, tf.bool}
  assert len(mixed.trainable_variables) == len(reference.trainable_variables)
  assert [v.shape for v in mixed.trainable_variables] == [
      v.shape for v in reference.trainable_variables]
  for flow in (mixed.prior,):
    assert flow.trainable_variables, 'the AF prior must keep trainable variables'
  # Intermediate tensors: the context map is bfloat16, the likelihood parameters and the
  # encoder's posterior parameters float32. The depth-limited decoder computes every op in
  # bfloat16; the first author's decoder only its convolutions: the bias adds, ELUs, gates and
  # residual sums after them are float32 (`TiedConv2D.call`), and so is its output.
  x = tf.constant(images[:2])
  encoded = mixed.encoder(mixed.likelihood.network_input(x))
  assert {encoded.loc.dtype, encoded.scale.dtype, encoded.context.dtype} == {tf.float32}
  z = mixed.posterior(encoded.loc, encoded.scale, encoded.context).sample(seed=[1, 2])
  context = mixed.context_network(z)
  assert context.dtype == tf.bfloat16
  network_input = mixed.likelihood.network_input(x)
  raw = mixed.decoder(network_input, context)
  assert raw.dtype == (tf.float32 if decoder == 'authors' else tf.bfloat16)
  assert mixed.decoder_params(x, z).dtype == tf.float32
  graph = tf.function(mixed.decoder).get_concrete_function(network_input, context).graph
  dtypes = {}
  for op in graph.get_operations():
    if op.type in ('Conv2D', 'Elu', 'Sigmoid', 'Tanh'):
      dtypes.setdefault(op.type, set()).add(op.outputs[0].dtype)
  assert dtypes['Conv2D'] == {tf.bfloat16}
  elementwise = {dtype for op_type, found in dtypes.items() if op_type != 'Conv2D'
                 for dtype in found}
  assert elementwise == ({tf.float32} if decoder == 'authors' else {tf.bfloat16}), dtypes


@pytest.mark.parametrize('decoder', sorted(DECODERS))
def test_objectives_are_float32_finite_and_close_to_float32(decoder, images):
  reference = _model(DECODERS[decoder], 'float32', images)
  mixed = _model(DECODERS[decoder], 'mixed_bfloat16')
  model_lib.create_variables(mixed)
  for target, source in zip(mixed.variables, reference.variables):
    target.assign(source)
  x = tf.constant(images)
  seed = tf.constant([3, 4])
  terms = mixed.elbo(x, seed)
  for key, value in terms.items():
    assert value.dtype == tf.float32, key
    assert np.all(np.isfinite(value.numpy())), key
  log_likelihood = {name: tf.function(lambda x, m=m: m.log_likelihood(x, 8, seed, chunk_size=4))(x)
                    for name, m in (('mixed', mixed), ('float32', reference))}
  assert log_likelihood['mixed'].dtype == tf.float32
  assert np.all(np.isfinite(log_likelihood['mixed'].numpy()))
  np.testing.assert_allclose(log_likelihood['mixed'], log_likelihood['float32'],
                             rtol=LOG_LIKELIHOOD_RTOL)
  # Not trivially equal: the decoder really computed in bfloat16.
  assert not np.array_equal(log_likelihood['mixed'], log_likelihood['float32'])


def test_float32_is_the_default_and_leaves_every_layer_alone(images):
  """The bound default, and a run's config.gin from before the setting (tests/testdata): float32.

  Bit for bit today's numbers: old_runs_test.py restores that old run and compares.
  """
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'])
  assert gin.query_parameter('vlae.VLAE.precision') == 'float32'  # base.gin
  bound = model_lib.make_model()
  bound.initialize(images[:4])
  gin.clear_config()
  gin_parsing.parse_gin([str(FIXTURE_RUN / 'config.gin')], base=False)
  with pytest.raises(ValueError):
    gin.query_parameter('vlae.VLAE.precision')
  old = model_lib.make_model()  # The argument's default.
  model_lib.create_variables(old)
  for model in (bound, old):
    assert model.precision == 'float32'
    # pylint: disable-next=protected-access
    for layer in model._flatten_layers(include_self=True, recursive=True):
      assert layer.dtype_policy.name == 'float32', layer.name
    assert not any(hasattr(v, 'true_dtype') for v in model.variables)  # No AutoCastVariable.


@pytest.mark.slow
def test_training_steps_with_two_replicas(images):
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'],
                        ["VLAE.precision = 'mixed_bfloat16'"])
  strategy = distribution.make_strategy()
  assert strategy.num_replicas_in_sync == 2  # conftest: two logical CPU devices.
  trainer = trainer_lib.make_trainer(strategy, global_batch_size=4,
                                     **settings.trainer_settings())
  trainer.initialize(tf.constant(images[:4]))
  before = [v.numpy() for v in trainer.model.trainable_variables]
  batches = tf.data.Dataset.from_tensor_slices(images).repeat().batch(4)
  metrics = trainer.train_loop(iter(batches), 3)
  assert metrics['bad_steps'] == 0
  for key in ('loss', 'elbo', 'kl', 'log_px_z'):
    assert np.isfinite(metrics[key]), key
  assert any(not np.array_equal(a, v.numpy())
             for a, v in zip(before, trainer.model.trainable_variables))
  for model in (trainer.model, trainer.averaged_model):
    assert model.precision == 'mixed_bfloat16'
    assert {getattr(v, 'true_dtype', v.dtype) for v in model.variables} == {tf.float32, tf.bool}
  for variable in trainer.optimizer.variables():
    assert variable.dtype in (tf.float32, tf.int64), variable.name


@pytest.mark.parametrize('decoder', [
    'depth_limited', pytest.param('authors', marks=pytest.mark.slow)])
def test_bitsback_round_trip_is_exact(decoder, images):
  model = _model(DECODERS[decoder], 'mixed_bfloat16', images)
  coder = bitsback.BitsBackCoder(model, first_batch=2, largest_batch=4, growth_percent=50)
  words, lengths, _ = coder.encode(images)
  decoded, leftover = coder.decode(words, len(images))
  np.testing.assert_array_equal(decoded, images)
  np.testing.assert_array_equal(leftover, coder.initial_words())
  assert lengths.pixels > 0


@pytest.mark.slow
def test_export_computes_as_trained(images, tmp_path):
  model = _model(DECODERS['depth_limited'], 'mixed_bfloat16', images)
  module = saved_model.ServingModule(model, log_prob_chunk_size=2)
  x = tf.constant(images[:2])
  want = module.log_prob(x, 2, seed=3)['log_prob']
  path = str(tmp_path / 'mixed')
  saved_model.save_atomically(module, path)
  loaded = tf.saved_model.load(path)
  got = loaded.log_prob(x, 2, seed=3)['log_prob']
  assert got.dtype == tf.float32 and np.all(np.isfinite(got.numpy()))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert loaded.sample(2, seed=3)['images'].shape[0] == 2
