"""The portable bits-back coder: `bitsback`'s chain, on the fixed-point networks of
`integer_networks`, so that a file decodes on any machine (x86-64 or ARM, any thread count,
oneDNN on or off, XLA or not: no TensorFlow op computes anything the coder uses).

Per batch, as `bitsback.BitsBackCoder` (BB-ANS, Townsend et al. 2019):

    encode x:  pop  z ~ q(z | x)        on the grid k * 2^-12 (`GaussianGridCode`)
               push x under p(x | z)    the PixelCNN's parallel pass (exact: the same integers
                                        as the pixel-by-pixel pass that decoding runs)
               push eps = f^-1(z) under N(0, I) on the grid: the integer AF prior is a bijection
                                        of the grid, so P(z) = P_base(eps) exactly.
    decode:    pop eps, z = f(eps), pop x pixel by pixel, push z under q(z | x).

Net cost per image: -log2 p(x|z) - log2 P(z) + log2 Q(z|x), the -ELBO of the fixed-point model
(its networks differ from the float model's by the fixed-point resolution: a few thousandths of a
logit).

Gaussians on the grid (`GaussianGridCode`): a value k (grid units) splits into a cell
k // 256 and an offset k % 256; the cell is coded under the masses of the cells in a window of
about 12 standard deviations around the mean (power-of-two widths, grouped), the offset under
the masses of the cell's 256 grid points. Every mass is a difference of `fixed_point.GaussianCdf`
values: integers. The base N(0, I) has one fixed window of 64 standard deviations, so a value
that a poorly fitted prior puts far out is still coded; a value outside is a one-line error.
"""

from typing import Callable, List, Optional

import constriction
import numpy as np
import threadpoolctl

from vlae_tf import errors
from vlae_tf.compression import bitsback
from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import integer_networks
from vlae_tf.compression import latent_codes

_MODEL = constriction.stream.model
CELL_BITS = 8
CELL = 1 << CELL_BITS
GRID_UNIT = 1 << (fxp.LATENT_BITS - integer_networks.GRID_BITS)   # One grid step at 2^-24.
FRESH_SPREAD = 12      # Window of a code whose pops draw fresh bits: +-12 standard deviations.
BASE_SPREAD = 64       # The base N(0, I): +-64 standard deviations.
_CHUNK = 4096          # Rows of masses computed at once (memory).


def _uniform_if_empty(masses):
  """Rows whose masses are all zero (a value far in a tail) become uniform: still a code."""
  empty = masses.sum(axis=1) <= 0
  masses[empty] = 1.0
  return masses


