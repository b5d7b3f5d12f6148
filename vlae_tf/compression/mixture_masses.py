"""Integer masses of the discretized logistic mixture over all 256 values: the 8-bit coder's
pixel probabilities, the same integers on every machine (the arithmetic of `fixed_point`).

The float likelihood (likelihoods.DiscretizedLogisticMixture, PixelCNN++) gives channel c of a
pixel, given its earlier channels x_<c, the law

    p(x_c | x_<c) = sum_k pi_k(x_<c) p_k(x_c | x_<c),
    pi_k(x_<c)    = pi_k prod_{c' < c} p_k(x_c') / sum_j pi_j prod_{c' < c} p_j(x_c'),

where p_k(. | x_<c) is a logistic of location means_kc + sum_{c' < c} coeff_kcc' x'_c' (x' =
x / 127.5 - 1) and scale exp(log_scale_kc), discretized into 256 bins with open end bins. Here,
from the network's fixed-point parameters (F = 12):

* Component CDFs at the 255 inner bin edges e_j = (2j - 256) / 255 (j = 1 .. 255, held at 2^-24
  by exact integer division): S((e_j - loc) / scale), S = `fixed_point.sigmoid_table(30)`
  interpolated linearly in integers (`_interpolated_sigmoid`), with (e_j - loc) / scale =
  floor((e_j - loc) * inverse_scale * 2^-16) at 2^-24 in int64 (below 2^61), inverse_scale =
  exp(-log_scale) at 2^-16 from a `decimal`-built table (log_scale clipped to [-7, 16]: the
  float model's floor, and a ceiling where every bin already has the same mass). Monotone in j,
  so the CDF C(j) is nondecreasing from C(0) = 0 to C(256) = 2^30.
* A floor of one: C'(j) = C(j) - floor(C(j) / 2^22) + j takes 0 to 0 and 2^30 to 2^30 and rises
  by at least 1 per bin, so the component masses q_k(v) = C'(v + 1) - C'(v) are >= 1 and sum to
  exactly 2^30 (`COMPONENT_BITS`).
* Mixture weights out of exactly 2^22 (`WEIGHT_BITS`; a component of weight 2^-10 still has
  4096 levels): pi_k from the logits by an exp table (exp(-d) at 2^-30 for d = max logit - logit
  in [0, 16]), and after each coded channel pi_k <- pi_k q_k(x_c) renormalised. Each
  normalisation first drops the low bits that would take sum r past 2^40 (r_k >> s, s from the
  sum's exponent: exact), then floor((r_k << 22) / sum r) (< 2^62 in int64), the remainder to
  the first largest r_k.
* Channel masses m(v) = sum_k pi_k q_k(v): integers >= 2^22 that sum to exactly 2^52
  (`MASS_BITS`), exact in float64 (below 2^53), for constriction's Categorical(perfect=False).

Every step is int64 arithmetic (products, floor divisions, shifts, table look-ups): no rounding
mode, order of summation or library function enters. The tables' digest (`table_digest`) goes
into the 8-bit codec's file header.
"""

import decimal
import functools
import hashlib
from typing import NamedTuple

import numpy as np

from vlae_tf.compression import fixed_point as fxp

COMPONENT_BITS = fxp.PROBABILITY_BITS   # Component masses out of 2^30.
WEIGHT_BITS = 22                        # Mixture weights out of 2^22.
MASS_BITS = COMPONENT_BITS + WEIGHT_BITS  # Channel masses out of 2^52.
VALUES = 256
EDGE_BITS = 24                          # Bin edges and locations at 2^-24.
INVERSE_SCALE_BITS = 16                 # exp(-log_scale) at 2^-16.
ARGUMENT_BITS = 24                      # Sigmoid arguments (edge - loc) / scale at 2^-24.
MIN_LOG_SCALE = -7                      # The float model's floor (likelihoods._MIN_LOG_SCALE).
MAX_LOG_SCALE = 16
_EXP_BITS = 30                          # Softmax terms exp(-d) at 2^-30.
_CENTERED_LIMIT = 1 << (9 + EDGE_BITS)  # |edge - loc| <= 512: beyond, the sigmoid is saturated.


