"""The Variational Lossy Autoencoder: a VAE with a local-window PixelCNN decoder and an AF prior.

Generative model (Chen et al. 2017, section 3):

    z ~ p(z)                      an autoregressive flow of N(0, I) (AF prior), or N(0, I)
    context = g(z)                an upsampling ResNet/DenseNet: a [H, W, K] context map
    x_ij ~ p(x_ij | x_window(ij), context)     a PixelCNN that sees only a local window

Inference model: q(z|x) = a diagonal Gaussian from a ResNet/DenseNet encoder, optionally followed by
an IAF (the baseline the AF prior replaces).

All quantities are in nats per image:

    elbo(x)   = log p(x|z) - [log q(z|x) - log p(z)],        z ~ q(z|x)  (Monte-Carlo KL)
    log p(x) >= log (1/k) sum_s p(x|z_s) p(z_s) / q(z_s|x),  z_s ~ q(z|x)  (importance weighted)

The baselines of the paper are configurations of this one class: a `FactorizedDecoder` (plain VAE),
`encoder=None` (a PixelCNN without z: the KL is 0), a `GaussianPrior` instead of the AF prior, an
`IAFPosterior` instead of the diagonal Gaussian one.
"""

import math
from typing import Callable, Optional, Sequence

import gin
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

from vlae_tf.models import autoregressive_sampling
from vlae_tf import seeds
from vlae_tf.layers import precision as precision_lib
from vlae_tf.layers import weight_norm

tfd = tfp.distributions


