"""Fixed-point arithmetic whose every result is the same bits on every machine: the portable codec.

A lossless code needs the coder's probabilities to come out bit-identical when compressing and
when decompressing. Float32 networks do not promise that across CPUs (AVX2, AVX-512, AMX, ARM),
thread counts, oneDNN and XLA: a convolution's sum is taken in an order the kernel chooses, with or
without fused multiply-adds, and exp, tanh or erf are each library's own approximation. Here every
number the coder uses is an integer, held in float64 or int64 arrays (Balle, Johnston and Minnen,
"Integer networks for data compression with latent-variable models", ICLR 2019, make the same
point with integer networks):

* A value v is stored as the integer n = v * 2^F (`FRACTION_BITS` = 12). Products and sums of
  integers are exact in float64 while every partial sum stays below 2^53, whatever the summation
  order, blocking, threads or FMA contraction (an FMA of exact terms rounds nothing). `Linear`
  checks that bound when it is built: |input| <= `ACTIVATION_LIMIT` (inputs are clipped there),
  |kernel integer| < 2^`WEIGHT_BITS`, so |partial sum| <= fan_in * 2^(20 + 14) < 2^52.
* Matrix products go through NumPy's BLAS (`np.matmul` of float64, integer-valued operands, no
  Winograd or FFT: convolutions are an explicit im2col then a matmul), rescaling only by powers
  of two then `np.floor` (exact), and by an integer multiplier then a power of two
  (`scale_by`).
* Every nonlinearity (elu, sigmoid, tanh, softplus) is a table indexed by the integer input,
  built with Python integers from one correctly rounded constant of `decimal` (`_exp_powers`):
  the same integers on every platform (`decimal` is specified exactly; Python integers are
  exact).
* Weights come from the float32 variables (the same bytes on every machine) through correctly
  rounded float64 operations in a fixed order (`math.fsum` for norms, then one division and one
  product per entry, `np.rint` at a power of two), never through TensorFlow.
* The coder (constriction 0.5's ANS, pinned in setup.py) is handed integer masses as float64
  (below 2^53: exact). Its categorical models with `perfect=False` (the lazy one per row, and the
  contiguous one built once for the latents' base) quantize them by `fast_quantized_cdf` /
  `LazyContiguousCategoricalEntropyModel` (constriction's src/stream/model/categorical*.rs):
  a sequential sum, one division, products and float-to-integer casts in Rust, which compiles
  without fast-math or FMA contraction: IEEE basic operations, correctly rounded on every CPU.
  (`perfect=True` would call libm's log1p; it is not used.) A constriction whose quantization
  changes would need a new codec number.

Latents use the same idea: `GaussianCdf` is an integer CDF of N(0, 1) (a piecewise-linear table
of `decimal` masses) evaluated at (edge - loc) / scale by exact integer floor division.
"""

import decimal
import functools
import math
from typing import Sequence

import numpy as np

FRACTION_BITS = 12               # Activations: v = n * 2^-12.
ONE = 1 << FRACTION_BITS
ACTIVATION_LIMIT = 1 << (8 + FRACTION_BITS)   # |activation| <= 256 (clipped at every input).
WEIGHT_BITS = 14                 # |kernel integer| < 2^14, per output channel.
EXACT_LIMIT = 2.0 ** 52          # Every partial sum stays below this (float64 is exact to 2^53).
TABLE_LIMIT = 16 * ONE           # Nonlinearity tables cover [-16, 16].


# -- Tables ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _exp_powers(step_bits: int, count: int, bits: int = 100) -> tuple:
  """round(exp(-i * 2^-step_bits) * 2^bits) for i < count, as Python integers.

  One correctly rounded constant from `decimal` (exp(-2^-step_bits) to 60 digits), then repeated
  exact integer products, each rounded down: the error after i steps is below i * 2^-bits, far
  below the tables' resolution, and the integers are the same on every machine.
  """
  context = decimal.Context(prec=60)
  base = int(context.exp(decimal.Decimal(-1) / (1 << step_bits)) * (1 << bits))
  values, value = [], 1 << bits
  for _ in range(count):
    values.append(value)
    value = (value * base) >> bits
  return tuple(values)


