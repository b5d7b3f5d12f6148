"""Bits-back coding with ANS (BB-ANS, Townsend et al. 2019) of binary images through a trained VLAE.

A VAE is a lossless code: the code length of x is, on average, its -ELBO (Chen et al. 2017,
section 2). Per image, on one stack of compressed bits (`constriction`'s ANS coder):

    encode x:  pop  z ~ q(z | x)              (takes bits off the stack: the bits back)
               push x under p(x | z)          (the PixelCNN, pixel by pixel)
               push z under p(z)              (the AF prior, through local bits-back, below)
    decode:    the same steps backwards: pop z (prior), pop x pixel by pixel (each pixel's
               probability needs the pixels before it), push z under q(z | x).

Net cost per image: -log2 p(x|z) - log2 p(z) + log2 q(z|x) bits: the -ELBO in bits of the model's
own posterior. The first pops of a chain take bits that nothing has pushed yet: the one-off
"initial bits" (seeded pseudo-random words).

Latents live on a grid of step `2**-precision` in [-RANGE, RANGE] (constriction's quantized
Gaussians, in units of the step), fine against every scale that matters, so a density times the
step's volume is a probability. A diagonal Gaussian (the posterior, or N(0, I)) codes the grid
point directly. A flow z = f(eps), eps ~ base (the AF prior over N(0, I); an IAF posterior over
N(loc, scale)), is coded with local bits-back (Ho, Lohn and Abbeel 2019, "Compression with flows
via local bits-back coding"), which needs f, f^-1 and the Jacobian J = df^-1/dz only at grid points
that both sides know:

    push z:  eps = f^-1(z), J at z;  pop eps' ~ N(eps, s^2 J J^T);  push z ~ N(f(eps'), s^2 I);
             push eps' under the base.
    pop z:   pop eps' (base);  pop z ~ N(f(eps'), s^2 I);  eps = f^-1(z), J at z;
             push eps' ~ N(eps, s^2 J J^T).

The net cost of a push is -log2 p(z) - log2(step^D) up to O(s^2) (f is linear at the scale
s = 2**-4), whatever the shape of the posterior: linearizing f at the posterior's own scale instead
(one Gaussian q(eps | x)) cost 38 bits per image more on gin/mnist_vlae.gin, whose posterior is
wide (median scale 0.9) across a curved flow. The full-covariance Gaussian N(eps, s^2 J J^T) is
coded one dimension at a time from its conditionals (a Cholesky factor).

Both sides must compute every probability from identical numbers. The pixels' logits therefore
come from the same traced graph on both sides (the decoder's cached sampler path, `autoregress`,
with the known pixels fed back when encoding), never from the parallel convolution, whose floats
differ from the cached path's in the last bits; batches have the same composition on both sides;
and op determinism is on. Images are coded in batches of growing size (`batch_sizes`), so that the
first pops need few initial bits and later batches decode many images in parallel.
"""

import dataclasses
import math
from typing import Callable, List, Optional

import constriction
import numpy as np
from scipy import special
import tensorflow as tf

_MODEL = constriction.stream.model
LOCAL_SCALE = 2.0 ** -8   # s of local bits-back.


class UnsupportedModelError(ValueError):
  """The model has no bits-back code here (8-bit data, spatial latents, a decoder without cache)."""


