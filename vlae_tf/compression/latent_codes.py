"""Gaussians and flows coded on a fine grid with an ANS stack: the latent part of bits-back coding.

Latents live on the grid k * step, step = 2**-precision (2**-14 by default), fine against every
scale that matters, so that a density times step^D is a probability and a value on the grid is the
same number on both sides. A diagonal Gaussian (the VLAE's posterior q(z|x), or N(0, I)) codes a
grid point per dimension directly (`Grid`). A flow z = f(eps), eps ~ N(loc, diag(scale^2)) (the
AF prior over N(0, I), an IAF posterior over N(loc, scale)) is coded with local bits-back (Ho,
Lohn and Abbeel 2019, "Compression with flows via local bits-back coding"), which needs f, f^-1
and the Jacobian J = df^-1/dz only at grid points that both sides know (`FlowCode`):

    push z:  eps = f^-1(z), J at z;  pop eps' ~ N(eps, s^2 J J^T);  push z ~ N(f(eps'), s^2 I);
             push eps' under the base.
    pop z:   pop eps' (base);  pop z ~ N(f(eps'), s^2 I);  eps = f^-1(z), J at z;
             push eps' ~ N(eps, s^2 J J^T).

A push then costs -log2 p(z) - D log2(step) bits (since f(eps') ~ z + J^-1 (eps' - eps)), to
O(s^2) and to the flow's kinks (its MADEs use ReLUs) within s: with s = 2**-8 the measured excess
on gin/mnist_vlae.gin is 0.3% of the file. Two simpler routes were measured and dropped: one
Gaussian q(eps | x) from linearizing f at the posterior's own scale cost 38 bits per image more
(the posterior is wide, median scale 0.9, across a curved flow); a larger s crosses more kinks.
The full-covariance N(eps, s^2 J J^T) is coded one dimension at a time from its conditionals (a
Cholesky factor, from a QR decomposition so that it never fails).

The alphabets stay small (`Windowed`, and cells of 256 grid points for wide Gaussians): the coder
gives every symbol at least 2**-24, so a wide alphabet around a narrow Gaussian holds mass far
from it, and a pop (a sample drawn with the stack's bits) would sometimes land there.
"""

import dataclasses
from typing import Optional

import constriction
import numpy as np
from scipy import special

_MODEL = constriction.stream.model
LOCAL_SCALE = 2.0 ** -8   # s of local bits-back.


@dataclasses.dataclass
class CodeLengths:
  """Ideal information contents in bits, summed over images (the coder spends about this)."""
  pixels: float = 0.0        # -log2 p(x | z)
  latent_pushed: float = 0.0   # bits pushed for z (prior, and the flows' local codes)
  latent_popped: float = 0.0   # bits popped for z: the bits got back

  @property
  def net(self) -> float:
    return self.pixels + self.latent_pushed - self.latent_popped


class Windowed:
  """Integers under N(mean, std^2) discretized to unit bins, in a window around round(mean).

  The window is +-W with W the power of two >= `spread` std + 2, and symbols are coded in groups
  of equal W (one constriction model each, in a fixed order that both sides derive from the stds).
  A window that follows the std matters for codes whose pops draw fresh bits (sample) when
  compressing: the coder gives every symbol of its alphabet at least 2**-24, so a wide alphabet
  around a narrow Gaussian puts mass far out, and a pop would sometimes land there. A code that
  is pushed with given values when compressing (and popped back to them when decompressing) needs
  a wide window instead: a poorly fitted model can put a value far from its mean (20 std seen on a
  briefly trained tiny model), and the floor there costs a negligible fraction of a bit.
  """

  def __init__(self, spread: float):
    self._spread = spread
    self._models = {}

  def _groups(self, std):
    widths = 2 ** np.ceil(np.log2(self._spread * std + 2.0)).astype(np.int64)
    for width in np.unique(widths):
      if width not in self._models:
        self._models[width] = _MODEL.QuantizedGaussian(-int(width), int(width))
      yield self._models[width], width, np.flatnonzero(widths == width)

  def push(self, coder, symbols, mean, std):
    centre = np.rint(mean)
    offsets = symbols - centre
    for model, width, index in reversed(list(self._groups(std))):
      if np.any(np.abs(offsets[index]) > width):
        raise ValueError(f'a value lies {np.abs(offsets[index] / std[index]).max():.1f} standard '
                         'deviations from its mean, outside the coded window')
      coder.encode_reverse(offsets[index].astype(np.int32), model, mean[index] - centre[index],
                           std[index])

  def pop(self, coder, mean, std):
    centre = np.rint(mean)
    symbols = np.zeros(mean.shape, np.int64)
    for model, _, index in self._groups(std):
      symbols[index] = coder.decode(model, mean[index] - centre[index], std[index])
    return symbols + centre.astype(np.int64)