@gin.configurable(module='vlae_tf.vlae')
class VLAE(keras.Model):
  """A VAE whose decoder is a local-window PixelCNN conditioned on a global latent code.

  Attributes:
    image_shape: (height, width, channels).
    num_dims: H * W * C, the data dimensions (for bits/dim and free bits).
    data_kind: 'binary' (Bernoulli likelihood) or '8bit'.
    latent_shape: the shape of one z, () when there is no latent variable.
    precision: 'float32', 'mixed_bfloat16' or 'mixed_float16' (vlae_tf/layers/precision.py).
  """

  def __init__(self,
               image_shape: Sequence[int] = gin.REQUIRED,
               likelihood=gin.REQUIRED,
               decoder: Callable[..., keras.layers.Layer] = gin.REQUIRED,
               encoder: Optional[keras.layers.Layer] = None,
               context_network: Optional[keras.layers.Layer] = None,
               prior: Optional[keras.layers.Layer] = None,
               posterior: Optional[keras.layers.Layer] = None,
               latent_shape: Sequence[int] = (),
               precision: str = precision_lib.FLOAT32,
               name: str = 'vlae'):
    """Builds the model from its parts (gin binds each of them).

    Args:
      image_shape: (height, width, channels) of the data.
      likelihood: a pixel likelihood from `vlae_tf.likelihoods`.
      decoder: a factory `decoder(num_outputs=P)` of a local-window decoder from
        `vlae_tf.pixelcnn` (a gin-configured class).
      encoder: maps network inputs [B, H, W, C] to `encoders.EncoderOutput(loc, scale, context)`;
        None for a PixelCNN without latent variable.
      context_network: maps z to a context map [B, H, W, K]; required with an encoder.
      prior: a layer whose `distribution()` is p(z), from `vlae_tf.flows`.
      posterior: a layer mapping (loc, scale, context) to q(z|x), from `vlae_tf.flows`.
      latent_shape: the shape of one z, e.g. (64,) or (8, 8, 16).
      precision: 'float32', or 'mixed_bfloat16' / 'mixed_float16': the encoder, context network
        and decoder compute in bfloat16 / float16 with float32 variables; densities, flows, KL
        and loss stay float32 (vlae_tf/layers/precision.py).
      name: the Keras name.
    """
    super().__init__(name=name)
    self.image_shape = tuple(int(d) for d in image_shape)
    self.num_dims = int(math.prod(self.image_shape))
    self.likelihood = likelihood
    self.data_kind = 'binary' if type(likelihood).__name__ == 'Bernoulli' else '8bit'
    self.decoder = decoder(num_outputs=likelihood.params_size(self.image_shape[-1]))
    self.encoder = encoder
    self.context_network = context_network
    self.prior = prior
    self.posterior = posterior
    self.latent_shape = tuple(int(d) for d in latent_shape) if encoder is not None else ()
    self.precision = precision_lib.check(precision)
    for network in (self.encoder, self.context_network, self.decoder):
      precision_lib.apply(network, self.precision)
    if encoder is not None and None in (context_network, prior, posterior):
      raise ValueError('A VLAE with an encoder needs a context_network, a prior and a posterior.')
    if encoder is not None and not self.latent_shape:
      raise ValueError('latent_shape is required with an encoder, e.g. (64,) or (8, 8, 16).')

  @property
  def has_latent(self) -> bool:
    return self.encoder is not None

  # -- Building blocks --------------------------------------------------------------------------

  def posterior_distribution(self, x: tf.Tensor, training=None) -> tfd.Distribution:
    """q(z|x) for images x [B, H, W, C]."""
    encoded = self.encoder(self.likelihood.network_input(x), training=training)
    return self.posterior(encoded.loc, encoded.scale, encoded.context)

  def prior_distribution(self) -> tfd.Distribution:
    """p(z)."""
    return self.prior.distribution()

  def decoder_params(self, x: tf.Tensor, z: Optional[tf.Tensor], training=None) -> tf.Tensor:
    """Likelihood parameters of every pixel given its window of x and the latent code z."""
    context = None if z is None else self.context_network(z, training=training)
    params = self.decoder(self.likelihood.network_input(x), context, training=training)
    return tf.cast(params, tf.float32)  # The likelihood is float32 (precision.py).

  # -- Objectives -------------------------------------------------------------------------------

  def elbo(self, x: tf.Tensor, seed, training=None):
    """The evidence lower bound with one posterior sample, in nats per image.

    Args:
      x: [B, H, W, C] images.
      seed: int [2], a stateless seed; or [B, 2], a seed per image (`sample_posterior`).
      training: passed to the layers.

    Returns:
      dict of [B] tensors: elbo = log_px_z - kl; log_px_z = log p(x|z); kl = log q(z|x) - log p(z)
      at the sampled z (a one-sample estimate of KL(q || p)).
    """
    if not self.has_latent:
      log_px = self.likelihood(self.decoder_params(x, None, training)).log_prob(x)
      return dict(elbo=log_px, log_px_z=log_px, kl=tf.zeros_like(log_px))
    posterior = self.posterior_distribution(x, training)
    z, log_qz = sample_posterior(posterior, None, seed)
    log_pz = self.prior_distribution().log_prob(z)
    log_px_z = self.likelihood(self.decoder_params(x, z, training)).log_prob(x)
    kl = log_qz - log_pz
    return dict(elbo=log_px_z - kl, log_px_z=log_px_z, kl=kl)

  def log_likelihood(self, x: tf.Tensor, num_samples: int, seed, chunk_size: int = 64):
    """Importance-weighted estimate of log p(x) with `num_samples` posterior samples.

        log p(x) ~= logsumexp_s [log p(x|z_s) + log p(z_s) - log q(z_s|x)] - log k

    The k samples are drawn `chunk_size` at a time and folded into a running logsumexp, so memory
    is that of a batch of B * chunk_size images whatever k is (k = 4096 fits). With k = 1 this is
    the ELBO estimator; its expectation grows with k towards log p(x) (Burda et al. 2016).

    Args:
      x: [B, H, W, C] images.
      num_samples: k >= 1.
      seed: int [2]; or [B, 2], a seed per image, so that an image's estimate depends on its
        own seed alone, not on its batch (`sample_posterior`).
      chunk_size: samples per decoder pass, clipped to k.

    Returns:
      [B] nats.
    """
    if not self.has_latent:
      return self.elbo(x, seed)['elbo']
    chunk_size = int(chunk_size)
    if isinstance(num_samples, int):
      chunk_size = max(1, min(chunk_size, num_samples))
    num_samples = tf.convert_to_tensor(num_samples, tf.int32)  # k may be a tensor (SavedModel).
    tf.debugging.assert_positive(num_samples, message='num_samples must be >= 1')
    num_chunks = (num_samples + chunk_size - 1) // chunk_size
    encoded = self.encoder(self.likelihood.network_input(x))
    posterior = self.posterior(encoded.loc, encoded.scale, encoded.context)
    prior = self.prior_distribution()
    batch = tf.shape(x)[0]
    tiled_x = tf.tile(x, [chunk_size, 1, 1, 1])  # Matches the [chunk, B] order of flat_z.

    def add_chunk(chunk, total):
      """Chunk c draws min(chunk_size, k - c * chunk_size) samples; extra ones get weight -inf."""
      z, log_qz = sample_posterior(posterior, chunk_size, fold_in(seed, chunk))
      # z: [chunk, B, ...latent] -> [chunk * B, ...latent]
      flat_z = tf.reshape(z, tf.concat([[-1], self.latent_shape], 0))
      log_px_z = self.likelihood(self.decoder_params(tiled_x, flat_z)).log_prob(tiled_x)
      log_weights = tf.reshape(log_px_z, [chunk_size, batch]) + prior.log_prob(z) - log_qz
      used = tf.range(chunk_size) + chunk * chunk_size < num_samples  # [chunk]
      log_weights = tf.where(used[:, None], log_weights, -float('inf'))
      return chunk + 1, tf.reduce_logsumexp(
          tf.stack([total, tf.reduce_logsumexp(log_weights, 0)]), 0)

    # An explicit loop (not autograph's): the callers' tf.functions are traced without autograph.
    _, total = tf.while_loop(lambda chunk, _: chunk < num_chunks, add_chunk,
                             (tf.constant(0), tf.fill([batch], tf.constant(-float('inf')))))
    return total - tf.math.log(tf.cast(num_samples, tf.float32))

  # -- Encoding, decoding, sampling -------------------------------------------------------------

  def encode(self, x: tf.Tensor, seed):
    """(posterior mean of the base Gaussian, a sample z ~ q(z|x)) for images x."""
    encoded = self.encoder(self.likelihood.network_input(x))
    posterior = self.posterior(encoded.loc, encoded.scale, encoded.context)
    return encoded.loc, posterior.sample(seed=seed)

  def pixel_log_prob(self, x: tf.Tensor, z: Optional[tf.Tensor]) -> tf.Tensor:
    """log p(x_hwc | window, earlier channels, z) per pixel and channel, [B, H, W, C]."""
    return self.likelihood.pixel_log_prob(self.decoder_params(x, z), x)

  def decode(self, z: Optional[tf.Tensor], seed, method: str = 'fast',
             num_images: Optional[int] = None) -> tf.Tensor:
    """Images sampled from p(x|z) (lossy reconstructions when z comes from `encode`).

    Args:
      z: [B, ...latent] codes, or None for a model without latent variable.
      seed: int [2].
      method: 'fast' (the decoder's cached sampler when it has one, else 'fixed_point'),
        'fixed_point' (see `autoregressive_sampling.sample_fixed_point`) or 'sequential' (one
        decoder pass per pixel, the naive sampler). All return the same images for the same seed.
      num_images: the batch size when z is None.

    Returns:
      [B, H, W, C] images.
    """
    if z is not None:
      num_images = z.shape[0] if z.shape[0] is not None else tf.shape(z)[0]
    context = None if z is None else self.context_network(z)
    shape = [num_images, *self.image_shape]
    noise = self.likelihood.noise(shape, seed)
    params_fn = lambda images: tf.cast(
        self.decoder(self.likelihood.network_input(images), context), tf.float32)
    if method == 'sequential':
      return autoregressive_sampling.sample_sequential(params_fn, self.likelihood, noise, shape)
    if method == 'fast':
      if hasattr(self.decoder, 'sample'):
        return self.decoder.sample(context, self.likelihood, noise, shape)
      method = 'fixed_point'
    if method == 'fixed_point':
      return autoregressive_sampling.sample_fixed_point(params_fn, self.likelihood, noise, shape)[0]
    raise ValueError(f"method must be 'fast', 'fixed_point' or 'sequential', got {method!r}.")

  def sample(self, num_images: int, seed, method: str = 'fast',
             decode: Optional[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = None) -> tf.Tensor:
    """Images from the model: z ~ p(z), x ~ p(x|z). [num_images, H, W, C].

    Args:
      num_images: how many (a Python int, or a scalar int32 tensor with a latent variable).
      seed: int [2].
      method: the sampler, as in `decode`.
      decode: `(z, seed) -> images` in place of `self.decode(z, seed, method)`: a caller's traced
        `decode` (the image grids, the export), so that sampling and decoding share one trace of
        the autoregressive sampler. The same images for the same seed either way. Unused
        without a latent variable.
    """
    if not self.has_latent:
      _, decode_seed = seeds.split_seed(seed, 2)
      return self.decode(None, decode_seed, method=method, num_images=num_images)
    z, decode_seed = self.sample_prior(num_images, seed)
    if decode is None:
      return self.decode(z, decode_seed, method=method)
    return decode(z, decode_seed)

  def sample_prior(self, num_images: int, seed):
    """The first half of `sample`: (z ~ p(z) [num_images, ...latent], the int32 [2] seed with
    which `sample` decodes it). `decode(z, that seed)` gives `sample(num_images, seed)`."""
    prior_seed, decode_seed = seeds.split_seed(seed, 2)
    return self.prior_distribution().sample(num_images, seed=prior_seed), decode_seed

  # -- Set-up -----------------------------------------------------------------------------------

  def initialize(self, x: tf.Tensor, seed=(0, 0)):
    """Builds every layer and runs the data-dependent init of weight norm on the batch x.

    Call once, eagerly, under `strategy.scope()`, before step 0 (not after restoring a
    checkpoint): every weight-normalized layer sets its scale and bias so that its outputs on x
    have zero mean and unit variance per channel (Salimans and Kingma 2016).

    Args:
      x: [B, H, W, C] a real batch.
      seed: int [2].

    Returns:
      The ELBO terms on x.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    seed = tf.constant(seed, tf.int32)
    terms = weight_norm.initialize(lambda: self.elbo(x, seed))
    # Layers that this configuration never calls (e.g. a decoder's context layer in a model
    # without z) stay unbuilt: they hold no variables and are not part of the model.
    pending = [layer for layer in weight_norm.uninitialized_weight_norms(self) if layer.built]
    if pending:
      raise RuntimeError(f'{len(pending)} weight-normalized layers were not reached by the '
                         f'initializing pass: {[layer.name for layer in pending]}')
    return terms

  def call(self, inputs, training=None):
    """The ELBO terms with a seed derived from the images (Keras entry point)."""
    seed = tf.stack([tf.cast(tf.reduce_sum(inputs), tf.int32), 0])
    return self.elbo(inputs, seed, training=training)


def fold_in(seed, salt):
  """`seed` [2] or per-image seeds [B, 2] with `salt` folded into each."""
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank == 1:
    return tf.random.experimental.stateless_fold_in(seed, salt)
  return seeds.fold_in_each(seed, salt)


def sample_posterior(posterior, num_samples, seed):
  """(z, log q(z|x)) drawn from q(z|x), [num_samples, B, ...] ([B, ...] for num_samples None).

  With one seed [2], as `posterior.experimental_sample_and_log_prob`. With a seed per image [B, 2]
  (evaluation), image b's draws are a function of seed b alone, whatever batch it is in and
  wherever: its base noise is drawn on its own, then moved through the posterior's location,
  scale and flow, z = f(loc + scale * eps), log q = log N(loc + scale * eps) - log|det df|.
  Every posterior of vlae_tf is a Gaussian or a flow of one (flows.py; TFP builds a
  MultivariateNormalDiag as a flow of standard normals too).
  """
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank == 1:
    sample_shape = () if num_samples is None else num_samples
    return posterior.experimental_sample_and_log_prob(sample_shape, seed=seed)
  base, bijectors = posterior, []  # the innermost distribution, the bijectors from the inside
  # TFP gives a flow of non-composite bijectors (the IAF) a private class that does not derive
  # from tfd.TransformedDistribution: both have `distribution` and `bijector`.
  while hasattr(base, 'bijector') and hasattr(base, 'distribution'):
    base, bijectors = base.distribution, [base.bijector] + bijectors
  event_shape = base.event_shape.as_list()
  count = 1 if num_samples is None else num_samples
  noise = tf.map_fn(  # [B, count, ...event]
      lambda image_seed: tf.random.stateless_normal([count] + event_shape, image_seed,
                                                    dtype=base.dtype),
      seed, fn_output_signature=base.dtype)
  noise = tf.transpose(noise, [1, 0] + list(range(2, 2 + len(event_shape))))
  u = base.mean() + base.stddev() * noise
  z, log_q = u, base.log_prob(u)
  for bijector in bijectors:
    log_q -= bijector.forward_log_det_jacobian(z, event_ndims=len(event_shape))
    z = bijector.forward(z)
  return (z[0], log_q[0]) if num_samples is None else (z, log_q)


@gin.configurable
def make_model(model_cls=VLAE):
  """Constructs the model from gin (`model_cls()`, every argument bound in gin)."""
  return model_cls()


def create_variables(model):
  """Creates every variable of `model` without data-dependent initialization.

  Used before restoring a checkpoint (whose values overwrite these) and to give the averaged model
  its variables: one ELBO of a single all-zero image, which is a valid binary and 8-bit image.
  """
  images = tf.zeros([1, *model.image_shape], tf.float32)
  model.elbo(images, tf.zeros([2], tf.int32), training=False)
