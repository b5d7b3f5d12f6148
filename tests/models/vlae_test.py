"""Tests of the VLAE: ELBO arithmetic, importance weighting, causality, samplers, replicas."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from vlae_tf.models import conv_flows
from vlae_tf.models import flows
from vlae_tf.models import gated_pixelcnn
from vlae_tf.models import likelihoods
from vlae_tf.models import vlae as model_lib
from vlae_tf.models import context_networks
from vlae_tf.models import encoders
from vlae_tf.models import pixelcnn
from vlae_tf.layers import weight_norm

BATCH, HEIGHT, WIDTH, LATENT = 2, 6, 7, 3


def binary_model(prior='af', posterior='diagonal', decoder='depth', latent=True, **decoder_kwargs):
  """A tiny binary VLAE (or one of its baselines) for a 6x7x1 image."""
  decoder_factory = {
      'depth': lambda num_outputs: pixelcnn.DepthLimitedPixelCNN(
          num_outputs, num_masked_layers=2, filters=4, **decoder_kwargs),
      'gated': lambda num_outputs: gated_pixelcnn.GatedPixelCNN(
          num_outputs, window_size=(3, 2), filters=4, num_blocks=1, **decoder_kwargs),
      'factorized': pixelcnn.FactorizedDecoder,
  }[decoder]
  if not latent:
    return model_lib.VLAE(image_shape=(HEIGHT, WIDTH, 1), likelihood=likelihoods.Bernoulli(),
                          decoder=decoder_factory)
  return model_lib.VLAE(
      image_shape=(HEIGHT, WIDTH, 1),
      likelihood=likelihoods.Bernoulli(),
      decoder=decoder_factory,
      encoder=encoders.BinaryResNetEncoder(latent_size=LATENT, filters=(3, 4, 4), hidden_size=8,
                                           context_size=5),
      context_network=context_networks.BinaryResNetDecoder(output_shape=(HEIGHT, WIDTH),
                                                   context_channels=2, filters=(4, 4, 3),
                                                   hidden_size=8),
      prior={'af': lambda: flows.AutoregressiveFlowPrior(LATENT, num_steps=2, hidden_units=(6,)),
             'gaussian': lambda: flows.GaussianPrior(LATENT)}[prior](),
      posterior={'diagonal': flows.DiagonalGaussianPosterior,
                 'iaf': lambda: flows.IAFPosterior(LATENT, context_size=5, num_steps=2,
                                                   hidden_units=(6,))}[posterior](),
      latent_shape=(LATENT,))


def rgb_model(grayscale=False):
  """A tiny 8-bit VLAE with spatial latents, a convolutional AF prior and a mixture likelihood."""
  return model_lib.VLAE(
      image_shape=(8, 6, 3),
      likelihood=likelihoods.DiscretizedLogisticMixture(num_mixtures=2),
      decoder=lambda num_outputs: gated_pixelcnn.GatedPixelCNN(
          num_outputs, window_size=(3, 2), filters=4, num_blocks=1, grayscale=grayscale),
      encoder=encoders.SpatialResNetEncoder(filters=(3, 4, 4), blocks=(1, 1, 1),
                                            latent_channels=2),
      context_network=context_networks.SpatialResNetDecoder(output_shape=(8, 6), context_channels=3,
                                                    filters=(4, 4, 3), blocks=(1, 1, 1)),
      prior=conv_flows.ConvAutoregressiveFlowPrior((2, 2, 2), num_steps=2, hidden_filters=(4,)),
      posterior=flows.DiagonalGaussianPosterior(),
      latent_shape=(2, 2, 2))


def binary_images(seed=0, batch=BATCH):
  return tf.cast(tf.random.stateless_uniform([batch, HEIGHT, WIDTH, 1], [seed, 1]) < 0.4,
                 tf.float32)


def rgb_images(seed=0, batch=BATCH):
  return tf.floor(tf.random.stateless_uniform([batch, 8, 6, 3], [seed, 2], maxval=256.0))


def randomize(model, scale=0.3):
  """Moves every weight away from its initial value, so that zero-initialized flows matter."""
  for index, variable in enumerate(model.trainable_variables):
    variable.assign_add(scale * tf.random.stateless_normal(variable.shape, [index, 9]))


class ElboTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(('af', 'diagonal', 'depth'), ('gaussian', 'iaf', 'gated'),
                            ('af', 'iaf', 'factorized'), ('gaussian', 'diagonal', 'depth'))
  def test_elbo_is_log_prob_arithmetic(self, prior, posterior, decoder):
    model = binary_model(prior, posterior, decoder)
    x = binary_images()
    model.initialize(x)
    randomize(model)
    seed = tf.constant([3, 4])
    terms = model.elbo(x, seed)
    for value in terms.values():
      self.assertEqual(value.shape, [BATCH])
    self.assertAllClose(terms['elbo'], terms['log_px_z'] - terms['kl'])
    # The same z by hand: log p(x|z) + log p(z) - log q(z|x).
    posterior_dist = model.posterior_distribution(x)
    z, log_qz = posterior_dist.experimental_sample_and_log_prob(seed=seed)
    by_hand = (model.likelihood(model.decoder_params(x, z)).log_prob(x)
               + model.prior_distribution().log_prob(z) - log_qz)
    self.assertAllClose(terms['elbo'], by_hand, rtol=1e-5)
    self.assertTrue(np.all(terms['log_px_z'].numpy() < 0))

  def test_pixelcnn_without_latent_has_zero_kl(self):
    model = binary_model(latent=False)
    x = binary_images()
    model.initialize(x)
    terms = model.elbo(x, tf.constant([1, 1]))
    self.assertAllEqual(terms['kl'], tf.zeros([BATCH]))
    self.assertAllClose(model.log_likelihood(x, 8, tf.constant([1, 2])), terms['elbo'])

  def test_initialize_normalizes_and_reaches_every_weight_norm(self):
    model = binary_model()
    model.initialize(binary_images(batch=8))
    self.assertEmpty(weight_norm.uninitialized_weight_norms(model))
    self.assertNotEmpty(weight_norm.weight_norm_layers(model))

  def test_eager_equals_tf_function(self):
    model = binary_model(posterior='iaf')
    x = binary_images()
    model.initialize(x)
    randomize(model)
    seed = tf.constant([5, 6])
    eager = model.elbo(x, seed)
    graph = tf.function(model.elbo)(x, seed)
    for key in eager:
      self.assertAllClose(eager[key], graph[key], rtol=1e-5, atol=1e-5)

  def test_gradients_reach_every_trainable_variable(self):
    model = binary_model(posterior='iaf')
    x = binary_images()
    model.initialize(x)
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(model.elbo(x, tf.constant([1, 2]))['elbo'])
    gradients = tape.gradient(loss, model.trainable_variables)
    missing = [v.name for v, g in zip(model.trainable_variables, gradients) if g is None]
    self.assertEmpty(missing)


class ImportanceWeightedTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters('diagonal', 'iaf')
  def test_one_sample_equals_the_elbo_estimator(self, posterior):
    model = binary_model(posterior=posterior)
    x = binary_images()
    model.initialize(x)
    randomize(model)
    seed = tf.constant([7, 8])
    chunk_seed = tf.random.experimental.stateless_fold_in(seed, 0)
    self.assertAllClose(model.log_likelihood(x, 1, seed), model.elbo(x, chunk_seed)['elbo'],
                        rtol=1e-5)

  def test_chunking_does_not_change_the_estimate(self):
    model = binary_model()
    x = binary_images()
    model.initialize(x)
    randomize(model)
    seed = tf.constant([1, 3])
    # Chunk c draws its samples from fold_in(seed, c), so k=8 in chunks of 4 holds the 4 samples
    # of k=4: the sum of 8 weights is at least the sum of its first 4.
    eight = model.log_likelihood(x, 8, seed, chunk_size=4)
    first = model.log_likelihood(x, 4, seed, chunk_size=4)
    # A k that is not a multiple of the chunk: 6 in chunks of 4 uses 4 + 2 samples.
    six = model.log_likelihood(x, 6, seed, chunk_size=4)
    self.assertAllEqual(tf.math.is_finite(six), [True] * BATCH)
    self.assertTrue(np.all(eight + np.log(8.0) >= first + np.log(4.0) - 1e-4))

  def test_grows_with_k_on_average(self):
    model = binary_model()
    x = binary_images(batch=4)
    model.initialize(x)
    randomize(model, scale=0.5)
    estimates = {k: np.mean([model.log_likelihood(x, k, tf.constant([s, 0]), chunk_size=16)
                             for s in range(6)]) for k in (1, 64)}
    self.assertGreater(estimates[64], estimates[1])


class CausalityTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(False, True)
  def test_pixel_log_prob_respects_raster_and_channel_order(self, grayscale):
    model = rgb_model(grayscale)
    x = rgb_images()
    model.initialize(x)
    randomize(model, scale=0.1)
    z = model.encode(x, tf.constant([1, 1]))[1]
    base = model.pixel_log_prob(x, z).numpy()
    window = model.decoder.window()
    height, width, channels = model.image_shape
    for row, col, channel in [(0, 0, 0), (3, 2, 1), (7, 5, 0), (4, 0, 2)]:
      moved_x = x.numpy()
      moved_x[:, row, col, channel] = (moved_x[:, row, col, channel] + 97.0) % 256.0
      moved = np.abs(model.pixel_log_prob(tf.constant(moved_x), z).numpy() - base) > 1e-5
      expected = np.zeros([BATCH, height, width, channels], bool)
      expected[:, row, col, channel + 1:] = True  # Later channels of the same pixel.
      expected[:, row, col, channel] = True       # Its own log-probability.
      for drow, dcol in window:
        r, c = row - drow, col - dcol
        if 0 <= r < height and 0 <= c < width:
          expected[:, r, c, :] = True
      self.assertAllEqual(moved, expected, msg=f'perturbed {(row, col, channel)}')

  def test_pixel_log_prob_sums_to_the_likelihood(self):
    model = rgb_model()
    x = rgb_images()
    model.initialize(x)
    z = model.encode(x, tf.constant([2, 2]))[1]
    total = model.likelihood(model.decoder_params(x, z)).log_prob(x)
    self.assertAllClose(tf.reduce_sum(model.pixel_log_prob(x, z), [1, 2, 3]), total, rtol=1e-5)


class SamplerTest(tf.test.TestCase, parameterized.TestCase):

  def assert_same_draws(self, model, z, seed, expected, actual, delta=1e-5):
    """Equal images, or equal up to a draw that float rounding decides.

    The samplers compute each pixel's parameters by different arithmetic (one full decoder pass,
    cached rows), so they agree to ~1e-6, not to the bit. A draw whose noise falls that close to a
    boundary (a rounding edge of the logistic, a Gumbel-max tie, a Bernoulli threshold) may then
    go either way, and everything after it in raster order follows. So each image must be equal,
    or its first different pixel must be such a knife edge: moving one of that pixel's parameters
    by `delta` changes the draw. A sampler that used another conditional, context or noise would
    differ first at a pixel whose draw is robust (nearly every draw, at this delta).
    """
    expected, actual = np.asarray(expected), np.asarray(actual)
    params = model.decoder_params(tf.constant(expected), z).numpy()
    noise = model.likelihood.noise(expected.shape, seed)
    for image in range(expected.shape[0]):
      differs = np.any(expected[image] != actual[image], axis=-1).reshape(-1)
      if not differs.any():
        continue
      row, col = divmod(int(np.argmax(differs)), expected.shape[2])
      pixel = params[image, row, col]  # [P]; depends only on pixels both images share
      steps = np.concatenate([np.eye(pixel.size), -np.eye(pixel.size)]) * delta
      moved = (pixel + steps).astype(np.float32)[:, None, None, :]  # [2P, 1, 1, P]
      pixel_noise = tf.nest.map_structure(
          lambda n: tf.repeat(n[image:image + 1, row:row + 1, col:col + 1], len(moved), 0),
          noise)
      draws = model.likelihood.sample_from_noise(moved, pixel_noise).numpy()
      self.assertTrue(
          np.any(draws != expected[image, row, col]),
          f'image {image} differs first at pixel ({row}, {col}): '
          f'{actual[image, row, col]} against {expected[image, row, col]}, and that draw is '
          f'not within {delta} of a boundary, so the samplers draw from different laws.')

  @parameterized.named_parameters(
      ('depth', lambda: binary_model(decoder='depth'), binary_images),
      ('gated', lambda: binary_model(decoder='gated'), binary_images),
      ('rgb', rgb_model, rgb_images),
      ('grayscale', lambda: rgb_model(grayscale=True), rgb_images))
  def test_fast_samplers_equal_the_sequential_sampler(self, make_model, make_images):
    model = make_model()
    model.initialize(make_images())
    randomize(model, scale=0.1)
    z = model.encode(make_images(1), tf.constant([0, 1]))[1]
    seed = tf.constant([4, 2])
    decode = tf.function(model.decode)
    sequential = decode(z, seed, method='sequential')
    fixed_point = decode(z, seed, method='fixed_point')
    fast = decode(z, seed, method='fast')
    self.assert_same_draws(model, z, seed, sequential, fixed_point)
    self.assert_same_draws(model, z, seed, sequential, fast)
    self.assertEqual(fast.shape, [BATCH, *model.image_shape])
    values = np.unique(fast.numpy())
    if model.data_kind == 'binary':
      self.assertContainsSubset(values, [0.0, 1.0])
    else:
      self.assertAllEqual(values, np.round(values))
      self.assertTrue(0 <= values.min() and values.max() <= 255)

  def test_sample_from_prior(self):
    model = binary_model()
    model.initialize(binary_images())
    images = tf.function(model.sample)(
        3, tf.constant([1, 2]))
    self.assertEqual(images.shape, [3, HEIGHT, WIDTH, 1])
    same = tf.function(model.sample)(
        3, tf.constant([1, 2]))
    self.assertAllEqual(images, same)


class ReplicaTest(tf.test.TestCase):

  def test_one_replica_equals_two_replicas(self):
    x = binary_images(batch=4)
    z = tf.random.stateless_normal([4, LATENT], [1, 1])
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    self.assertEqual(strategy.num_replicas_in_sync, 2)
    with strategy.scope():
      model = binary_model()
      model.initialize(x)
    single = model.pixel_log_prob(x, z)
    dataset = tf.data.Dataset.from_tensor_slices((x, z)).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    per_replica = strategy.run(tf.function(model.pixel_log_prob), args=batch)
    self.assertLen(per_replica.values, 2)
    gathered = tf.concat(strategy.experimental_local_results(per_replica), axis=0)
    self.assertAllClose(single, gathered, rtol=1e-5, atol=1e-5)


if __name__ == '__main__':
  tf.test.main()