class GaussianGridCode:
  """Grid values k under N(loc, scale^2) (loc, scale int64 at 2^-24), two levels (module doc)."""

  def __init__(self, lengths: Optional[latent_codes.CodeLengths] = None):
    self.cdf = fxp.GaussianCdf()
    self.model = _MODEL.Categorical(perfect=False)
    self.lengths = lengths
    self._base_model = None

  def _masses(self, edges, loc, scale):
    """[n, m] masses between consecutive grid edges [n, m + 1] (at 2^-24) under N(loc, scale)."""
    cdf = self.cdf(edges - loc[:, None], scale[:, None])
    return _uniform_if_empty(np.diff(cdf, axis=1).astype(np.float64))

  def _windows(self, scale, spread):
    """Per element: the cell window's half-width W, a power of two >= spread * std + 2 cells."""
    cells = spread * scale // (GRID_UNIT * CELL) + 2
    return np.left_shift(1, np.frexp((cells - 1).astype(np.float64))[1]).astype(np.int64)

  def _cell_masses(self, centres, width, loc, scale):
    cells = centres[:, None] + np.arange(-width, width + 1)[None, :]
    edges = np.concatenate([cells, cells[:, -1:] + 1], axis=1) * CELL * GRID_UNIT - GRID_UNIT // 2
    return self._masses(edges, loc, scale)

  def _offset_masses(self, cells, loc, scale):
    points = cells[:, None] * CELL + np.arange(CELL + 1)[None, :]
    return self._masses(points * GRID_UNIT - GRID_UNIT // 2, loc, scale)

  def _groups(self, loc, scale, spread):
    """(window half-width, element indices, the cells' masses or a static model) per group."""
    centres = np.floor_divide(loc, GRID_UNIT * CELL)
    if spread == BASE_SPREAD:  # N(0, 1) everywhere: one static model of the base's cells.
      if self._base_model is None:
        width = BASE_SPREAD * (1 << fxp.LATENT_BITS) // (GRID_UNIT * CELL) + 2
        masses = self._cell_masses(np.zeros(1, np.int64), width, np.zeros(1, np.int64),
                                   np.full(1, 1 << fxp.LATENT_BITS, np.int64))[0]
        self._base_model = (width, _MODEL.Categorical(masses, perfect=False))
      width, model = self._base_model
      yield width, np.arange(len(loc)), centres, model
      return
    widths = self._windows(scale, spread)
    for width in np.unique(widths):
      index = np.flatnonzero(widths == width)
      for start in range(0, len(index), _CHUNK):
        part = index[start:start + _CHUNK]
        yield int(width), part, centres, None

  def push(self, coder, values, loc, scale, spread=FRESH_SPREAD):
    """Pushes grid values (int64, any shape) under N(loc, scale^2) of the same shape."""
    values, loc, scale = (np.ravel(np.asarray(a, np.int64)) for a in (values, loc, scale))
    cells, offsets = np.divmod(values, CELL)
    pieces = []
    for width, index, centres, static in self._groups(loc, scale, spread):
      relative = cells[index] - centres[index] + width
      if np.any((relative < 0) | (relative > 2 * width)):
        raise errors.CodecError('a latent value lies outside its coded window (over '
                                f'{spread} standard deviations from its mean): this model cannot '
                                'code these images portably.')
      pieces.append((relative, static if static is not None else (
          self._cell_masses(centres[index], width, loc[index], scale[index]))))
    offset_masses = self._offset_masses(cells, loc, scale)
    coder.encode_reverse(offsets.astype(np.int32), self.model, offset_masses)
    for relative, masses in reversed(pieces):
      if isinstance(masses, np.ndarray):
        coder.encode_reverse(relative.astype(np.int32), self.model, masses)
      else:
        coder.encode_reverse(relative.astype(np.int32), masses)
    if self.lengths is not None:
      self.lengths.latent_pushed += self._information(values, loc, scale)

  def pop(self, coder, loc, scale, spread=FRESH_SPREAD):
    """Pops grid values (int64) under N(loc, scale^2) (arrays of one shape)."""
    shape = np.shape(loc)
    loc, scale = np.ravel(np.asarray(loc, np.int64)), np.ravel(np.asarray(scale, np.int64))
    cells = np.zeros(loc.shape, np.int64)
    for width, index, centres, static in self._groups(loc, scale, spread):
      if static is not None:
        relative = coder.decode(static, len(index))
      else:
        relative = coder.decode(self.model, self._cell_masses(centres[index], width, loc[index],
                                                              scale[index]))
      cells[index] = relative + centres[index] - width
    offsets = coder.decode(self.model, self._offset_masses(cells, loc, scale))
    values = cells * CELL + offsets
    if self.lengths is not None:
      self.lengths.latent_popped += self._information(values, loc, scale)
    return values.reshape(shape)

  def _information(self, values, loc, scale):
    """-log2 of each value's grid-cell mass (reporting only: floats, not part of the code)."""
    edges = np.stack([values, values + 1], axis=1) * GRID_UNIT - GRID_UNIT // 2
    mass = np.diff(self.cdf(edges - loc[:, None], scale[:, None]), axis=1)[:, 0]
    total = float(self.cdf.cdf[-1]) * (1 << self.cdf.SUB_BITS)
    return float(-np.log2(np.maximum(mass / total, 2.0 ** -24)).sum())


class PortableBitsBackCoder:
  """Encodes binary images to 32-bit words and back through `integer_networks.IntegerVLAE`.

  The interface of `bitsback.BitsBackCoder`; `encode` and `decode` are exact inverses on any
  two machines that hold the same weights. BLAS runs on one thread (`threadpoolctl`): the
  results are the same for any count (exact arithmetic), and the small products of the
  pixel-by-pixel pass are 5x faster so on a busy 2-core CPU."""

  portable = True

  def __init__(self, model, first_batch: int = 1, largest_batch: int = 500,
               growth_percent: int = 5):
    self.networks = integer_networks.IntegerVLAE(model)
    self.precision = integer_networks.GRID_BITS
    self.first_batch, self.largest_batch = int(first_batch), int(largest_batch)
    self.growth_percent = int(growth_percent)
    self.image_shape = self.networks.image_shape
    self.latent_size = self.networks.latent_size
    self._pixels = _MODEL.Categorical(perfect=False)

  def schedule(self, count: int) -> List[int]:
    return bitsback.batch_sizes(count, self.first_batch, self.largest_batch, self.growth_percent)

  def initial_words(self) -> np.ndarray:
    """Seeded words under the first pops (`bitsback.initial_words`)."""
    return bitsback.initial_words(self.first_batch, self.latent_size)

  def _base(self, size):
    shape = (size, self.latent_size)
    return np.zeros(shape, np.int64), np.full(shape, 1 << fxp.LATENT_BITS, np.int64)

  def encode(self, images: np.ndarray, progress: Optional[Callable[[int], None]] = None):
    """Compresses binary images [N, H, W, C] ({0, 1}) into uint32 words.

    Returns:
      (words, CodeLengths, initial_bits).
    """
    with threadpoolctl.threadpool_limits(1, user_api='blas'):
      return self._encode(np.asarray(images, np.float64), progress)

  def _encode(self, images, progress):
    initial = self.initial_words()
    coder = constriction.stream.stack.AnsCoder(initial.copy())
    lengths = latent_codes.CodeLengths()
    code = GaussianGridCode(lengths)
    networks, done = self.networks, 0
    for size in self.schedule(len(images)):
      batch = images[done:done + size]
      loc, scale = networks.posterior(batch)
      z = code.pop(coder, loc, scale)
      logits = networks.logits(batch, networks.context(z))
      masses = fxp.bernoulli_masses(logits)  # [B, H, W, C, 2]
      symbols = batch.astype(np.int32)
      coder.encode_reverse(_pixel_major(symbols), self._pixels,
                           _pixel_major(masses).reshape(-1, 2))
      lengths.pixels += _pixel_information(masses, symbols)
      code.push(coder, networks.flow.inverse(z), *self._base(size), spread=BASE_SPREAD)
      done += size
      if progress:
        progress(done)
    return coder.get_compressed(), lengths, 32 * len(initial)

  def decode(self, words: np.ndarray, count: int,
             progress: Optional[Callable[[int], None]] = None):
    """Decompresses `count` images from the words of `encode`.

    Returns:
      (images [count, H, W, C] float32 in {0, 1}, leftover words): the leftover words are
      `initial_words()` when the stream and the model are the ones that encoded it.
    """
    with threadpoolctl.threadpool_limits(1, user_api='blas'):
      return self._decode(words, count, progress)

  def _decode(self, words, count, progress):
    coder = constriction.stream.stack.AnsCoder(np.asarray(words, np.uint32).copy())
    code = GaussianGridCode()
    networks, batches, done = self.networks, [], 0

    def choose_pixel(logits, row, col):
      del row, col
      return coder.decode(self._pixels, fxp.bernoulli_masses(logits).reshape(-1, 2))

    for size in reversed(self.schedule(count)):
      eps = code.pop(coder, *self._base(size), spread=BASE_SPREAD)
      z = networks.flow.forward(eps)
      batch = networks.pixelcnn.decode_pixels(networks.context(z), choose_pixel)
      loc, scale = networks.posterior(batch)
      code.push(coder, z, loc, scale)
      batches.append(batch)
      done += size
      if progress:
        progress(done)
    images = (np.concatenate(batches[::-1]) if batches
              else np.zeros((0, *self.image_shape)))
    return images.astype(np.float32), coder.get_compressed()


def _pixel_major(values):
  """[B, H, W, C, ...] -> pixel-major (position, then image, then channel): the decoding order."""
  moved = np.moveaxis(values, 0, 2)
  return np.ascontiguousarray(moved).reshape(-1, *values.shape[4:]) if values.ndim > 4 else (
      np.ascontiguousarray(moved).ravel())


def _pixel_information(masses, symbols):
  chosen = np.take_along_axis(masses, symbols[..., None].astype(np.int64), axis=-1)[..., 0]
  return float(-np.log2(np.maximum(chosen / 2.0 ** fxp.PROBABILITY_BITS, 2.0 ** -24)).sum())
