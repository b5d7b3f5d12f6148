"""Tests of mixture_masses.py: exact normalisation and floors whatever the parameters, the
channel chain, and agreement with the float likelihood (likelihoods.DiscretizedLogisticMixture)
to the fixed-point resolution."""

import numpy as np
import pytest
import tensorflow as tf

from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import mixture_masses
from vlae_tf.models import likelihoods

MIXTURES = 4


def _params(rng, shape, channels, log_scale_range=(-4.0, 0.0), spread=1.0, bits=12):
  """Float params [*shape, M (1 + 2C + P)] on the fixed-point grid (k / 2^bits), float model
  layout."""
  m, c = MIXTURES, channels
  blocks = [rng.normal(0, 2 * spread, shape + (m,)),                   # logits
            rng.uniform(-1.2 * spread, 1.2 * spread, shape + (c * m,)),  # means
            rng.uniform(*log_scale_range, shape + (c * m,)),            # log-scales
            rng.normal(0, spread, shape + (c * (c - 1) // 2 * m,))]     # coeffs (before tanh)
  return np.rint(np.concatenate(blocks, axis=-1) * 2.0 ** bits) / 2.0 ** bits


@pytest.mark.parametrize('channels', [1, 3])
def test_masses_are_floored_and_sum_to_exactly_2_to_the_52(channels):
  rng = np.random.default_rng(1)
  shape = (2, 5, 7)
  for params in (_params(rng, shape, channels),
                 _params(rng, shape, channels, (-40.0, 40.0), spread=400.0)):  # Extremes, clipped.
    pixels = rng.integers(0, 256, shape + (channels,))
    masses = mixture_masses.pixel_masses(params * fxp.ONE, pixels, MIXTURES)
    assert masses.shape == shape + (channels, 256)
    assert masses.min() >= 2 ** mixture_masses.WEIGHT_BITS
    assert np.all(masses.sum(axis=-1) == 2.0 ** mixture_masses.MASS_BITS)
    assert np.all(masses == np.rint(masses))


def test_component_masses_are_floored_and_sum_to_2_to_the_30():
  rng = np.random.default_rng(2)
  params = _params(rng, (3, 4), 3, (-9.0, 20.0), spread=50.0) * fxp.ONE
  mix = mixture_masses.unpack(params, 3, MIXTURES)
  pixels = rng.integers(0, 256, (3, 4, 3))
  for c in range(3):
    masses = mixture_masses.component_masses(mix, c, pixels)
    assert masses.min() >= 1
    assert np.all(masses.sum(axis=-1) == 2 ** mixture_masses.COMPONENT_BITS)
  assert np.all(mixture_masses.initial_weights(mix).sum(axis=-1) == 2 ** 22)


@pytest.mark.parametrize('channels,bits', [(1, 12), (3, 12), (3, 24)])
def test_masses_match_the_float_likelihood(channels, bits):
  """log2 of the chosen mass against the float model's log p(x_c | x_<c), every channel, at
  pixels the model gives at least 1e-4 (below, the float model switches to its mid-bin density)."""
  rng = np.random.default_rng(3)
  shape = (2, 5, 7)
  params = _params(rng, shape, channels, bits=bits)
  likelihood = likelihoods.DiscretizedLogisticMixture(MIXTURES)
  pixels = likelihood.sample_from_noise(
      tf.constant(params, tf.float32),
      likelihood.noise(shape + (channels,), tf.constant([4, 5]))).numpy().astype(np.int64)
  expected = likelihood.pixel_log_prob(tf.constant(params, tf.float32),
                                       tf.constant(pixels, tf.float32)).numpy() / np.log(2)
  masses = mixture_masses.pixel_masses(params * 2.0 ** bits, pixels, MIXTURES, bits)
  chosen = np.take_along_axis(masses, pixels[..., None], axis=-1)[..., 0]
  actual = np.log2(chosen) - mixture_masses.MASS_BITS
  kept = expected > np.log2(1e-4)
  assert kept.mean() > 0.9
  np.testing.assert_allclose(actual[kept], expected[kept], atol=0.01)
  # The whole distribution, not only the sampled value: total variation against the float pmf.
  values = np.broadcast_to(np.arange(256.0)[:, None, None, None, None],
                           (256,) + shape + (channels,)).copy()
  if channels == 1:
    pmf = np.exp(likelihood.pixel_log_prob(
        tf.constant(np.broadcast_to(params, (256,) + params.shape), tf.float32),
        tf.constant(values, tf.float32)).numpy())[..., 0]  # [256, B, H, W]
    ours = np.moveaxis(masses[..., 0, :], -1, 0) / 2.0 ** mixture_masses.MASS_BITS
    assert np.max(np.abs(ours - pmf).sum(axis=0)) < 0.01


def test_later_channels_see_the_earlier_ones():
  """Channel 2's masses change with channel 0's value and never with its own."""
  rng = np.random.default_rng(4)
  params = _params(rng, (6,), 3) * fxp.ONE
  pixels = rng.integers(0, 256, (6, 3))
  base = mixture_masses.pixel_masses(params, pixels, MIXTURES)
  moved = pixels.copy()
  moved[:, 0] = 255 - moved[:, 0]
  assert np.any(mixture_masses.pixel_masses(params, moved, MIXTURES)[:, 2] != base[:, 2])
  moved = pixels.copy()
  moved[:, 2] = 255 - moved[:, 2]
  np.testing.assert_array_equal(mixture_masses.pixel_masses(params, moved, MIXTURES), base)


def test_a_wrong_parameter_count_is_one_clear_error():
  with pytest.raises(ValueError, match='3 channels and 4 mixtures need 40'):
    mixture_masses.unpack(np.zeros((2, 39)), 3, MIXTURES)


def test_the_tables_are_the_ones_of_the_format():
  """The tables are part of the 8-bit file format: built from `decimal` and integers only."""
  table = mixture_masses.inverse_scale_table()
  np.testing.assert_allclose(table / 2.0 ** 16,
                             np.exp(-np.arange(-7 * fxp.ONE, 16 * fxp.ONE + 1) / fxp.ONE),
                             rtol=1e-12, atol=0.51 / 2 ** 16)
  np.testing.assert_allclose(mixture_masses.softmax_exp_table() / 2.0 ** 30,
                             np.exp(-np.arange(fxp.TABLE_LIMIT + 1) / fxp.ONE),
                             atol=0.51 / 2 ** 30)
  # A change of any table (or of a platform's integers) changes the 8-bit format: pinned.
  assert mixture_masses.table_digest() == (
      '8f8c03c82f0090d33f313173ad20c7d8e7bf656caf09834173a49c6caeb3eac1')
