"""Tests of fixed_point.py: tables against their functions, exactness whatever the summation
order, the 2^52 bound, and the integer Gaussian CDF."""

import math

import numpy as np
import pytest
from scipy import special

from vlae_tf.compression import fixed_point as fxp

ONE = fxp.ONE


def _grid(low, high):
  return np.arange(low * ONE, high * ONE + 1, 7, dtype=np.float64)


def test_the_tables_round_their_functions():
  x = _grid(-16, 16)
  np.testing.assert_allclose(fxp.elu(x) / ONE, np.where(x > 0, x / ONE, np.expm1(x / ONE)),
                             atol=1.01 / ONE)
  np.testing.assert_allclose(fxp.sigmoid(x) / ONE, special.expit(x / ONE), atol=0.51 / ONE)
  np.testing.assert_allclose(fxp.tanh(x) / ONE, np.tanh(x / ONE), atol=0.51 / ONE)
  bits = fxp.PROBABILITY_BITS
  np.testing.assert_allclose(fxp.sigmoid(x, bits) / 2.0 ** bits, special.expit(x / ONE),
                             atol=2.0 ** -bits)
  # softplus reads its input at 2^-8: its error is that step times the slope (< 1).
  np.testing.assert_allclose(fxp.softplus(x, 24) / 2.0 ** 24, np.logaddexp(0, x / ONE),
                             atol=2.0 ** -8)
  assert fxp.elu(np.array([-40.0 * ONE]))[0] == -ONE  # Saturated below the table.


def test_the_tables_are_the_ones_of_the_format():
  """The tables are part of the file format (codec 2, fixed-point v1): a change here needs a new
  codec number in codec.py, and a platform that built other tables would fail here."""
  assert fxp.table_digest() == (
      '34e0c3e016f938dba9cef3236973eedc9f509be26d37e1155ae7a7301504d847')


def test_a_layer_gives_the_same_integers_in_any_summation_order():
  rng = np.random.default_rng(0)
  fan_in, out = 300, 5
  layer = fxp.Linear(rng.normal(size=(fan_in, out)) * 0.3, rng.normal(size=out))
  x = np.rint(rng.normal(size=(7, fan_in)) * 3 * ONE)
  expected = layer(x)
  order = rng.permutation(fan_in)
  shuffled = fxp.Linear.__new__(fxp.Linear)
  shuffled.__dict__.update(layer.__dict__, kernel=layer.kernel[order])
  np.testing.assert_array_equal(shuffled(x[:, order]), expected)
  # Sums of eight blocks, added from the last: still the same integers.
  blocks = sum(np.matmul(x[:, i::8], layer.kernel[i::8]) for i in reversed(range(8)))
  np.testing.assert_array_equal(fxp.round_shift(blocks, layer.shifts) + layer.bias, expected)
  # The same reorderings of float (non-integer) products do change the last bits: the reason
  # the float codec is machine-bound.
  floats = x / ONE + 1e-3
  kernel = layer.kernel / 3.0
  assert not np.array_equal(np.matmul(floats[:, order], kernel[order]),
                            sum(np.matmul(floats[:, i::8], kernel[i::8]) for i in range(8)))


def test_a_layer_whose_sums_could_reach_2_to_52_is_refused():
  with pytest.raises(AssertionError, match='not exact in float64'):
    fxp.Linear(np.ones((1 << 19, 1)), None)


def test_the_gaussian_cdf_is_monotone_and_close_to_phi():
  cdf = fxp.GaussianCdf()
  scale = 1 << 24
  offsets = np.arange(-9 * scale, 9 * scale, scale // 997, dtype=np.int64)
  values = cdf(offsets, np.full(offsets.shape, scale))
  assert np.all(np.diff(values) >= 0)
  total = float(cdf.cdf[-1]) * (1 << cdf.SUB_BITS)
  np.testing.assert_allclose(values / total, special.ndtr(offsets / scale), atol=2e-6)
  assert math.isclose(values[len(values) // 2] / total, 0.5, abs_tol=1e-3)