def batch_sizes(count: int, first: int, largest: int, growth_percent: int) -> List[int]:
  """The batch sizes of a chain of `count` images.

  A batch pops its latents before it pushes anything, so it needs about its size times the
  latent bits per image on the stack, while each coded image leaves only its net code length
  there: each batch holds growth_percent% of the images already coded (at least `first`, at most
  `largest`). Integer arithmetic only, so that both sides derive the same schedule from the
  file's header.
  """
  if count < 0 or first < 1 or largest < first or growth_percent < 0:
    raise ValueError(f'Bad batch schedule: count={count}, first={first}, largest={largest}, '
                     f'growth_percent={growth_percent}.')
  sizes, done = [], 0
  while done < count:
    size = min(count - done, largest, max(first, done * growth_percent // 100))
    sizes.append(size)
    done += size
  return sizes


@dataclasses.dataclass
class CodeLengths:
  """Ideal information contents in bits, summed over images (the coder spends about this)."""
  pixels: float = 0.0        # -log2 p(x | z)
  latent_pushed: float = 0.0   # bits pushed for z (prior, and the flows' local codes)
  latent_popped: float = 0.0   # bits popped for z: the bits got back

  @property
  def net(self) -> float:
    return self.pixels + self.latent_pushed - self.latent_popped


class _Windowed:
  """Integers under N(mean, std^2) discretized to unit bins, in a window around round(mean).

  The window is +-W with W the power of two >= `spread` std + 2, and symbols are coded in groups
  of equal W (one constriction model each, in a fixed order that both sides derive from the stds).
  A window that follows the std matters for codes that are popped from fresh bits (sampled): the
  coder gives every symbol of its alphabet at least 2**-24, so a wide alphabet around a narrow
  Gaussian puts mass far out, and a pop would sometimes land there. A code that is only pushed
  with given values (and popped back to them) can afford a wide window: there the floor costs a
  negligible fraction of a bit and a value far from its mean still fits.
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


class _Grid:
  """Gaussians on the grid k * step: a wide code for wide ones, a narrow code for narrow ones.

  A wide code (a posterior, a flow's base) splits k = 256 * cell + offset: the cell under the
  Gaussian's mass of cells (`_Windowed`, in units of cells), then the offset under the Gaussian's
  masses of the cell's 256 grid points (a categorical: constriction's quantized Gaussian piles
  clipped tails onto the end symbols, which is wrong for a conditional). A narrow code (local
  bits-back, std ~ LOCAL_SCALE) codes k directly (`_Windowed`, in grid units). The product of the
  pieces is the Gaussian's mass of the grid cell.
  """

  CELL = 256

  def __init__(self, precision: int, lengths: CodeLengths):
    self.step = 2.0 ** -precision
    self._windowed = _Windowed(spread=10.0)
    self._tolerant = _Windowed(spread=128.0)
    self._offsets = _MODEL.Categorical(perfect=False)
    self.lengths = lengths

  def _information(self, symbols, mean, std):
    """sum of -log2 (the Gaussian's mass of each grid cell), in grid units."""
    mass = _gaussian_mass((symbols - 0.5 - mean) / std, 1.0 / std)
    return float(-np.log2(np.maximum(mass, 2.0 ** -24)).sum())

  def _offset_probabilities(self, cells, mean, std):
    """[n, CELL] masses of the grid points of each cell under N(mean, std^2) (grid units)."""
    lower = (cells[:, None] * self.CELL + np.arange(self.CELL)[None, :] - 0.5
             - mean[:, None]) / std[:, None]
    return _gaussian_mass(lower, 1.0 / std[:, None])

  def _cell_params(self, mean, std):
    # Cell c holds grid points 256 c .. 256 c + 255, i.e. [256 c - 0.5, 256 c + 255.5] in grid
    # units: in cell units, the unit bin around c after shifting by 127.5 / 256.
    return (mean - (self.CELL - 1) / 2) / self.CELL, std / self.CELL

  def push(self, coder, values, mean, std, narrow=False, given=False):
    """Pushes grid values (any shape) under N(mean, std^2) of the same shape.

    `given`: the values were not popped from this same Gaussian (a narrow code with a wide
    window, see `_Windowed`); the matching `pop` must say so too.
    """
    symbols = np.rint(np.ravel(values) / self.step).astype(np.int64)
    mean, std = np.ravel(mean) / self.step, np.ravel(std) / self.step
    if narrow:
      (self._tolerant if given else self._windowed).push(coder, symbols, mean, std)
    else:
      cells, offsets = np.divmod(symbols, self.CELL)
      coder.encode_reverse(offsets.astype(np.int32), self._offsets,
                           self._offset_probabilities(cells, mean, std))
      self._windowed.push(coder, cells, *self._cell_params(mean, std))
    self.lengths.latent_pushed += self._information(symbols, mean, std)

  def pop(self, coder, mean, std, narrow=False, given=False):
    """Pops grid values under N(mean, std^2) (arrays of one shape)."""
    shape = np.shape(mean)
    mean, std = np.ravel(mean) / self.step, np.ravel(std) / self.step
    if narrow:
      symbols = (self._tolerant if given else self._windowed).pop(coder, mean, std)
    else:
      cells = self._windowed.pop(coder, *self._cell_params(mean, std))
      offsets = coder.decode(self._offsets, self._offset_probabilities(cells, mean, std))
      symbols = cells * self.CELL + offsets
    self.lengths.latent_popped += self._information(symbols, mean, std)
    return (symbols * self.step).reshape(shape)


def _gaussian_mass(lower, width):
  """Mass of N(0, 1) on [lower, lower + width], computed on the side of each tail (arrays)."""
  upper = lower + width
  return np.where(lower > 0, special.ndtr(-lower) - special.ndtr(-upper),
                  special.ndtr(upper) - special.ndtr(lower))


def _lower_factor(matrices):
  """Lower L with L L^T = M M^T for a stack [B, D, D], from M^T = QR (no failure when M is bad)."""
  r = np.linalg.qr(np.swapaxes(matrices, 1, 2), mode='r')
  return np.swapaxes(r, 1, 2) * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


class _FlowCode:
  """Codes z of a flow z = f(eps), eps ~ N(loc, scale^2), or of N(loc, scale^2) when f is None."""

  def __init__(self, grid: _Grid, loc, scale, flow=None):
    self.grid, self.loc, self.scale, self.flow = grid, loc, scale, flow

  def push(self, coder, z):
    grid = self.grid
    if self.flow is None:
      grid.push(coder, z, self.loc, self.scale)
      return
    eps, lower = self._local(z)
    noisy = self._pop_conditionals(coder, eps, lower)
    grid.push(coder, z, self.flow.forward(noisy), np.full(z.shape, LOCAL_SCALE), narrow=True,
              given=True)
    grid.push(coder, noisy, self.loc, self.scale)

  def pop(self, coder):
    grid = self.grid
    if self.flow is None:
      return grid.pop(coder, self.loc, self.scale)
    noisy = grid.pop(coder, self.loc, self.scale)
    z = grid.pop(coder, self.flow.forward(noisy), np.full(noisy.shape, LOCAL_SCALE), narrow=True,
                 given=True)
    eps, lower = self._local(z)
    self._push_conditionals(coder, noisy, eps, lower)
    return z

  def _local(self, z):
    eps, jacobian = self.flow.inverse_and_jacobian(z)
    return eps, _lower_factor(LOCAL_SCALE * jacobian)

  def _conditional(self, eps, lower, residuals, dim):
    mean = eps[:, dim] + np.einsum('bj,bj->b', lower[:, dim, :dim], residuals[:, :dim])
    return mean, lower[:, dim, dim]

  def _pop_conditionals(self, coder, eps, lower):
    """Pops eps' ~ N(eps, L L^T) one dimension at a time."""
    noisy, residuals = np.zeros(eps.shape), np.zeros(eps.shape)
    for dim in range(eps.shape[1]):
      mean, std = self._conditional(eps, lower, residuals, dim)
      noisy[:, dim] = self.grid.pop(coder, mean, std, narrow=True)
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
      self.grid.push(coder, noisy[:, dim], *params[dim], narrow=True)


class _Flow:
  """A bijector given as traced `forward(eps, context)` and `inverse_and_jacobian(z, context)`,
  called on NumPy float64 arrays (the context is bound per batch)."""

  def __init__(self, forward, inverse_and_jacobian, context):
    self._forward, self._inverse_and_jacobian, self._context = (
        forward, inverse_and_jacobian, context)

  def forward(self, eps):
    return self._forward(tf.constant(eps, tf.float32), self._context).numpy().astype(np.float64)

  def inverse_and_jacobian(self, z):
    inverse, jacobian = self._inverse_and_jacobian(tf.constant(z, tf.float32), self._context)
    return inverse.numpy().astype(np.float64), jacobian.numpy().astype(np.float64)


def _traced_bijector(make_bijector, size, context_size):
  """(forward, inverse_and_jacobian) of `make_bijector(context or None)`, each traced once."""
  spec = tf.TensorSpec([None, size], tf.float32)
  context_spec = tf.TensorSpec([None, context_size], tf.float32)

  def bijector(context):
    return make_bijector(context if context_size else None)

  @tf.function(input_signature=[spec, context_spec])
  def forward(eps, context):
    return bijector(context).forward(eps)

  @tf.function(input_signature=[spec, context_spec])
  def inverse_and_jacobian(z, context):
    with tf.GradientTape() as tape:
      tape.watch(z)
      eps = bijector(context).inverse(z)
    return eps, tape.batch_jacobian(eps, z)  # [B, D], [B, D, D]

  return forward, inverse_and_jacobian


def _bijectors(model):
  """(make the prior's f or None, make the posterior's g(context) or None, its context size)."""
  # Class names, not imports: this module needs no layer module.
  posterior, prior = type(model.posterior).__name__, type(model.prior).__name__
  if prior == 'GaussianPrior':
    prior_bijector = None
  elif prior == 'AutoregressiveFlowPrior':
    prior_bijector = lambda context: model.prior.bijector()
  else:
    raise UnsupportedModelError(f'bits-back coding supports the Gaussian and AF priors over a '
                                f'vector z, not {prior}.')
  if posterior == 'DiagonalGaussianPosterior':
    return prior_bijector, None, 0
  if posterior == 'IAFPosterior':
    return prior_bijector, model.posterior.bijector, model.posterior.context_size or 0
  raise UnsupportedModelError(f'bits-back coding supports diagonal Gaussian and IAF posteriors, '
                              f'not {posterior}.')


class BitsBackCoder:
  """Encodes binary images to 32-bit words and back, through one VLAE, losslessly.

  `encode(images)` and `decode(words, count)` are exact inverses for a given model (same weights,
  same settings), on one machine; a model that computes different floats (other weights, another
  CPU's kernels) decodes garbage, which the file format (`vlae_tf.codec`) detects.
  """

  def __init__(self, model, precision: int = 14, first_batch: int = 1, largest_batch: int = 500,
               growth_percent: int = 5):
    if model.data_kind != 'binary':
      raise UnsupportedModelError('bits-back coding supports binary images (Bernoulli pixels); '
                                  f'this model is for {model.data_kind} data.')
    if model.has_latent and len(model.latent_shape) != 1:
      raise UnsupportedModelError('bits-back coding supports a vector z; this model has z of '
                                  f'shape {model.latent_shape}.')
    if not 8 <= precision <= 16:
      raise ValueError(f'precision must be in 8..16, got {precision}.')
    self.model = model
    self.precision = int(precision)
    self.first_batch, self.largest_batch = int(first_batch), int(largest_batch)
    self.growth_percent = int(growth_percent)
    self.image_shape = tuple(model.image_shape)
    self.latent_size = model.latent_shape[0] if model.has_latent else 0
    self._bernoulli = _MODEL.Bernoulli(perfect=False)
    # Set per pass: what the pixel callback does (keep the logits of known pixels, or decode).
    self._pixel_mode, self._known, self._logits, self._coder = None, None, None, None
    self._build_functions()

  # -- TensorFlow side: the same traced graphs for both directions -----------------------------

  def _build_functions(self):
    model, (height, width, channels) = self.model, self.image_shape
    image_spec = tf.TensorSpec([None, height, width, channels], tf.float32)
    latent_spec = tf.TensorSpec([None, self.latent_size], tf.float32)
    self._prior_flow = self._posterior_flow = None
    if model.has_latent:
      prior_bijector, posterior_bijector, context_size = _bijectors(model)
      self._context_size = context_size

      @tf.function(input_signature=[image_spec])
      def posterior(images):
        encoded = model.encoder(model.likelihood.network_input(images))
        context = encoded.context if context_size else tf.zeros([tf.shape(images)[0], 0])
        return encoded.loc, encoded.scale, context

      self._posterior = posterior
      if prior_bijector is not None:
        self._prior_flow = _traced_bijector(prior_bijector, self.latent_size, 0)
      if posterior_bijector is not None:
        self._posterior_flow = _traced_bijector(posterior_bijector, self.latent_size,
                                                context_size)

    decoder = model.decoder
    factorized = not decoder.window()
    if not factorized and not hasattr(decoder, 'autoregress'):
      raise UnsupportedModelError(f'bits-back coding needs a decoder with a cached sampler '
                                  f'(DepthLimitedPixelCNN) or a factorized one, not '
                                  f'{type(decoder).__name__}.')

    def choose_pixel(params, row, col):
      return tf.numpy_function(lambda logits, r: self._pixel(logits, int(r), col),
                               [params, row], tf.float32, stateful=True)

    @tf.function(input_signature=[latent_spec])
    def pixel_pass(z):
      """Runs the decoder in raster order; the callback keeps or decodes every pixel."""
      batch = tf.shape(z)[0]
      if factorized:  # The parameters do not depend on x: one pass for all pixels.
        params = model.decoder_params(tf.zeros([batch, height, width, channels]),
                                      z if model.has_latent else None)
        pixels = tf.numpy_function(self._all_pixels, [params], tf.float32, stateful=True)
        return tf.ensure_shape(pixels, [None, height, width, channels])
      context = model.context_network(z) if model.has_latent else None
      return decoder.autoregress(context, model.likelihood, choose_pixel,
                                 [batch, height, width, channels])

    self._pixel_pass = pixel_pass

  def _pixel(self, logits, row, col):
    """The callback at pixel (row, col): logits [B, C] float32 -> pixels [B, C] float32."""
    if self._pixel_mode == 'keep':
      self._logits[:, row, col] = logits
      return self._known[:, row, col]
    probabilities = special.expit(logits.astype(np.float64))
    bits = self._coder.decode(self._bernoulli, probabilities.ravel())
    return bits.reshape(logits.shape).astype(np.float32)

  def _all_pixels(self, logits):
    """The callback of a factorized decoder: logits [B, H, W, C] for the whole image at once."""
    if self._pixel_mode == 'keep':
      self._logits[...] = logits
      return self._known
    probabilities = special.expit(logits.astype(np.float64))
    bits = self._coder.decode(self._bernoulli, _pixel_major(probabilities))
    return _from_pixel_major(bits, logits.shape).astype(np.float32)

  def _run_pixels(self, z, mode, known=None):
    self._pixel_mode, self._known = mode, known
    if known is not None:
      self._logits = np.zeros(known.shape, np.float32)
    try:
      return self._pixel_pass(tf.constant(z, tf.float32)).numpy(), self._logits
    finally:
      self._pixel_mode, self._known, self._logits = None, None, None

  # -- Latent codes --------------------------------------------------------------------------------

  def _prior_code(self, grid, batch):
    zeros = np.zeros((batch, self.latent_size))
    flow = None if self._prior_flow is None else _Flow(*self._prior_flow,
                                                        context=tf.zeros([batch, 0]))
    return _FlowCode(grid, zeros, zeros + 1.0, flow)

  def _posterior_code(self, grid, images):
    loc, scale, context = self._posterior(tf.constant(images, tf.float32))
    flow = None if self._posterior_flow is None else _Flow(*self._posterior_flow, context=context)
    return _FlowCode(grid, loc.numpy().astype(np.float64), scale.numpy().astype(np.float64), flow)

  # -- The chain ---------------------------------------------------------------------------------

  def schedule(self, count: int) -> List[int]:
    return batch_sizes(count, self.first_batch, self.largest_batch, self.growth_percent)

  def initial_words(self) -> np.ndarray:
    """Seeded words under the first pops: about 40 bits per latent dimension of the first batch."""
    count = math.ceil(self.first_batch * self.latent_size * 40 / 32) if self.latent_size else 0
    return np.random.default_rng(20170101).integers(1, 2 ** 32, size=count, dtype=np.uint32)

  def encode(self, images: np.ndarray, progress: Optional[Callable[[int], None]] = None):
    """Compresses binary images [N, H, W, C] ({0, 1}) into uint32 words.

    Returns:
      (words, CodeLengths, initial_bits).
    """
    images = np.asarray(images, np.float32)
    initial = self.initial_words()
    coder = constriction.stream.stack.AnsCoder(initial.copy())
    lengths, done = CodeLengths(), 0
    grid = _Grid(self.precision, lengths)
    for size in self.schedule(len(images)):
      batch = images[done:done + size]
      z = np.zeros((size, 0))
      if self.latent_size:
        z = self._posterior_code(grid, batch).pop(coder)
      _, logits = self._run_pixels(z, 'keep', batch)
      probabilities = special.expit(logits.astype(np.float64))
      symbols = batch.astype(np.int32)
      coder.encode_reverse(_pixel_major(symbols), self._bernoulli, _pixel_major(probabilities))
      lengths.pixels += _bernoulli_information(probabilities, symbols)
      if self.latent_size:
        self._prior_code(grid, size).push(coder, z)
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
    coder = constriction.stream.stack.AnsCoder(np.asarray(words, np.uint32).copy())
    grid = _Grid(self.precision, CodeLengths())
    batches, done = [], 0
    self._coder = coder
    try:
      for size in reversed(self.schedule(count)):
        z = np.zeros((size, 0))
        if self.latent_size:
          z = self._prior_code(grid, size).pop(coder)
        batch, _ = self._run_pixels(z, 'decode')
        if self.latent_size:
          self._posterior_code(grid, batch).push(coder, z)
        batches.append(batch)
        done += size
        if progress:
          progress(done)
    finally:
      self._coder = None
    images = (np.concatenate(batches[::-1]) if batches
              else np.zeros((0, *self.image_shape), np.float32))
    return images.astype(np.float32), coder.get_compressed()


def _pixel_major(values):
  """[B, H, W, C] -> flat, pixel-major (position, then image, then channel): the decoding order."""
  return np.ascontiguousarray(np.moveaxis(values, 0, 2)).ravel()


def _from_pixel_major(flat, shape):
  batch, height, width, channels = shape
  return np.moveaxis(flat.reshape(height, width, batch, channels), 2, 0)


def _bernoulli_information(probabilities, symbols):
  p = np.where(symbols == 1, probabilities, 1 - probabilities)
  return float(-np.log2(np.maximum(p, 2.0 ** -24)).sum())
