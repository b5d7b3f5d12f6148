"""The portable bits-back coder for 8-bit images: `portable`'s chain with the 8-bit family's
fixed-point networks (gin/models/cifar10_vlae_resnet.gin, and the model bin/train chooses for
one's own 8-bit images), the same bits on every machine.

Per batch, as `portable.PortableBitsBackCoder`:

    encode x:  pop  z ~ q(z | x)            on the grid k * 2^-12 (`portable.GaussianGridCode`)
               push x under p(x | z)        pixel by pixel in raster order, channels in order,
                                            each under `mixture_masses` (256 integer masses)
               z -> eps through the prior   `integer_conv_flow`: each scale a bijection by
                                            bits-back of a uniform remainder (net log2 s)
               push eps under N(0, I)       on the grid
    decode:    pop eps, eps -> z, pop x pixel by pixel (`integer_gated_pixelcnn.decode_pixels`),
               push z under q(z | x).

Net cost per image: -log2 p(x | z) - log2 P(z) + log2 Q(z | x), the -ELBO of the fixed-point
model on the latent grid.
"""

from typing import Callable, List, Optional

import constriction
import numpy as np
import threadpoolctl

from vlae_tf import errors
from vlae_tf.compression import bitsback
from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import integer_conv_flow
from vlae_tf.compression import integer_gated_pixelcnn
from vlae_tf.compression import integer_networks
from vlae_tf.compression import integer_spatial
from vlae_tf.compression import latent_codes
from vlae_tf.compression import mixture_masses
from vlae_tf.compression import portable

_MODEL = constriction.stream.model
_ARCHITECTURE = dict(encoder='SpatialResNetEncoder', posterior='DiagonalGaussianPosterior',
                     prior='ConvAutoregressiveFlowPrior', context='SpatialResNetDecoder',
                     decoder='GatedPixelCNN', likelihood='DiscretizedLogisticMixture')


def supports(model) -> bool:
  """Whether `model` is of the 8-bit family these networks implement (module docstring)."""
  names = dict(encoder=type(model.encoder).__name__, posterior=type(model.posterior).__name__,
               prior=type(model.prior).__name__,
               context=type(model.context_network).__name__,
               decoder=type(model.decoder).__name__, likelihood=type(model.likelihood).__name__)
  return names == _ARCHITECTURE and not model.prior.shift_only