@functools.lru_cache(maxsize=None)
def elu_table() -> np.ndarray:
  """round((exp(-i / ONE) - 1) * ONE) for i = 0 .. TABLE_LIMIT: elu of negative inputs."""
  bits = 100
  powers = _exp_powers(FRACTION_BITS, TABLE_LIMIT + 1, bits)
  return np.array([((p - (1 << bits)) * ONE + (1 << (bits - 1))) >> bits for p in powers],
                  np.float64)


@functools.lru_cache(maxsize=None)
def sigmoid_table(output_bits: int) -> np.ndarray:
  """round(sigmoid(i / ONE) * 2^output_bits) for i = -TABLE_LIMIT .. TABLE_LIMIT."""
  bits = 100
  powers = _exp_powers(FRACTION_BITS, TABLE_LIMIT + 1, bits)  # exp(-|x|)
  one = 1 << bits
  scale = 1 << output_bits
  # sigmoid(x) for x >= 0 is 1 / (1 + exp(-x)); for x < 0 it is exp(x) / (1 + exp(x)).
  positive = [(scale * one + (one + p) // 2) // (one + p) for p in powers]
  negative = [scale - value for value in positive[:0:-1]]
  return np.array(negative + positive, np.float64)


@functools.lru_cache(maxsize=None)
def tanh_table() -> np.ndarray:
  """round(tanh(i / ONE) * ONE) for i = -TABLE_LIMIT .. TABLE_LIMIT (tanh x = 2 sigmoid(2x) - 1)."""
  bits = 100
  powers = _exp_powers(FRACTION_BITS - 1, TABLE_LIMIT + 1, bits)  # exp(-2|x|)
  one = 1 << bits
  positive = [(ONE * (one - p) + (one + p) // 2) // (one + p) for p in powers]
  negative = [-value for value in positive[:0:-1]]
  return np.array(negative + positive, np.float64)


SOFTPLUS_INPUT_SHIFT = 4   # The softplus table reads its input at 2^-8.


@functools.lru_cache(maxsize=None)
def softplus_table(output_bits: int) -> np.ndarray:
  """round(softplus(i * 2^-8) * 2^output_bits) for i * 2^-8 in [-16, 16], by `decimal` ln/exp."""
  context = decimal.Context(prec=40)
  step_bits = FRACTION_BITS - SOFTPLUS_INPUT_SHIFT
  limit = TABLE_LIMIT >> SOFTPLUS_INPUT_SHIFT
  values = []
  for i in range(-limit, limit + 1):
    x = decimal.Decimal(i) / (1 << step_bits)
    value = context.ln(1 + context.exp(x)) * (1 << output_bits)
    values.append(int(value.to_integral_value(rounding=decimal.ROUND_HALF_EVEN)))
  return np.array(values, np.float64)


def table_digest() -> str:
  """A short digest of every table (the file header records the codec's tables by this)."""
  import hashlib  # pylint: disable=g-import-not-at-top
  digest = hashlib.sha256()
  for table in (elu_table(), sigmoid_table(FRACTION_BITS), tanh_table(),
                sigmoid_table(PROBABILITY_BITS), softplus_table(LATENT_BITS), GaussianCdf().cdf):
    digest.update(np.ascontiguousarray(table, '<f8').tobytes())
  return digest.hexdigest()


# -- Elementwise -----------------------------------------------------------------------------------


def _lookup(table, index):
  return np.take(table, index.astype(np.int64))


def elu(x):
  """elu of fixed-point x (F = 12): x for x >= 0, the table below."""
  index = np.negative(x)
  np.clip(index, 0, TABLE_LIMIT, out=index)
  values = np.take(elu_table(), index.astype(np.int64))
  return np.where(x >= 0, x, values)


def relu(x):
  return np.maximum(x, 0.0)


def sigmoid(x, output_bits: int = FRACTION_BITS):
  """sigmoid of fixed-point x, at 2^-output_bits; saturated outside [-16, 16]."""
  index = np.clip(x, -TABLE_LIMIT, TABLE_LIMIT) + TABLE_LIMIT
  return _lookup(sigmoid_table(output_bits), index)


def tanh(x):
  index = np.clip(x, -TABLE_LIMIT, TABLE_LIMIT) + TABLE_LIMIT
  return _lookup(tanh_table(), index)


def softplus(x, output_bits: int):
  """softplus of fixed-point x at 2^-output_bits: the table on [-16, 16], x above (exactly
  softplus(x) - x < 2^-23 there), the table's end (its smallest value) below."""
  limit = TABLE_LIMIT >> SOFTPLUS_INPUT_SHIFT
  index = np.clip(np.floor(x * 2.0 ** -SOFTPLUS_INPUT_SHIFT), -limit, limit) + limit
  table = _lookup(softplus_table(output_bits), index)
  return np.where(x > TABLE_LIMIT, x * 2.0 ** (output_bits - FRACTION_BITS), table)


def round_shift(x, bits):
  """round(x * 2^-bits) (halves up): exact for integer |x| < 2^52; bits may be an array."""
  return _round_scaled(x, np.exp2(-np.asarray(bits, np.float64)))


def _round_scaled(x, factor):
  """floor(x * factor + 0.5) for a power-of-two factor (exact), in place on a new array."""
  result = np.multiply(x, factor)
  result += 0.5
  return np.floor(result, out=result)


MULTIPLIER_BITS = 16


def scale_by(x, factor: float):
  """round(x * m * 2^-16), m = round(factor * 2^16): a constant factor in integers."""
  multiplier = float(round(factor * (1 << MULTIPLIER_BITS)))
  return _round_scaled(x * multiplier, 2.0 ** -MULTIPLIER_BITS)


def product(a, b):
  """a * b of two fixed-point values (F = 12), rounded back to F = 12."""
  return _round_scaled(a * b, 2.0 ** -FRACTION_BITS)


def quantize(values, bits: int = FRACTION_BITS):
  """round(values * 2^bits) of float values (float64 first, so float32 inputs are exact)."""
  return np.rint(np.asarray(values, np.float64) * 2.0 ** bits)


def clip(x):
  """x clipped to +-ACTIVATION_LIMIT (a copy only when some value is outside)."""
  if x.size and (x.max() > ACTIVATION_LIMIT or x.min() < -ACTIVATION_LIMIT):
    return np.minimum(np.maximum(x, -ACTIVATION_LIMIT), ACTIVATION_LIMIT)
  return x


# -- Weights ---------------------------------------------------------------------------------------


def channel_norms(kernel, axes: Sequence[int]) -> np.ndarray:
  """||kernel|| over `axes` per remaining channel, correctly rounded: math.fsum of float64 squares
  (exact products of float32 values), then math.sqrt. Shape: the kernel's, 1 on `axes`."""
  kernel = np.asarray(kernel, np.float64)
  moved = np.moveaxis(kernel, list(axes), list(range(len(axes))))
  flat = moved.reshape(-1, int(np.prod(moved.shape[len(axes):])))
  norms = np.array([math.sqrt(math.fsum(column * column)) for column in flat.T])
  shape = [1 if axis in axes else size for axis, size in enumerate(kernel.shape)]
  kept = [size for axis, size in enumerate(kernel.shape) if axis not in axes]
  return norms.reshape(kept).reshape(shape)


class Linear:
  """y = x @ kernel + bias in fixed point: the layer every network here is made of.

  kernel [fan_in, out] (float64 weights, e.g. a flattened conv kernel); each output channel c is
  quantized as round(w * 2^s_c) with s_c the largest shift keeping |integer| < 2^WEIGHT_BITS, and
  the product rescaled by 2^-s_c (exact) and rounded; the bias at F = 12.
  """

  def __init__(self, kernel, bias, output_bits: int = FRACTION_BITS):
    kernel = np.asarray(kernel, np.float64)
    largest = np.max(np.abs(kernel), axis=0)
    exponents = np.array([math.frexp(value)[1] if value > 0 else 0 for value in largest])
    self.shifts = np.clip(WEIGHT_BITS - exponents, 0, 40).astype(np.float64)  # [out]
    self.kernel = np.rint(kernel * np.exp2(self.shifts))  # [fan_in, out], |.| <= 2^14
    self.output_bits = output_bits
    self._factors = np.exp2(-(self.shifts + FRACTION_BITS - output_bits))  # Powers of two.
    self.bias = quantize(np.zeros(kernel.shape[1]) if bias is None else bias, output_bits)
    bound = kernel.shape[0] * ACTIVATION_LIMIT * float(np.max(np.abs(self.kernel), initial=0.0))
    if bound >= EXACT_LIMIT:
      raise AssertionError(f'a fixed-point layer of fan-in {kernel.shape[0]} could reach {bound} '
                           '>= 2^52: not exact in float64.')

  @property
  def fan_in(self) -> int:
    return self.kernel.shape[0]

  def __call__(self, x):
    """x [..., fan_in] at F = 12 -> [..., out] at `output_bits`."""
    result = _round_scaled(np.matmul(clip(x), self.kernel), self._factors)
    result += self.bias
    return result


def same_padding(size: int, kernel: int, stride: int):
  """TensorFlow's 'SAME' padding of one axis: (before, after, output size)."""
  output = -(-size // stride)
  total = max((output - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2, output


def patches(x, kernel_size: int, stride: int = 1):
  """[B, H, W, C] -> [B, Ho, Wo, k * k * C] 'SAME' patches, in the order of a [k, k, C, O]
  kernel's reshape to [k * k * C, O]."""
  _, height, width, _ = x.shape
  top, bottom, rows = same_padding(height, kernel_size, stride)
  left, right, cols = same_padding(width, kernel_size, stride)
  padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel_size, kernel_size),
                                                     axis=(1, 2))  # [B, H', W', C, k, k]
  windows = windows[:, :rows * stride:stride, :cols * stride:stride]
  windows = np.moveaxis(windows, 3, 5)  # [B, Ho, Wo, k, k, C]
  return windows.reshape(*windows.shape[:3], -1)


class Conv:
  """A k x k 'SAME' convolution (stride 1 or 2) in fixed point: patches, then a `Linear`."""

  def __init__(self, kernel, bias, stride: int = 1):
    kernel = np.asarray(kernel, np.float64)  # [k, k, C, O]
    self.kernel_size, self.stride = kernel.shape[0], stride
    self.linear = Linear(kernel.reshape(-1, kernel.shape[-1]), bias)

  def __call__(self, x):
    return self.linear(patches(x, self.kernel_size, self.stride))


class ConvTranspose:
  """A stride-2 k x k 'SAME' transposed convolution (Keras kernel [k, k, O, C]) in fixed point:

      y[2i + di - p, 2j + dj - p] += x[i, j] @ K[di, dj]^T,   p = TensorFlow's 'SAME' padding,

  each tap a `Linear` of the same per-channel shifts, summed exactly before one rounding."""

  def __init__(self, kernel, bias):
    kernel = np.asarray(kernel, np.float64)  # [k, k, O, C]
    self.kernel_size = kernel.shape[0]
    taps = np.transpose(kernel, (0, 1, 3, 2))  # [k, k, C, O]
    self.linear = Linear(taps.reshape(-1, taps.shape[-1]), bias)  # Shifts shared by every tap.
    self.taps = self.linear.kernel.reshape(taps.shape)

  def __call__(self, x):
    batch, height, width, _ = x.shape
    k = self.kernel_size
    out_height, out_width = 2 * height, 2 * width
    pad = max((height - 1) * 2 + k - out_height, 0) // 2
    full = np.zeros((batch, 2 * height + k, 2 * width + k, self.taps.shape[-1]))
    x = clip(x)
    for di in range(k):
      for dj in range(k):
        full[:, di:di + 2 * height:2, dj:dj + 2 * width:2] += np.matmul(x, self.taps[di, dj])
    accumulated = full[:, pad:pad + out_height, pad:pad + out_width]
    return round_shift(accumulated, self.linear.shifts) + self.linear.bias


# -- Probabilities for the coder -------------------------------------------------------------------

PROBABILITY_BITS = 30   # Pixel probabilities: integer masses out of 2^30.
LATENT_BITS = 24        # Latent locations and scales: v = n * 2^-24.


def bernoulli_masses(logits):
  """[..., 2] integer masses (p(0), p(1)) out of 2^30 from fixed-point logits."""
  one = sigmoid(logits, PROBABILITY_BITS)
  return np.stack([2.0 ** PROBABILITY_BITS - one, one], axis=-1)


class GaussianCdf:
  """An integer CDF of N(0, 1): a piecewise-linear table, exact to evaluate anywhere.

  Knots t_j = j / 2^8 on [-8, 8]; the mass between two knots is round(2^36 * pdf(midpoint) / 2^8)
  (the pdf from `_exp_powers`-style integers of `decimal`); beyond +-8 the mass is 0 (the
  coder's floor gives such symbols 2^-24). `__call__(offset, scale)` is the CDF at offset / scale
  (both integers in the same units) to 2^-20 standard deviations: the integer quotient
  floor(offset * 2^20 / scale), then linear interpolation, in int64 (below 2^50).
  """

  KNOT_BITS = 8
  SUB_BITS = 12
  LIMIT = 8
  MASS_BITS = 36

  def __init__(self):
    self.cdf = _gaussian_table(self.KNOT_BITS, self.LIMIT, self.MASS_BITS)  # int64 [n + 1]
    self.mass = np.diff(self.cdf)
    self.knots = len(self.mass)

  def __call__(self, offset, scale):
    """CDF (int64, out of about 2^49) at offset / scale; offset, scale int64, scale > 0."""
    offset, scale = np.asarray(offset, np.int64), np.asarray(scale, np.int64)
    bits = self.KNOT_BITS + self.SUB_BITS
    limit = self.LIMIT << bits
    quotient = np.clip(np.floor_divide(np.clip(offset, -(1 << 40), 1 << 40) << bits, scale),
                       -limit, limit) + limit
    index = np.minimum(quotient >> self.SUB_BITS, self.knots - 1)
    fraction = quotient - (index << self.SUB_BITS)
    return (self.cdf[index] << self.SUB_BITS) + self.mass[index] * fraction


@functools.lru_cache(maxsize=None)
def _gaussian_table(knot_bits: int, limit: int, mass_bits: int) -> np.ndarray:
  context = decimal.Context(prec=50)
  count = (2 * limit) << knot_bits
  masses = []
  inverse_sqrt_2pi = 1 / context.sqrt(2 * decimal.Decimal('3.14159265358979323846264338327950288'
                                                           '41971693993751'))
  for j in range(count // 2):  # Symmetric: the upper half, mirrored.
    midpoint = (decimal.Decimal(j) + decimal.Decimal('0.5')) / (1 << knot_bits)
    density = context.exp(-midpoint * midpoint / 2) * inverse_sqrt_2pi
    masses.append(int((density * (1 << mass_bits) / (1 << knot_bits)).to_integral_value(
        rounding=decimal.ROUND_HALF_EVEN)))
  masses = masses[::-1] + masses
  return np.concatenate([[0], np.cumsum(np.array(masses, np.int64))]).astype(np.int64)
