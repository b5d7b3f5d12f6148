"""Tests for vlae_tf.likelihoods."""

import math

from absl.testing import parameterized
import gin
import numpy as np
from scipy import special
import tensorflow as tf

from vlae_tf.models import likelihoods

BATCH, HEIGHT, WIDTH = 2, 3, 5
NUM_DRAWS = 20000


@gin.configurable('likelihoods_test.consumer')
def _consumer(likelihood):
  return likelihood


def _pack(logits, means, log_scales, coeffs):
  """Numpy parameters in the documented layout [logits | means | log-scales | coeffs].

  Args:
    logits: [..., M]. means, log_scales: [..., C, M]. coeffs: [..., C(C-1)/2, M] (before tanh).
  """
  lead = logits.shape[:-1]
  blocks = [logits] + [b.reshape(lead + (-1,)) for b in (means, log_scales, coeffs)]
  return np.concatenate(blocks, axis=-1).astype(np.float32)


def _mixture_case(seed, channels, regime):
  """(rng, a 3-component DiscretizedLogisticMixture, random parameters of it) for a test."""
  rng = np.random.default_rng(seed)
  return rng, likelihoods.DiscretizedLogisticMixture(num_mixtures=3), _random_params(
      rng, channels, 3, regime)


def _random_params(rng, channels, num_mixtures, regime, lead=(BATCH, HEIGHT, WIDTH)):
  shape = lead + (channels, num_mixtures)
  num_coeffs = channels * (channels - 1) // 2
  logits = rng.normal(size=lead + (num_mixtures,))
  means = rng.uniform(-1.1, 1.1, size=shape)
  log_scales = rng.uniform(-6., 0., size=shape)
  coeffs = rng.normal(size=lead + (num_coeffs, num_mixtures))
  if regime == 'tiny_scales':
    log_scales = rng.uniform(-12., -6.5, size=shape)  # mostly below the clip at -7
  elif regime == 'large_scales':
    log_scales = rng.uniform(1., 4., size=shape)
  elif regime == 'edge_means':
    means = rng.choice([-2., -1., 1., 2.], size=shape)
    log_scales = rng.uniform(-7., -2., size=shape)
  return _pack(logits, means, log_scales, coeffs)