class PortableMixtureCoder:
  """Encodes 8-bit images to 32-bit words and back; the interface of `bitsback.BitsBackCoder`."""

  portable = True
  eight_bit = True

  def __init__(self, model, first_batch: int = 1, largest_batch: int = 500,
               growth_percent: int = 5):
    if not supports(model):
      raise errors.UnsupportedModelError(
          'the 8-bit portable codec implements gin/models/cifar10_vlae_resnet.gin (spatial ResNet '
          'encoder and context network, gated PixelCNN, affine conv AF prior, logistic mixture).')
    self.image_shape = tuple(model.image_shape)
    self.latent_shape = tuple(model.latent_shape)
    self.latent_size = int(np.prod(self.latent_shape))
    self.num_mixtures = model.likelihood.num_mixtures
    self.encoder = integer_spatial.SpatialEncoder(model.encoder)
    self.context_network = integer_spatial.SpatialContextNetwork(model.context_network)
    self.pixelcnn = integer_gated_pixelcnn.GatedPixelCNN(model.decoder, self.image_shape)
    self.flow = integer_conv_flow.ConvFlowPrior(model.prior)
    self.precision = integer_networks.GRID_BITS
    self.first_batch, self.largest_batch = int(first_batch), int(largest_batch)
    self.growth_percent = int(growth_percent)
    self._pixels = _MODEL.Categorical(perfect=False)

  def schedule(self, count: int) -> List[int]:
    return bitsback.batch_sizes(count, self.first_batch, self.largest_batch, self.growth_percent)

  def initial_words(self) -> np.ndarray:
    """Seeded words under the first pops (`bitsback.initial_words`)."""
    return bitsback.initial_words(self.first_batch, self.latent_size)

  def _base(self, size):
    shape = (size, *self.latent_shape)
    return np.zeros(shape, np.int64), np.full(shape, 1 << fxp.LATENT_BITS, np.int64)

  def posterior(self, images):
    return integer_networks.in_chunks(
        self.encoder, integer_gated_pixelcnn.network_input(images))

  def params(self, images, z):
    """Every pixel's mixture parameters [B, H, W, P] at 2^-24 given grid latents z."""
    return integer_networks.in_chunks(
        lambda x, latent: self.pixelcnn.params(x, self.context_network(latent)), images, z)

  def encode(self, images: np.ndarray, progress: Optional[Callable[[int], None]] = None):
    """Compresses 8-bit images [N, H, W, C] (0..255) into uint32 words.

    Returns:
      (words, CodeLengths, initial_bits).
    """
    with threadpoolctl.threadpool_limits(1, user_api='blas'):
      return self._encode(np.asarray(images, np.int64), progress)

  def _push_pixels(self, coder, batch, params):
    """Pushes the pixels row by row, last row first, each in the decoding order (column,
    channel, image); returns their information in bits."""
    bits = 0.0
    for row in reversed(range(batch.shape[1])):
      masses = mixture_masses.pixel_masses(params[:, row], batch[:, row], self.num_mixtures,
                                           integer_gated_pixelcnn.PARAMS_BITS)  # [B, W, C, 256]
      masses = np.moveaxis(masses, 0, 2)  # [W, C, B, 256]
      symbols = np.moveaxis(batch[:, row], 0, 2)  # [W, C, B]
      coder.encode_reverse(symbols.ravel().astype(np.int32), self._pixels,
                           np.ascontiguousarray(masses).reshape(-1, 256))
      chosen = np.take_along_axis(masses, symbols[..., None], axis=-1)
      bits += float(mixture_masses.MASS_BITS * chosen.size - np.log2(chosen).sum())
    return bits

  def _encode(self, images, progress):
    initial = self.initial_words()
    coder = constriction.stream.stack.AnsCoder(initial.copy())
    lengths = latent_codes.CodeLengths()
    code = portable.GaussianGridCode(lengths)
    done = 0
    for size in self.schedule(len(images)):
      batch = images[done:done + size]
      loc, scale = self.posterior(batch)
      z = code.pop(coder, loc, scale)
      lengths.pixels += self._push_pixels(coder, batch, self.params(batch, z))
      eps, pushed, popped = self.flow.encode(coder, z)
      lengths.latent_pushed += pushed
      lengths.latent_popped += popped
      code.push(coder, eps, *self._base(size), spread=portable.BASE_SPREAD)
      done += size
      if progress:
        progress(done)
    return coder.get_compressed(), lengths, 32 * len(initial)

  def decode(self, words: np.ndarray, count: int,
             progress: Optional[Callable[[int], None]] = None):
    """Decompresses `count` images from the words of `encode`.

    Returns:
      (images [count, H, W, C] float32 0..255, leftover words): the leftover words are
      `initial_words()` when the stream and the model are the ones that encoded it.
    """
    with threadpoolctl.threadpool_limits(1, user_api='blas'):
      return self._decode(words, count, progress)

  def _choose_pixel(self, coder):
    def choose_pixel(params, row, col):
      del row, col
      mix = mixture_masses.unpack(params, self.image_shape[-1], self.num_mixtures,
                                  integer_gated_pixelcnn.PARAMS_BITS)
      weights = mixture_masses.initial_weights(mix)
      pixel = np.zeros((len(params), self.image_shape[-1]), np.int64)
      for c in range(self.image_shape[-1]):
        masses = mixture_masses.component_masses(mix, c, pixel)
        pixel[:, c] = coder.decode(self._pixels, mixture_masses.channel_masses(weights, masses))
        weights = mixture_masses.updated_weights(weights, masses, pixel[:, c])
      return pixel
    return choose_pixel

  def _decode(self, words, count, progress):
    coder = constriction.stream.stack.AnsCoder(np.asarray(words, np.uint32).copy())
    code = portable.GaussianGridCode()
    batches, done = [], 0
    for size in reversed(self.schedule(count)):
      eps = code.pop(coder, *self._base(size), spread=portable.BASE_SPREAD)
      z = self.flow.decode(coder, eps)
      batch = self.pixelcnn.decode_pixels(self.context_network(z), self._choose_pixel(coder))
      loc, scale = self.posterior(batch)
      code.push(coder, z, loc, scale)
      batches.append(batch)
      done += size
      if progress:
        progress(done)
    images = (np.concatenate(batches[::-1]) if batches
              else np.zeros((0, *self.image_shape)))
    return images.astype(np.float32), coder.get_compressed()