@functools.lru_cache(maxsize=None)
def inverse_scale_table() -> np.ndarray:
  """round(exp(-i / 2^12) * 2^16) for i / 2^12 in [-7, 16], int64: e^7 from `decimal`, times
  `fixed_point._exp_powers` (exact integers)."""
  bits = 100
  count = (MAX_LOG_SCALE - MIN_LOG_SCALE) * fxp.ONE + 1
  powers = fxp._exp_powers(fxp.FRACTION_BITS, count, bits)  # pylint: disable=protected-access
  context = decimal.Context(prec=60)
  e7 = int(context.exp(decimal.Decimal(-MIN_LOG_SCALE)) * (1 << bits))
  shift = 2 * bits - INVERSE_SCALE_BITS
  return np.array([(e7 * p + (1 << (shift - 1))) >> shift for p in powers], np.int64)


@functools.lru_cache(maxsize=None)
def softmax_exp_table() -> np.ndarray:
  """round(exp(-i / 2^12) * 2^30) for i / 2^12 in [0, 16], int64."""
  bits = 100
  powers = fxp._exp_powers(fxp.FRACTION_BITS, fxp.TABLE_LIMIT + 1, bits)  # pylint: disable=protected-access
  shift = bits - _EXP_BITS
  return np.array([(p + (1 << (shift - 1))) >> shift for p in powers], np.int64)


@functools.lru_cache(maxsize=None)
def edges() -> np.ndarray:
  """floor((2j - 256) / 255 * 2^24) for the inner edges j = 1 .. 255, int64 [255]."""
  j = np.arange(1, VALUES, dtype=np.int64)
  return np.floor_divide((2 * j - VALUES) << EDGE_BITS, 255)


def table_digest() -> str:
  """A digest of every table the masses use (the file header records it)."""
  digest = hashlib.sha256()
  for table in (fxp.sigmoid_table(COMPONENT_BITS), fxp.sigmoid_table(EDGE_BITS + 1),
                inverse_scale_table(),
                softmax_exp_table(), edges()):
    digest.update(np.ascontiguousarray(table, '<f8').tobytes())
  return digest.hexdigest()


class IntegerMixture(NamedTuple):
  """Fixed-point parameters (int64), mixture axis last: logits [..., M] at F = 12, means
  [..., C, M] at 2^-24, inverse scales [..., C, M] at 2^-16, coeffs [..., P, M] at 2^-24 (after
  the tanh; row c(c - 1)/2 + c' is channel c' < c in channel c's location)."""
  logits: np.ndarray
  means: np.ndarray
  inverse_scales: np.ndarray
  coeffs: np.ndarray

  @property
  def channels(self) -> int:
    return self.means.shape[-2]


