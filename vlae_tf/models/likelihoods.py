"""Pixel likelihoods: Bernoulli and the channel-autoregressive discretized logistic mixture.

A likelihood turns the decoder network's per-pixel parameters into a distribution over images
(docs/ARCHITECTURE.md, "Pixel likelihoods"):

```
lik.params_size(channels) -> int             # channels of parameters per pixel
lik(params) -> tfd.Distribution              # batch [B], event [H, W, C]; log_prob(x) in nats
lik.pixel_log_prob(params, x) -> [B,H,W,C]   # log p(x_hwc | window, earlier channels)
lik.noise(shape, seed) -> noise              # shape = [B, H, W, C]; stateless, from a seed [2]
lik.sample_from_noise(params, noise) -> x    # deterministic given noise; the same law as sample()
lik.network_input(x) -> float                # how the PixelCNN sees pixels
```

`noise` + `sample_from_noise` let a sequential (pixel by pixel) sampler draw all the randomness
once, up front, and then reuse it at every step: the pixel at (i, j) is a deterministic function of
its parameters and of its own noise, so recomputing the parameters of already-sampled pixels never
changes them.

Binary images are float32 in {0, 1}; 8-bit images are float32 integers 0..255.
"""

import math
from typing import NamedTuple

import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

# PixelCNN++ constants (openai/pixel-cnn, pixel_cnn_pp/nn.py).
_MIN_LOG_SCALE = -7.  # log-scales are clipped from below at this value
_MIN_BIN_PROB = 1e-5  # below this bin probability the mid-bin density approximation is used
_HALF_BIN = 1. / 255.  # half a bin width, for pixels scaled to [-1, 1]


def _logistic_quantile(uniform):
  """The inverse CDF of the standard logistic, log(u) - log(1 - u), exact in floating point."""
  return tf.math.log(uniform) - tf.math.log1p(-uniform)


# ------------------------------------------------------------------------------------------------
# Bernoulli
# ------------------------------------------------------------------------------------------------