def _reference_pixel_log_prob(params, x, channels, num_mixtures):
  """float64 numpy/scipy transcription of the formulas: log p(x_c | x_<c), [..., C]."""
  params = params.astype(np.float64)
  x = np.broadcast_to(x.astype(np.float64), np.broadcast_shapes(
      x.shape, params.shape[:-1] + (channels,)))
  c_, m_ = channels, num_mixtures
  lead = params.shape[:-1]
  logits = params[..., :m_]
  means = params[..., m_:m_ + c_ * m_].reshape(lead + (c_, m_))
  log_scales = np.maximum(params[..., m_ + c_ * m_:m_ + 2 * c_ * m_].reshape(lead + (c_, m_)), -7.)
  coeffs = np.tanh(params[..., m_ + 2 * c_ * m_:].reshape(lead + (-1, m_)))
  scaled = x / 127.5 - 1.
  per_channel = []  # log p_k(x_c | x_<c), each [..., M]
  for c in range(c_):
    loc = means[..., c, :] + sum(
        coeffs[..., c * (c - 1) // 2 + e, :] * scaled[..., e, None] for e in range(c))
    scale = np.exp(log_scales[..., c, :])
    centre = scaled[..., c, None]
    upper = (centre + 1. / 255. - loc) / scale
    lower = (centre - 1. / 255. - loc) / scale
    bin_prob = special.expit(upper) - special.expit(lower)
    z = (centre - loc) / scale
    log_density_mid = -np.abs(z) - 2. * np.log1p(np.exp(-np.abs(z))) - np.log(scale)  # logistic
    with np.errstate(divide='ignore'):
      interior = np.where(bin_prob > 1e-5, np.log(bin_prob), log_density_mid - np.log(127.5))
    value = np.where(x[..., c, None] == 0., special.log_expit(upper),
                     np.where(x[..., c, None] == 255., special.log_expit(-lower), interior))
    per_channel.append(value)
  log_joint = np.cumsum(np.stack(per_channel, axis=-2), axis=-2) + special.log_softmax(
      logits, axis=-1)[..., None, :]
  prefix = special.logsumexp(log_joint, axis=-1)  # log p(x_<=c)
  return np.diff(prefix, axis=-1, prepend=0.)


def _total_variation_bound(probs, num):
  """A bound on TV(empirical, probs) from `num` draws that fails with probability < 1e-6.

  E[TV] <= 1/2 sum_v sqrt(p_v (1 - p_v) / n) (Jensen on each |count/n - p_v|), and TV changes
  by at most 1/n when one draw changes, so McDiarmid gives P(TV > E[TV] + t) <= exp(-2 n t^2);
  t = sqrt(log(1e6) / (2 n)).
  """
  expected = 0.5 * np.sum(np.sqrt(probs * (1. - probs) / num))
  return expected + math.sqrt(math.log(1e6) / (2. * num))


class BernoulliTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.lik = likelihoods.Bernoulli()
    rng = np.random.default_rng(0)
    self.params = rng.normal(scale=3., size=(BATCH, HEIGHT, WIDTH, 2)).astype(np.float32)
    self.x = rng.integers(0, 2, size=(BATCH, HEIGHT, WIDTH, 2)).astype(np.float32)

  def test_log_prob_matches_numpy(self):
    self.assertEqual(self.lik.params_size(2), 2)
    dist = self.lik(self.params)
    self.assertEqual(dist.batch_shape, [BATCH])
    self.assertEqual(dist.event_shape, [HEIGHT, WIDTH, 2])
    expected = (self.x * special.log_expit(self.params.astype(np.float64))
                + (1. - self.x) * special.log_expit(-self.params.astype(np.float64)))
    pixel = self.lik.pixel_log_prob(self.params, self.x)
    self.assertEqual(pixel.shape, (BATCH, HEIGHT, WIDTH, 2))
    self.assertAllClose(pixel, expected, rtol=1e-5, atol=1e-6)
    self.assertAllClose(dist.log_prob(self.x), expected.sum(axis=(1, 2, 3)), rtol=1e-5)

  def test_sample_frequencies_match_probabilities(self):
    logits = np.array([[[[-0.85], [3.5]]]], np.float32)  # [1, 1, 2, 1]: p = 0.30, 0.97
    noise = self.lik.noise([NUM_DRAWS, 1, 2, 1], tf.constant([7, 8]))
    ones = tf.reduce_sum(self.lik.sample_from_noise(logits, noise), axis=0)[0, :, 0].numpy()
    prob = special.expit(logits[0, 0, :, 0].astype(np.float64))
    # Pearson statistic, chi^2 with 2 degrees of freedom: P(> 30) = 3e-7.
    chi2 = np.sum((ones - NUM_DRAWS * prob) ** 2 / (NUM_DRAWS * prob * (1. - prob)))
    self.assertLess(chi2, 30.)

  def test_sampling_is_deterministic_given_noise_and_in_support(self):
    seed = tf.constant([1, 2])
    noise = self.lik.noise([BATCH, HEIGHT, WIDTH, 2], seed)
    self.assertAllEqual(noise, self.lik.noise([BATCH, HEIGHT, WIDTH, 2], seed))
    first = self.lik.sample_from_noise(self.params, noise)
    self.assertAllEqual(first, self.lik.sample_from_noise(self.params, noise))
    self.assertEqual(first.shape, (BATCH, HEIGHT, WIDTH, 2))
    sample = self.lik(self.params).sample(seed=seed)
    self.assertEqual(sample.shape, (BATCH, HEIGHT, WIDTH, 2))
    self.assertAllInSet(sample, [0., 1.])

  def test_extreme_logits(self):
    logits = tf.constant([[[[-100.], [100.]]]])
    noise = self.lik.noise([1, 1, 2, 1], tf.constant([3, 4]))
    self.assertAllEqual(self.lik.sample_from_noise(logits, noise)[0, 0, :, 0], [0., 1.])
    with tf.GradientTape() as tape:
      tape.watch(logits)
      log_prob = self.lik(logits).log_prob(tf.constant([[[[1.], [0.]]]]))
    self.assertAllClose(log_prob, [-200.])
    self.assertTrue(np.all(np.isfinite(tape.gradient(log_prob, logits))))

  def test_network_input_and_mean(self):
    self.assertAllEqual(self.lik.network_input(tf.constant([0., 1.])), [-1., 1.])
    self.assertAllClose(self.lik.mean_image(self.params), special.expit(self.params))


class DiscretizedLogisticMixtureTest(tf.test.TestCase, parameterized.TestCase):

  def test_params_size(self):
    lik = likelihoods.DiscretizedLogisticMixture(num_mixtures=4)
    self.assertEqual(lik.params_size(3), 40)  # PixelCNN++: 10 per component
    self.assertEqual(lik.params_size(1), 12)
    for channels in (1, 2, 3, 4):
      self.assertEqual(lik.channels_from_params_size(lik.params_size(channels)), channels)
    with self.assertRaises(ValueError):
      lik.channels_from_params_size(41)

  @parameterized.product(
      channels=(1, 3), regime=('random', 'tiny_scales', 'large_scales', 'edge_means'))
  def test_conditionals_sum_to_one(self, channels, regime):
    """sum_v p(x_c = v | x_<c) = 1 for every channel (C = 1: the full sum over 256 values)."""
    rng, lik, params = _mixture_case(1, channels, regime)
    grid = np.tile(rng.integers(0, 256, size=(1, BATCH, HEIGHT, WIDTH, channels)),
                   (256, 1, 1, 1, 1)).astype(np.float32)  # [256, B, H, W, C]
    for c in range(channels):
      values = grid.copy()
      values[..., c] = np.arange(256).reshape(256, 1, 1, 1)
      probs = tf.exp(lik.pixel_log_prob(params, values))[..., c]
      self.assertAllClose(tf.reduce_sum(probs, axis=0), np.ones((BATCH, HEIGHT, WIDTH)),
                          atol=1e-4)

  @parameterized.product(
      channels=(1, 3), regime=('random', 'tiny_scales', 'large_scales', 'edge_means'))
  def test_log_prob_matches_reference(self, channels, regime):
    rng, lik, params = _mixture_case(2, channels, regime)
    x = rng.integers(0, 256, size=(BATCH, HEIGHT, WIDTH, channels)).astype(np.float32)
    x[0, 0, :2] = 0.
    x[1, 2, :2] = 255.
    pixel = lik.pixel_log_prob(params, x)
    self.assertEqual(pixel.shape, (BATCH, HEIGHT, WIDTH, channels))
    self.assertAllClose(pixel, _reference_pixel_log_prob(params, x, channels, 3),
                        rtol=1e-4, atol=1e-3)
    dist = lik(params)
    self.assertEqual(dist.batch_shape, [BATCH])
    self.assertEqual(dist.event_shape, [HEIGHT, WIDTH, channels])
    self.assertAllClose(dist.distribution.log_prob(x), tf.reduce_sum(pixel, axis=-1),
                        rtol=1e-5, atol=1e-4)
    self.assertAllClose(dist.log_prob(x), tf.reduce_sum(pixel, axis=(1, 2, 3)),
                        rtol=1e-5, atol=1e-3)

  def test_sampler_matches_log_prob_grayscale(self):
    lik = likelihoods.DiscretizedLogisticMixture(num_mixtures=3)
    # Two pixels: [1, 1, 2, 9]. Pixel 0: narrow components, one piling mass at 255; pixel 1:
    # a component centred beyond 0 and a wide one. Scales of 0.5 to 3 bins make a half-bin
    # error in the discretisation cost ~0.1 in total variation, well above the bound (~0.04).
    params = _pack(
        logits=np.array([[[[0., 0.5, -0.5], [1., 0., 0.]]]]),
        means=np.array([[[[[-0.3, 0.1, 0.995]], [[-1.2, 0.4, -0.02]]]]]),
        log_scales=np.log(np.array([[[[[0.5, 3., 2.]], [[2., 20., 1.]]]]]) / 127.5),
        coeffs=np.zeros((1, 1, 2, 0, 3)))
    values = np.arange(256, dtype=np.float32).reshape(256, 1, 1, 1, 1)
    probs = tf.exp(lik.pixel_log_prob(params, values))[:, 0, 0, :, 0].numpy()  # [256, 2]
    from_noise = lik.sample_from_noise(params, lik.noise([NUM_DRAWS, 1, 2, 1],
                                                         tf.constant([5, 6])))
    from_sample = lik(params).sample(NUM_DRAWS, seed=tf.constant([9, 10]))[:, 0]
    for samples in (from_noise, from_sample):
      samples = samples.numpy().astype(np.int64)  # [N, 1, 2, 1]
      for pixel in range(2):
        counts = np.bincount(samples[:, 0, pixel, 0], minlength=256)
        tv = 0.5 * np.abs(counts / NUM_DRAWS - probs[:, pixel]).sum()
        self.assertLess(tv, _total_variation_bound(probs[:, pixel], NUM_DRAWS))

  def test_sampler_matches_log_prob_rgb(self):
    """For each channel: the histogram of x_c among draws with the modal x_<c vs p(x_c | x_<c).

    Narrow channels (0.3 to 0.4 bins) with locations off the bin centres make the modal prefix
    frequent and the continuous sample inside its bin biased; coefficients near +-1 make the
    later channels follow the earlier ones, so a sampler that ignored them, or shifted by the
    undiscretised continuous sample of the earlier channels (as PixelCNN++'s does), fails.
    """
    lik = likelihoods.DiscretizedLogisticMixture(num_mixtures=2)
    scales = np.array([[0.4, 0.4], [0.4, 0.4], [0.3, 0.3]]) / 127.5  # [C, M]
    params = _pack(
        logits=np.array([[[[0.4, 0.], [-0.2, 0.]]]]),
        means=(np.array([[[[[160.35, 60.3], [100.4, 31.3], [10.3, 200.4]],
                           [[3.4, 190.3], [120.3, 120.4], [230.6, 100.3]]]]]) / 127.5 - 1.),
        log_scales=np.log(np.broadcast_to(scales, (1, 1, 2, 3, 2))),
        coeffs=np.array([[[[[3., -3.], [3., 3.], [-3., 3.]],
                           [[-3., 3.], [3., -3.], [3., 3.]]]]]))
    samples = lik.sample_from_noise(params, lik.noise([NUM_DRAWS, 1, 2, 3], tf.constant([1, 1])))
    samples = samples.numpy().astype(np.int64)[:, 0]  # [N, 2, 3]
    for pixel in range(2):
      for c in range(3):
        prefixes, counts = np.unique(samples[:, pixel, :c], axis=0, return_counts=True)
        prefix = prefixes[np.argmax(counts)]
        chosen = samples[np.all(samples[:, pixel, :c] == prefix, axis=-1), pixel, c]
        self.assertGreater(len(chosen), 1000)
        values = np.zeros((256, 1, 1, 2, 3), np.float32)
        values[:, 0, 0, pixel, :c] = prefix
        values[:, 0, 0, pixel, c] = np.arange(256)
        probs = tf.exp(lik.pixel_log_prob(params, values))[:, 0, 0, pixel, c].numpy()
        tv = 0.5 * np.abs(np.bincount(chosen, minlength=256) / len(chosen) - probs).sum()
        self.assertLess(tv, _total_variation_bound(probs, len(chosen)), (pixel, c))

  @parameterized.parameters(1, 3)
  def test_sampling_is_deterministic_given_noise_and_in_support(self, channels):
    lik = likelihoods.DiscretizedLogisticMixture(num_mixtures=3)
    params = _random_params(np.random.default_rng(3), channels, 3, 'random')
    shape = [BATCH, HEIGHT, WIDTH, channels]
    noise = lik.noise(shape, tf.constant([1, 2]))
    self.assertEqual(noise['mixture'].shape, (BATCH, HEIGHT, WIDTH, 3))
    self.assertEqual(noise['logistic'].shape, (BATCH, HEIGHT, WIDTH, channels))
    tf.nest.map_structure(self.assertAllEqual, noise, lik.noise(shape, tf.constant([1, 2])))
    self.assertNotAllEqual(noise['logistic'], lik.noise(shape, tf.constant([1, 3]))['logistic'])
    first = lik.sample_from_noise(params, noise)
    self.assertAllEqual(first, lik.sample_from_noise(params, noise))
    sample = lik(params).sample(seed=tf.constant([4, 5]))
    for x in (first, sample):
      self.assertEqual(x.shape, shape)
      self.assertAllEqual(x, tf.round(x))
      self.assertAllInRange(x, 0., 255.)

  @parameterized.parameters(1, 3)
  def test_eager_equals_function(self, channels):
    lik = likelihoods.DiscretizedLogisticMixture(num_mixtures=3)
    rng = np.random.default_rng(4)
    params = _random_params(rng, channels, 3, 'random')
    x = rng.integers(0, 256, size=(BATCH, HEIGHT, WIDTH, channels)).astype(np.float32)
    compiled = tf.function(lambda p, v: (lik(p).log_prob(v), lik.pixel_log_prob(p, v)))
    eager = (lik(params).log_prob(x), lik.pixel_log_prob(params, x))
    # Grappler may fuse the graph's ops differently; bin probabilities as small as 1e-3 from a
    # difference of float32 sigmoids carry ~1e-4 relative error either way.
    self.assertAllClose(compiled(params, x), eager, rtol=1e-5, atol=1e-4)

  @parameterized.parameters(1, 3)
  def test_gradients_finite_at_edges(self, channels):
    lik = likelihoods.DiscretizedLogisticMixture(num_mixtures=2)
    rng = np.random.default_rng(5)
    shape = (BATCH, HEIGHT, WIDTH, channels, 2)
    params = tf.constant(_pack(
        logits=rng.normal(size=(BATCH, HEIGHT, WIDTH, 2)),
        means=rng.choice([-5., -1., 0., 1., 5.], size=shape),
        log_scales=rng.choice([-30., -7., -3., 5.], size=shape),
        coeffs=rng.normal(scale=5., size=(BATCH, HEIGHT, WIDTH, channels * (channels - 1) // 2,
                                          2))))
    x = rng.choice([0., 1., 127., 254., 255.], size=(BATCH, HEIGHT, WIDTH, channels))
    x = tf.constant(x, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(params)
      log_prob = lik(params).log_prob(x)
      pixel = lik.pixel_log_prob(params, x)
    for value in (log_prob, pixel):
      self.assertTrue(np.all(np.isfinite(value)))
      self.assertTrue(np.all(np.isfinite(tape.gradient(value, params))))

  def test_gin_binding(self):
    try:
      gin.parse_config('''
          likelihoods_test.consumer.likelihood = @vlae_tf.likelihoods.DiscretizedLogisticMixture()
          vlae_tf.likelihoods.DiscretizedLogisticMixture.num_mixtures = 5
      ''')
      self.assertEqual(_consumer().params_size(3), 50)
    finally:
      gin.clear_config()

  def test_network_input(self):
    lik = likelihoods.DiscretizedLogisticMixture()
    self.assertAllClose(lik.network_input(tf.constant([0., 127.5, 255.])), [-1., 0., 1.])
    self.assertEqual(lik.get_config(), {'num_mixtures': 10})


if __name__ == '__main__':
  tf.test.main()