def unpack(params, channels: int, num_mixtures: int, bits: int = fxp.FRACTION_BITS) -> IntegerMixture:
  """[..., M (1 + 2C + C(C-1)/2)] fixed-point parameters (at 2^-bits, 12 <= bits <= 24) in the float model's layout (likelihoods.unpack_mixture_params): [logits |
  means | log-scales | coeffs], channel-major.

  Means keep every bit (at 2^-24). The coefficients' tanh is 2 sigmoid(2x) - 1 at 2^-24 from
  `fixed_point.sigmoid_table(25)` read at x * 2^13 (saturated beyond |x| = 8, where tanh is
  within 2.3e-7 of 1): a coefficient multiplies a pixel, so its resolution matters as much as
  a mean's (at 2^-12 it would move a narrow logistic's tail mass by a percent). Logits and
  log-scales are read at F = 12 (floor).
  """
  params = np.asarray(params, np.float64)
  m, c = num_mixtures, channels
  expected = m * (1 + 2 * c + c * (c - 1) // 2)
  if params.shape[-1] != expected:
    raise ValueError(f'{params.shape[-1]} mixture parameters per pixel; {c} channels and '
                     f'{m} mixtures need {expected}.')
  lead = params.shape[:-1]
  if not fxp.FRACTION_BITS <= bits <= EDGE_BITS:
    raise ValueError(f'mixture parameters at 2^-{bits}: 12 to 24 fraction bits are supported.')
  limit = fxp.ACTIVATION_LIMIT << (bits - fxp.FRACTION_BITS)
  ints = np.clip(params, -limit, limit).astype(np.int64)

  def block(start, rows, to_bits):
    values = ints[..., start * m:(start + rows) * m].reshape(*lead, rows, m)
    return (np.left_shift(values, to_bits - bits) if to_bits >= bits
            else np.right_shift(values, bits - to_bits))

  log_scales = np.clip(block(1 + c, c, fxp.FRACTION_BITS),
                       MIN_LOG_SCALE * fxp.ONE, MAX_LOG_SCALE * fxp.ONE)
  tanh_index = np.clip(block(1 + 2 * c, c * (c - 1) // 2, fxp.FRACTION_BITS + 1),
                       -fxp.TABLE_LIMIT, fxp.TABLE_LIMIT) + fxp.TABLE_LIMIT
  coeffs = fxp.sigmoid_table(EDGE_BITS + 1).astype(np.int64)[tanh_index] - (1 << EDGE_BITS)
  return IntegerMixture(
      logits=block(0, 1, fxp.FRACTION_BITS)[..., 0, :],
      means=block(1, c, EDGE_BITS),
      inverse_scales=inverse_scale_table()[log_scales - MIN_LOG_SCALE * fxp.ONE],
      coeffs=coeffs)


def _interpolated_sigmoid(argument):
  """sigmoid at int64 arguments at 2^-24, at 2^-30: the table (steps of 2^-12) interpolated
  linearly in integers, floor((S[i] << 12) + (S[i + 1] - S[i]) * fraction) >> 12 (below 2^43).
  Monotone, and within 1e-9 of sigmoid: a wide logistic's bin (2/255 scale units, a few dozen
  table steps) keeps its mass to a few parts in a million, where the table alone would move
  it by percents."""
  sub = ARGUMENT_BITS - fxp.FRACTION_BITS
  position = np.clip(argument, -fxp.TABLE_LIMIT << sub, fxp.TABLE_LIMIT << sub) + (
      fxp.TABLE_LIMIT << sub)
  index = np.minimum(np.right_shift(position, sub), 2 * fxp.TABLE_LIMIT - 1)
  fraction = position - np.left_shift(index, sub)
  table = fxp.sigmoid_table(COMPONENT_BITS).astype(np.int64)
  low = table[index]
  return np.right_shift(np.left_shift(low, sub) + (table[index + 1] - low) * fraction, sub)


def component_masses(mix: IntegerMixture, channel: int, earlier) -> np.ndarray:
  """q_k(v | x_<c) of every component and value, int64 [..., M, 256], each >= 1, rows summing
  to 2^30 (module docstring).

  Args:
    mix: `unpack`'s parameters.
    channel: c.
    earlier: [..., >= c] integer pixels 0..255 of the earlier channels (only [..., :c] is read).
  """
  earlier = np.asarray(earlier, np.int64)
  loc = mix.means[..., channel, :]  # [..., M] at 2^-24
  for c in range(channel):
    # coeff * x' with x' = (2x - 255) / 255, at 2^-24: floor(coeff_int * (2x - 255) / 255).
    scaled = (2 * earlier[..., c] - 255)[..., None]
    loc = loc + np.floor_divide(mix.coeffs[..., channel * (channel - 1) // 2 + c, :] * scaled, 255)
  centered = np.clip(edges() - loc[..., None], -_CENTERED_LIMIT, _CENTERED_LIMIT)  # [..., M, 255]
  inner = _interpolated_sigmoid(  # [..., M, 255]
      np.right_shift(centered * mix.inverse_scales[..., channel, :, None],
                     EDGE_BITS + INVERSE_SCALE_BITS - ARGUMENT_BITS))
  shape = inner.shape[:-1] + (1,)
  cdf = np.concatenate([np.zeros(shape, np.int64), inner,
                        np.full(shape, 1 << COMPONENT_BITS, np.int64)], axis=-1)
  cdf = cdf - np.right_shift(cdf, COMPONENT_BITS - 8) + np.arange(VALUES + 1, dtype=np.int64)
  return np.diff(cdf, axis=-1)


_SUM_BITS = 40


def _normalised(values):
  """[..., M] nonnegative int64 (sum > 0, below 2^53) -> floor(values * 2^22 / sum) after
  dropping the bits that take the sum past 2^40, the remainder to the first largest: exactly
  2^22 in all."""
  exponent = np.frexp(values.sum(axis=-1, keepdims=True).astype(np.float64))[1]  # Exact: < 2^53.
  values = np.right_shift(values, np.maximum(exponent - _SUM_BITS, 0).astype(np.int64))
  total = values.sum(axis=-1, keepdims=True)
  weights = np.floor_divide(values << WEIGHT_BITS, total)
  remainder = (1 << WEIGHT_BITS) - weights.sum(axis=-1)
  first = np.argmax(values, axis=-1)[..., None]
  np.put_along_axis(weights, first,
                    np.take_along_axis(weights, first, axis=-1) + remainder[..., None], axis=-1)
  return weights


def initial_weights(mix: IntegerMixture) -> np.ndarray:
  """pi_k out of 2^22 from the logits, int64 [..., M]: an integer softmax."""
  gaps = mix.logits.max(axis=-1, keepdims=True) - mix.logits
  return _normalised(softmax_exp_table()[np.minimum(gaps, fxp.TABLE_LIMIT)])


def updated_weights(weights, masses, value) -> np.ndarray:
  """pi_k(x_<=c) from pi_k(x_<c) [..., M], the channel's `component_masses` [..., M, 256] and its
  value x_c [...]: pi_k q_k(x_c), renormalised to 2^22."""
  index = np.asarray(value, np.int64)[..., None, None]
  chosen = np.take_along_axis(masses, np.broadcast_to(index, masses.shape[:-1] + (1,)), axis=-1)
  return _normalised(weights * chosen[..., 0])


def channel_masses(weights, masses) -> np.ndarray:
  """m(v) = sum_k pi_k q_k(v), float64 [..., 256]: integers >= 2^22 summing to exactly 2^52."""
  return np.einsum('...k,...kv->...v', weights, masses).astype(np.float64)


def pixel_masses(params, pixels, num_mixtures: int, bits: int = fxp.FRACTION_BITS) -> np.ndarray:
  """Every channel's masses given the earlier channels of known pixels (the encoder's side):
  [..., C, 256] float64 out of 2^52.

  Args:
    params: [..., M (1 + 2C + C(C-1)/2)] fixed-point parameters at 2^-bits.
    pixels: [..., C] integers 0..255.
    num_mixtures: M.
    bits: the parameters' fraction bits (`unpack`).
  """
  pixels = np.asarray(pixels, np.int64)
  mix = unpack(params, pixels.shape[-1], num_mixtures, bits)
  weights, result = initial_weights(mix), []
  for c in range(mix.channels):
    masses = component_masses(mix, c, pixels)
    result.append(channel_masses(weights, masses))
    if c + 1 < mix.channels:
      weights = updated_weights(weights, masses, pixels[..., c])
  return np.stack(result, axis=-2)