class Grid:
  """Gaussians on the grid k * step: a wide code for wide ones, a narrow code for narrow ones.

  A wide code (a posterior, a flow's base) splits k = 256 * cell + offset: the cell under the
  Gaussian's mass of cells (`Windowed`, in units of cells), then the offset under the Gaussian's
  masses of the cell's 256 grid points (a categorical: constriction's quantized Gaussian piles
  clipped tails onto the end symbols, which is wrong for a conditional). A narrow code (local
  bits-back, std ~ LOCAL_SCALE) codes k directly (`Windowed`, in grid units). The product of the
  pieces is the Gaussian's mass of the grid cell.
  """

  CELL = 256

  def __init__(self, precision: int, lengths: Optional[CodeLengths] = None):
    """`lengths`, when given, sums the information of every push and pop (extra work)."""
    self.step = 2.0 ** -precision
    self._windowed = {True: Windowed(spread=10.0), False: Windowed(spread=128.0)}
    self._offsets = _MODEL.Categorical(perfect=False)
    self.lengths = lengths

  def _information(self, symbols, mean, std):
    """sum of -log2 (the Gaussian's mass of each grid cell), in grid units."""
    mass = gaussian_mass((symbols - 0.5 - mean) / std, 1.0 / std)
    return float(-np.log2(np.maximum(mass, 2.0 ** -24)).sum())

  def _offset_probabilities(self, cells, mean, std):
    """[n, CELL] masses of the grid points of each cell under N(mean, std^2) (grid units),
    normalized; uniform for a cell so far out that every mass underflows."""
    lower = (cells[:, None] * self.CELL + np.arange(self.CELL)[None, :] - 0.5
             - mean[:, None]) / std[:, None]
    mass = np.maximum(gaussian_mass(lower, 1.0 / std[:, None]), 0.0)
    total = mass.sum(1, keepdims=True)
    return np.where(total > 1e-200, mass / np.maximum(total, 1e-200), 1.0 / self.CELL)

  def _cell_params(self, mean, std):
    # Cell c holds grid points 256 c .. 256 c + 255, i.e. [256 c - 0.5, 256 c + 255.5] in grid
    # units: in cell units, the unit bin around c after shifting by 127.5 / 256.
    return (mean - (self.CELL - 1) / 2) / self.CELL, std / self.CELL

  def push(self, coder, values, mean, std, narrow=False, fresh=False):
    """Pushes grid values (any shape) under N(mean, std^2) of the same shape.

    `fresh`: this code's pops draw fresh bits when compressing (a narrow window, see `Windowed`);
    otherwise its pushes take given values (a wide window). The matching `pop` says the same.
    """
    symbols = np.rint(np.ravel(values) / self.step).astype(np.int64)
    mean, std = np.ravel(mean) / self.step, np.ravel(std) / self.step
    windowed = self._windowed[fresh]
    if narrow:
      windowed.push(coder, symbols, mean, std)
    else:
      cells, offsets = np.divmod(symbols, self.CELL)
      coder.encode_reverse(offsets.astype(np.int32), self._offsets,
                           self._offset_probabilities(cells, mean, std))
      windowed.push(coder, cells, *self._cell_params(mean, std))
    if self.lengths is not None:
      self.lengths.latent_pushed += self._information(symbols, mean, std)

  def pop(self, coder, mean, std, narrow=False, fresh=False):
    """Pops grid values under N(mean, std^2) (arrays of one shape); `fresh` as in `push`."""
    shape = np.shape(mean)
    mean, std = np.ravel(mean) / self.step, np.ravel(std) / self.step
    windowed = self._windowed[fresh]
    if narrow:
      symbols = windowed.pop(coder, mean, std)
    else:
      cells = windowed.pop(coder, *self._cell_params(mean, std))
      offsets = coder.decode(self._offsets, self._offset_probabilities(cells, mean, std))
      symbols = cells * self.CELL + offsets
    if self.lengths is not None:
      self.lengths.latent_popped += self._information(symbols, mean, std)
    return (symbols * self.step).reshape(shape)


