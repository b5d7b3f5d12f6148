"""Tests of integer_conv_flow.py: the affine conv AF prior on the latent grid, against the float
prior of a tiny gin/cifar10_resnet_vlae.gin model (weights moved off their identity init): the
network's shifts and scales, the exact round trip through an ANS stack, and its net cost against
the float flow's log-determinant."""

import constriction
import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from vlae_tf import gin_parsing
from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import integer_conv_flow
from vlae_tf.models import flows
from vlae_tf.models import vlae as model_lib


@pytest.fixture(scope='module')
def prior():
  gin.clear_config()
  gin_parsing.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'],
                        ['LATENT_CHANNELS = 3'])
  keras.utils.set_random_seed(0)
  model = model_lib.make_model()
  model.prior.build()
  rng = np.random.default_rng(1)
  for weight in model.prior.weights:
    weight.assign(weight + rng.normal(size=weight.shape).astype(np.float32) * 0.15)
  return model.prior


def _z(prior, count, seed):
  return np.rint(np.random.default_rng(seed).normal(size=(count, *prior.latent_shape)) * fxp.ONE)


def test_shifts_and_scales_match_the_float_network(prior):
  z = _z(prior, 2, 2)
  shift, scale = integer_conv_flow._MaskedNetwork(prior.networks[0])(z)  # pylint: disable=protected-access
  float_shift, log_scale = flows.shift_and_log_scale(
      prior.networks[0](tf.constant(z / fxp.ONE, tf.float32)))
  np.testing.assert_allclose(shift / fxp.ONE, float_shift.numpy(), atol=0.01)
  np.testing.assert_allclose(np.log(scale / 2.0 ** integer_conv_flow.SCALE_BITS),
                             log_scale.numpy(), atol=0.01)
  assert np.std(log_scale.numpy()) > 0.05  # The scales are not all one.


def test_round_trip_is_exact_and_costs_the_flow_log_determinant(prior):
  flow = integer_conv_flow.ConvFlowPrior(prior)
  z = _z(prior, 3, 3).astype(np.int64)
  initial = np.random.default_rng(4).integers(1, 2 ** 32, size=64, dtype=np.uint32)
  coder = constriction.stream.stack.AnsCoder(initial.copy())
  eps, pushed, popped = flow.encode(coder, z)
  words = coder.get_compressed()
  decoder = constriction.stream.stack.AnsCoder(words.copy())
  np.testing.assert_array_equal(flow.decode(decoder, eps), z)
  np.testing.assert_array_equal(decoder.get_compressed(), initial)  # The stack is as it was.
  # eps against the float inverse, and the net bits against its log-determinant.
  bijector = prior.bijector()
  expected_eps = bijector.inverse(tf.constant(z / fxp.ONE, tf.float32)).numpy()
  np.testing.assert_allclose(eps / fxp.ONE, expected_eps, rtol=0.01, atol=0.02)
  log_det = -bijector.inverse_log_det_jacobian(
      tf.constant(z / fxp.ONE, tf.float32), event_ndims=3).numpy().sum() / np.log(2)
  # Net bits = sum log2 s of the integer steps: the float log-determinant to the fixed-point
  # resolution (well below a thousandth of a bit per element; the scales are checked above).
  assert abs((pushed - popped) - log_det) < 1e-3 * z.size, (pushed - popped, log_det)
  assert popped == integer_conv_flow.SCALE_BITS * z.size * len(prior.networks)