@gin.register(module='vlae_tf.likelihoods')
class Bernoulli:
  """Independent Bernoulli pixels, parameterised by logits (one per channel).

  p(x_hwc = 1) = sigmoid(params_hwc).
  """

  def params_size(self, channels: int) -> int:
    """One logit per channel."""
    return channels

  def __call__(self, params: tf.Tensor) -> tfd.Distribution:
    """The image distribution: batch [B], event [H, W, C]; samples are float32 in {0, 1}."""
    # params: [batch, height, width, channels] logits
    return tfd.Independent(
        tfd.Bernoulli(logits=params, dtype=tf.float32), reinterpreted_batch_ndims=3)

  def pixel_log_prob(self, params: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """log p(x_hwc) in nats, [B, H, W, C]; sums over (H, W, C) to `self(params).log_prob(x)`."""
    return tfd.Bernoulli(logits=params, dtype=tf.float32).log_prob(x)

  def noise(self, shape, seed) -> tf.Tensor:
    """Uniforms in [0, 1) of `shape` = [B, H, W, C], from the stateless `seed` [2]."""
    return tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)

  def sample_from_noise(self, params: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """x = 1[u < sigmoid(params)], as float32 in {0, 1}.

    Computed as logit(u) = log(u) - log(1 - u) < params (the logistic inverse CDF), which is
    exact where sigmoid(params) would round to 0 or 1.

    Args:
      params: [B, H, W, C] logits.
      noise: uniforms in [0, 1) from `noise`, broadcastable against `params`.

    Returns:
      [B, H, W, C] binary pixels.
    """
    return tf.cast(_logistic_quantile(noise) < params, tf.float32)

  def network_input(self, x: tf.Tensor) -> tf.Tensor:
    """{0, 1} -> {-1, 1}."""
    return 2. * x - 1.

  def mean_image(self, params: tf.Tensor) -> tf.Tensor:
    """E[x] = sigmoid(params), [B, H, W, C]."""
    return tf.math.sigmoid(params)

  def get_config(self):
    return {}


# ------------------------------------------------------------------------------------------------
# Discretized logistic mixture
# ------------------------------------------------------------------------------------------------


class MixtureParams(NamedTuple):
  """The unpacked parameters of a discretized logistic mixture, mixture axis last.

  Attributes:
    logits: [..., M] unnormalised log mixture weights.
    means: [..., C, M] unshifted means, pixels scaled to [-1, 1].
    log_scales: [..., C, M] log-scales (scaled units), clipped from below at -7.
    coeffs: [..., C(C-1)/2, M] channel coefficients in (-1, 1) (after tanh); row
      c(c-1)/2 + c' is the coefficient of channel c' < c in the mean of channel c.
  """
  logits: tf.Tensor
  means: tf.Tensor
  log_scales: tf.Tensor
  coeffs: tf.Tensor


def _num_coeffs(channels: int) -> int:
  return channels * (channels - 1) // 2


def _coeff_index(channel: int, earlier: int) -> int:
  """Row of the coefficient of channel `earlier` in the mean of `channel` (earlier < channel)."""
  return channel * (channel - 1) // 2 + earlier


def _split_last(tensor, rows, num_mixtures):
  # [..., rows * M] -> [..., rows, M]
  return tf.reshape(tensor, tf.concat([tf.shape(tensor)[:-1], [rows, num_mixtures]], axis=0))


def unpack_mixture_params(params, channels: int, num_mixtures: int) -> MixtureParams:
  """Splits [..., M (1 + 2C + C(C-1)/2)] parameters into logits, means, log-scales, coeffs.

  The layout of the last axis is [logits (M) | means (C M) | log-scales (C M) | coeffs (P M)]
  with P = C(C-1)/2, each block channel-major (mixture fastest). (PixelCNN++ interleaves the
  blocks per channel for C = 3; the two layouts differ only by a fixed permutation of the last
  layer's output channels.)
  """
  m, c = num_mixtures, channels
  p = _num_coeffs(c)
  logits = params[..., :m]
  means = _split_last(params[..., m:m + c * m], c, m)
  log_scales = _split_last(params[..., m + c * m:m + 2 * c * m], c, m)
  if p:
    coeffs = tf.math.tanh(_split_last(params[..., m + 2 * c * m:], p, m))
  else:
    coeffs = tf.zeros(tf.concat([tf.shape(params)[:-1], [0, m]], axis=0), params.dtype)
  return MixtureParams(logits=logits, means=means,
                       log_scales=tf.maximum(log_scales, _MIN_LOG_SCALE), coeffs=coeffs)


def _shifted_means(mix: MixtureParams, x_scaled):
  """mean_c = means_c + sum_{c' < c} coeff_{c, c'} x_c', for every component. -> [..., C, M].

  Args:
    mix: unpacked parameters.
    x_scaled: [..., C] pixels scaled to [-1, 1] (broadcastable against the parameters).
  """
  channels = mix.means.shape[-2]
  zero = tf.zeros_like(x_scaled[..., :1])  # [..., 1]: broadcasts every channel to x's shape
  shifted = []
  for c in range(channels):
    mean = mix.means[..., c, :] + zero  # [..., M]
    for earlier in range(c):
      mean = mean + mix.coeffs[..., _coeff_index(c, earlier), :] * x_scaled[..., earlier, None]
    shifted.append(mean)
  return tf.stack(shifted, axis=-2)


def component_log_probs(mix: MixtureParams, x):
  """log p_k(x_c | x_<c) of every channel under every component k, [..., C, M], in nats.

  Each channel is a logistic (location mean_c, scale s = exp(log_scale)) on pixels scaled to
  [-1, 1], discretised into 256 bins of width 2/255 centred on x' = x / 127.5 - 1 (pixel units:
  bin k is [k - 1/2, k + 1/2]), the two end bins extended to infinity:

      p(0)   = sigma((x' + 1/255 - mean) / s)
      p(255) = 1 - sigma((x' - 1/255 - mean) / s)
      p(x)   = sigma((x' + 1/255 - mean) / s) - sigma((x' - 1/255 - mean) / s)    otherwise,
             ~ pdf(x') / 127.5 when that difference is below 1e-5 (PixelCNN++'s mid-bin fallback).

  The difference of sigmoids is evaluated as sigma(-min_in) - sigma(-plus_in) when the bin lies
  above the location (the same number, without cancellation of two values near 1).

  Args:
    mix: unpacked parameters.
    x: [..., C] pixels, float integers 0..255.
  """
  x_scaled = x / 127.5 - 1.
  centered = x_scaled[..., None] - _shifted_means(mix, x_scaled)  # [..., C, M]
  inv_scale = tf.math.exp(-mix.log_scales)
  plus_in = inv_scale * (centered + _HALF_BIN)
  min_in = inv_scale * (centered - _HALF_BIN)
  log_cdf_plus = -tf.math.softplus(-plus_in)  # log sigma(plus_in): the bin of 0
  log_one_minus_cdf_min = -tf.math.softplus(min_in)  # log(1 - sigma(min_in)): the bin of 255
  cdf_delta = tf.where(min_in > 0.,
                       tf.math.sigmoid(-min_in) - tf.math.sigmoid(-plus_in),
                       tf.math.sigmoid(plus_in) - tf.math.sigmoid(min_in))
  mid_in = inv_scale * centered
  log_pdf_mid = mid_in - mix.log_scales - 2. * tf.math.softplus(mid_in)
  x = x[..., None]
  return tf.where(
      x < 0.5, log_cdf_plus,
      tf.where(x > 254.5, log_one_minus_cdf_min,
               tf.where(cdf_delta > _MIN_BIN_PROB,
                        tf.math.log(tf.maximum(cdf_delta, 1e-12)),
                        log_pdf_mid - math.log(127.5))))


def _prefix_log_probs(mix: MixtureParams, x):
  """log p(x_<=c) for c = 0..C-1, [..., C]: logsumexp_k [log pi_k + sum_{c'<=c} log p_k(x_c')]."""
  log_weights = tf.math.log_softmax(mix.logits, axis=-1)[..., None, :]  # [..., 1, M]
  log_joint = tf.math.cumsum(component_log_probs(mix, x), axis=-2) + log_weights  # [..., C, M]
  return tf.reduce_logsumexp(log_joint, axis=-1)


def sample_mixture_from_noise(mix: MixtureParams, mixture_uniform, logistic_uniform):
  """PixelCNN++'s sampler, exactly discretised: the same law as `component_log_probs`.

  k = argmax_k(logits_k - log(-log u_k))  (Gumbel-max), then for c = 0..C-1 in order:
      x'_<c = x_<c / 127.5 - 1                          (the sampled, discrete earlier channels)
      y_c = mean_kc + sum_{c'<c} coeff_kcc' x'_c' + s_kc (log v_c - log(1 - v_c))
      x_c = clip(round(127.5 (y_c + 1)), 0, 255)
  round(127.5 (y + 1)) = k exactly when y lies in bin k of the log-probability, and the clip
  collects the two unbounded end bins.

  Args:
    mix: unpacked parameters, leading shape broadcastable against the noise.
    mixture_uniform: [..., M] uniforms in (0, 1).
    logistic_uniform: [..., C] uniforms in (0, 1).

  Returns:
    [..., C] float32 integers 0..255.
  """
  gumbel = -tf.math.log(-tf.math.log(mixture_uniform))
  num_mixtures = mix.logits.shape[-1]
  choice = tf.one_hot(tf.argmax(mix.logits + gumbel, axis=-1), num_mixtures)  # [..., M]

  def select(tensor):  # [..., rows, M] -> [..., rows]
    return tf.reduce_sum(tensor * choice[..., None, :], axis=-1)

  means, log_scales, coeffs = select(mix.means), select(mix.log_scales), select(mix.coeffs)
  channels = mix.means.shape[-2]
  pixels, scaled = [], []
  for c in range(channels):
    loc = means[..., c]
    for earlier in range(c):
      loc = loc + coeffs[..., _coeff_index(c, earlier)] * scaled[earlier]
    continuous = loc + tf.math.exp(log_scales[..., c]) * _logistic_quantile(
        logistic_uniform[..., c])
    pixel = tf.clip_by_value(tf.math.round(127.5 * (continuous + 1.)), 0., 255.)
    pixels.append(pixel)
    scaled.append(pixel / 127.5 - 1.)
  return tf.stack(pixels, axis=-1)


def _mixture_noise(shape, seed, num_mixtures):
  """{'mixture': [..., M], 'logistic': [..., C]} uniforms in (0, 1) for `shape` = [..., C]."""
  shape = tf.convert_to_tensor(shape, tf.int32)
  mixture_seed, logistic_seed = tf.unstack(tf.random.split(seed, num=2))
  tiny = np.finfo(np.float32).tiny  # keeps log(u) finite
  return {
      'mixture': tf.random.stateless_uniform(
          tf.concat([shape[:-1], [num_mixtures]], axis=0), seed=mixture_seed,
          minval=tiny, maxval=1.),
      'logistic': tf.random.stateless_uniform(
          shape, seed=logistic_seed, minval=tiny, maxval=1.),
  }


class DiscretizedLogisticMixturePixel(tfd.Distribution):
  """One C-channel 8-bit pixel: a mixture of channel-autoregressive discretized logistics.

      p(x) = sum_k pi_k prod_c p_k(x_c | x_<c)

  where p_k(x_c | x_<c) is a discretized logistic whose location is shifted linearly by the
  earlier channels of the same pixel (see `component_log_probs`). Batch shape is the parameters'
  leading shape, event shape [C]; values are float32 integers 0..255.
  """

  def __init__(self, params, channels: int, num_mixtures: int, validate_args=False,
               allow_nan_stats=True, name='DiscretizedLogisticMixturePixel'):
    """Builds the distribution.

    Args:
      params: [..., M (1 + 2C + C(C-1)/2)] float parameters (see `unpack_mixture_params`).
      channels: C.
      num_mixtures: M.
      validate_args: Python bool, passed to `tfd.Distribution`.
      allow_nan_stats: Python bool, passed to `tfd.Distribution`.
      name: Python str.
    """
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      self._params = tf.convert_to_tensor(params, dtype_hint=tf.float32, name='params')
      self._channels = channels
      self._num_mixtures = num_mixtures
      super().__init__(dtype=tf.float32, reparameterization_type=tfd.NOT_REPARAMETERIZED,
                       validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                       parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return dict(params=tfp.util.ParameterProperties(event_ndims=1))

  @property
  def params(self):
    return self._params

  @property
  def channels(self):
    return self._channels

  @property
  def num_mixtures(self):
    return self._num_mixtures

  def _event_shape(self):
    return tf.TensorShape([self._channels])

  def _event_shape_tensor(self):
    return tf.constant([self._channels], dtype=tf.int32)

  def _mixture(self):
    return unpack_mixture_params(self._params, self._channels, self._num_mixtures)

  def _log_prob(self, x):
    return _prefix_log_probs(self._mixture(), x)[..., -1]

  def _sample_n(self, n, seed=None):
    seed = tfp.random.sanitize_seed(seed, salt='DiscretizedLogisticMixturePixel')
    shape = tf.concat([[n], self.batch_shape_tensor(), [self._channels]], axis=0)
    noise = _mixture_noise(shape, seed, self._num_mixtures)
    return sample_mixture_from_noise(self._mixture(), noise['mixture'], noise['logistic'])


@gin.register(module='vlae_tf.likelihoods')
class DiscretizedLogisticMixture:
  """PixelCNN++'s discretized logistic mixture for 8-bit images, for any number of channels C.

  Per pixel and mixture component: 1 logit, C means, C log-scales and C(C-1)/2 channel
  coefficients (10 per component for RGB, as PixelCNN++; 3 for grayscale). The mean of channel c
  is shifted by sum_{c' < c} coeff_{c,c'} x_{c'} (x scaled to [-1, 1]), so the decoder's
  parameters at a pixel depend only on its window and the channel dependence happens here.
  """

  def __init__(self, num_mixtures: int = 10):
    """Args: num_mixtures: M, the number of logistic components per pixel."""
    self.num_mixtures = num_mixtures

  def params_size(self, channels: int) -> int:
    """M (1 + 2C + C(C-1)/2)."""
    return self.num_mixtures * (1 + 2 * channels + _num_coeffs(channels))

  def channels_from_params_size(self, size: int) -> int:
    """The C with params_size(C) == size; raises ValueError when there is none."""
    for channels in range(1, size + 1):
      if self.params_size(channels) == size:
        return channels
      if self.params_size(channels) > size:
        break
    raise ValueError(f'{size} parameters per pixel fit no channel count with '
                     f'num_mixtures={self.num_mixtures}.')

  def _unpack(self, params):
    channels = self.channels_from_params_size(params.shape[-1])
    return unpack_mixture_params(params, channels, self.num_mixtures)

  def __call__(self, params: tf.Tensor) -> tfd.Distribution:
    """The image distribution: batch [B], event [H, W, C]; values are float32 0..255."""
    params = tf.convert_to_tensor(params, dtype_hint=tf.float32)  # [B, H, W, params_size(C)]
    pixel = DiscretizedLogisticMixturePixel(
        params, self.channels_from_params_size(params.shape[-1]), self.num_mixtures)
    return tfd.Independent(pixel, reinterpreted_batch_ndims=2)

  def pixel_log_prob(self, params: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """log p(x_c | x_<c, window) in nats, [B, H, W, C], exact for the mixture.

        log p(x_<=c) = logsumexp_k [log pi_k + sum_{c' <= c} log p_k(x_c' | x_<c')]
        pixel_log_prob[..., c] = log p(x_<=c) - log p(x_<c)          (log p(x_<0) = 0)

    Sums over C to the pixel's log-probability, and over (H, W, C) to `self(params).log_prob(x)`.
    """
    params = tf.convert_to_tensor(params, dtype_hint=tf.float32)
    prefix = _prefix_log_probs(self._unpack(params), x)  # [B, H, W, C]
    return prefix - tf.concat([tf.zeros_like(prefix[..., :1]), prefix[..., :-1]], axis=-1)

  def noise(self, shape, seed):
    """Stateless uniforms in (0, 1) for `shape` = [B, H, W, C] from the seed [2].

    Returns:
      {'mixture': [B, H, W, M] (Gumbel-max choice), 'logistic': [B, H, W, C] (one per channel)}.
    """
    return _mixture_noise(shape, seed, self.num_mixtures)

  def sample_from_noise(self, params: tf.Tensor, noise) -> tf.Tensor:
    """Deterministic sample given `noise` (see `sample_mixture_from_noise`), [B, H, W, C]."""
    params = tf.convert_to_tensor(params, dtype_hint=tf.float32)
    return sample_mixture_from_noise(self._unpack(params), noise['mixture'], noise['logistic'])

  def network_input(self, x: tf.Tensor) -> tf.Tensor:
    """0..255 -> [-1, 1]."""
    return x / 127.5 - 1.

  def get_config(self):
    return {'num_mixtures': self.num_mixtures}