def gaussian_mass(lower, width):
  """Mass of N(0, 1) on [lower, lower + width], computed on the side of each tail (arrays)."""
  upper = lower + width
  return np.where(lower > 0, special.ndtr(-lower) - special.ndtr(-upper),
                  special.ndtr(upper) - special.ndtr(lower))


def lower_factor(matrices):
  """Lower L with L L^T = M M^T for a stack [B, D, D], from M^T = QR (no failure when M is bad)."""
  r = np.linalg.qr(np.swapaxes(matrices, 1, 2), mode='r')
  return np.swapaxes(r, 1, 2) * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


class FlowCode:
  """Codes z of a flow z = f(eps), eps ~ N(loc, scale^2), or of N(loc, scale^2) when f is None.

  `posterior=True` for a code whose `pop` runs when compressing (q(z|x): its pops of the base
  and of z draw fresh bits, and its conditionals take given values); `posterior=False` for one
  whose `push` runs then (the prior: its conditionals' pops draw fresh bits, and z and the base
  noise are given). That decides each piece's window (`Grid.push`).
  """

  def __init__(self, grid: Grid, loc, scale, flow=None, posterior=False):
    self.grid, self.loc, self.scale, self.flow = grid, loc, scale, flow
    self._fresh = posterior

  def push(self, coder, z):
    grid = self.grid
    if self.flow is None:
      grid.push(coder, z, self.loc, self.scale, fresh=self._fresh)
      return
    eps, lower = self._local(z)
    noisy = self._pop_conditionals(coder, eps, lower)
    grid.push(coder, z, self.flow.forward(noisy), np.full(z.shape, LOCAL_SCALE), narrow=True,
              fresh=self._fresh)
    grid.push(coder, noisy, self.loc, self.scale, fresh=self._fresh)

  def pop(self, coder):
    grid = self.grid
    if self.flow is None:
      return grid.pop(coder, self.loc, self.scale, fresh=self._fresh)
    noisy = grid.pop(coder, self.loc, self.scale, fresh=self._fresh)
    z = grid.pop(coder, self.flow.forward(noisy), np.full(noisy.shape, LOCAL_SCALE), narrow=True,
                 fresh=self._fresh)
    eps, lower = self._local(z)
    self._push_conditionals(coder, noisy, eps, lower)
    return z

  def _local(self, z):
    eps, jacobian = self.flow.inverse_and_jacobian(z)
    return eps, lower_factor(LOCAL_SCALE * jacobian)

  def _conditional(self, eps, lower, residuals, dim):
    mean = eps[:, dim] + np.einsum('bj,bj->b', lower[:, dim, :dim], residuals[:, :dim])
    return mean, lower[:, dim, dim]

  def _pop_conditionals(self, coder, eps, lower):
    """Pops eps' ~ N(eps, L L^T) one dimension at a time."""
    noisy, residuals = np.zeros(eps.shape), np.zeros(eps.shape)
    for dim in range(eps.shape[1]):
      mean, std = self._conditional(eps, lower, residuals, dim)
      noisy[:, dim] = self.grid.pop(coder, mean, std, narrow=True, fresh=not self._fresh)
      residuals[:, dim] = (noisy[:, dim] - mean) / std
    return noisy

  def _push_conditionals(self, coder, noisy, eps, lower):
    """Pushes eps' back under N(eps, L L^T): undoes `_pop_conditionals`, last dimension first."""
    residuals, params = np.zeros(eps.shape), []
    for dim in range(eps.shape[1]):
      mean, std = self._conditional(eps, lower, residuals, dim)
      params.append((mean, std))
      residuals[:, dim] = (noisy[:, dim] - mean) / std
    for dim in reversed(range(eps.shape[1])):
      self.grid.push(coder, noisy[:, dim], *params[dim], narrow=True, fresh=not self._fresh)
