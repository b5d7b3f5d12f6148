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

Latents are coded on a fine grid by `vlae_tf.latent_codes`: the model's own posterior q(z|x) directly
(diagonal Gaussian) or through its IAF, and the AF prior through its base noise, both flows by
local bits-back coding; see that module for why this costs the -ELBO and not more.

Both sides must compute every probability from identical numbers. The pixels' logits therefore
come from the same traced graph on both sides (the decoder's cached sampler path, `autoregress`,
with the known pixels fed back when encoding), never from the parallel convolution, whose floats
differ from the cached path's in the last bits; batches have the same composition on both sides;
and op determinism is on. Images are coded in batches of growing size (`batch_sizes`), so that the
first pops need few initial bits and later batches decode many images in parallel.
"""

import math
from typing import Callable, List, Optional

import constriction
import numpy as np
from scipy import special
import tensorflow as tf

from vlae_tf import errors
from vlae_tf.compression import latent_codes

_MODEL = constriction.stream.model


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


def initial_words(first_batch: int, latent_size: int) -> np.ndarray:
  """Seeded words under a chain's first pops: about 40 bits per latent dimension of the first
  batch (none without a latent). Every coder's files start from these words."""
  count = math.ceil(first_batch * latent_size * 40 / 32) if latent_size else 0
  return np.random.default_rng(20170101).integers(1, 2 ** 32, size=count, dtype=np.uint32)


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

  @tf.function(input_signature=[spec, context_spec], autograph=False)
  def forward(eps, context):
    return bijector(context).forward(eps)

  @tf.function(input_signature=[spec, context_spec], autograph=False)
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
    raise errors.UnsupportedModelError('bits-back coding supports the Gaussian and AF priors over '
                                       f'a vector z, not {prior}.')
  if posterior == 'DiagonalGaussianPosterior':
    return prior_bijector, None, 0
  if posterior == 'IAFPosterior':
    return prior_bijector, model.posterior.bijector, model.posterior.context_size or 0
  raise errors.UnsupportedModelError('bits-back coding supports diagonal Gaussian and IAF '
                                     f'posteriors, not {posterior}.')


class BitsBackCoder:
  """Encodes binary images to 32-bit words and back, through one VLAE, losslessly.

  `encode(images)` and `decode(words, count)` are exact inverses for a given model (same weights,
  same settings), on one machine; a model that computes different floats (other weights, another
  CPU's kernels) decodes garbage, which the file format (`vlae_tf.codec`) detects.
  """

  def __init__(self, model, precision: int = 14, first_batch: int = 1, largest_batch: int = 500,
               growth_percent: int = 5):
    if model.data_kind != 'binary':
      raise errors.UnsupportedModelError('bits-back coding supports binary images (Bernoulli '
                                         f'pixels); this model is for {model.data_kind} data.')
    if model.has_latent and len(model.latent_shape) != 1:
      raise errors.UnsupportedModelError('bits-back coding supports a vector z; this model has z '
                                         f'of shape {model.latent_shape}.')
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

      @tf.function(input_signature=[image_spec], autograph=False)
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
      raise errors.UnsupportedModelError('bits-back coding needs a decoder with a cached sampler '
                                         '(DepthLimitedPixelCNN) or a factorized one, not '
                                         f'{type(decoder).__name__}.')

    def choose_pixel(params, row, col):
      return tf.numpy_function(lambda logits, r, c: self._pixel(logits, int(r), int(c)),
                               [params, row, col], tf.float32, stateful=True)

    @tf.function(input_signature=[latent_spec], autograph=False)
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
    probabilities = _probabilities(logits)
    bits = self._coder.decode(self._bernoulli, probabilities.ravel())
    return bits.reshape(logits.shape).astype(np.float32)

  def _all_pixels(self, logits):
    """The callback of a factorized decoder: logits [B, H, W, C] for the whole image at once."""
    if self._pixel_mode == 'keep':
      self._logits[...] = logits
      return self._known
    probabilities = _probabilities(logits)
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
    return latent_codes.FlowCode(grid, zeros, zeros + 1.0, flow)

  def _posterior_code(self, grid, images):
    loc, scale, context = self._posterior(tf.constant(images, tf.float32))
    flow = None if self._posterior_flow is None else _Flow(*self._posterior_flow, context=context)
    return latent_codes.FlowCode(grid, loc.numpy().astype(np.float64),
                                 scale.numpy().astype(np.float64), flow, posterior=True)

  # -- The chain ---------------------------------------------------------------------------------

  def schedule(self, count: int) -> List[int]:
    return batch_sizes(count, self.first_batch, self.largest_batch, self.growth_percent)

  def initial_words(self) -> np.ndarray:
    """Seeded words under the first pops (`initial_words`)."""
    return initial_words(self.first_batch, self.latent_size)

  def encode(self, images: np.ndarray, progress: Optional[Callable[[int], None]] = None):
    """Compresses binary images [N, H, W, C] ({0, 1}) into uint32 words.

    Returns:
      (words, CodeLengths, initial_bits).
    """
    images = np.asarray(images, np.float32)
    initial = self.initial_words()
    coder = constriction.stream.stack.AnsCoder(initial.copy())
    lengths, done = latent_codes.CodeLengths(), 0
    grid = latent_codes.Grid(self.precision, lengths)
    for size in self.schedule(len(images)):
      batch = images[done:done + size]
      z = np.zeros((size, 0))
      if self.latent_size:
        z = self._posterior_code(grid, batch).pop(coder)
      _, logits = self._run_pixels(z, 'keep', batch)
      probabilities = _probabilities(logits)
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
    grid = latent_codes.Grid(self.precision)  # No information counts: only encode reports them.
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


def _probabilities(logits):
  """p(pixel = 1) in float64 from float32 logits: one function, so both sides get the same bits."""
  return special.expit(logits.astype(np.float64))


def _pixel_major(values):
  """[B, H, W, C] -> flat, pixel-major (position, then image, then channel): the decoding order."""
  return np.ascontiguousarray(np.moveaxis(values, 0, 2)).ravel()


def _from_pixel_major(flat, shape):
  batch, height, width, channels = shape
  return np.moveaxis(flat.reshape(height, width, batch, channels), 2, 0)


def _bernoulli_information(probabilities, symbols):
  p = np.where(symbols == 1, probabilities, 1 - probabilities)
  return float(-np.log2(np.maximum(p, 2.0 ** -24)).sum())
