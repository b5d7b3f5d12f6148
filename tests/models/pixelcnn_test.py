"""Tests of the local-window decoders: exact windows, causality, grayscale window, samplers."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tf_keras as keras

from vlae_tf.models import gated_pixelcnn
from vlae_tf.models import likelihoods
from vlae_tf.models import autoregressive_sampling
from vlae_tf.models import pixelcnn

HEIGHT, WIDTH = 11, 13  # Different sizes on every axis, larger than every window tested.


def make_decoder(kind, channels=3, **kwargs):
  if kind == 'depth':
    return pixelcnn.DepthLimitedPixelCNN(num_outputs=2, filters=5, use_weight_norm=False, **kwargs)
  return gated_pixelcnn.GatedPixelCNN(num_outputs=2, filters=6, num_blocks=2, use_weight_norm=False,
                                **kwargs)


def measured_window(decoder, channels=3, row=8, col=6, with_context=True):
  """Offsets of the pixels whose value reaches the output at (row, col), found by autodiff."""
  inputs = tf.random.stateless_normal([2, HEIGHT, WIDTH, channels], seed=[1, 2])
  context = tf.random.stateless_normal([2, HEIGHT, WIDTH, 4], seed=[5, 6]) if with_context else None
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    params = decoder(inputs, context)
    target = tf.reduce_sum(params[:, row, col, :] * [0.7, -1.3])
  gradient = tape.gradient(target, inputs).numpy()
  rows, cols = np.nonzero(np.abs(gradient).sum(axis=(0, 3)))
  return frozenset((int(r) - row, int(c) - col) for r, c in zip(rows, cols))


class WindowTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((4, 2), (5, 3), (7, 4), (1, 1), (2, 1), (3, 5), (6, 2))
  def test_gated_window_is_exactly_a_by_b(self, width, height):
    decoder = make_decoder('gated', window_size=(width, height))
    expected = gated_pixelcnn.paper_window(width, height)
    self.assertEqual(decoder.window(), expected)
    self.assertEqual(measured_window(decoder), expected)

  @parameterized.parameters(((4, 2), 1, 2), ((5, 3), 2, 2), ((7, 4), 3, 3))
  def test_paper_layer_counts(self, window_size, num_vertical, num_horizontal):
    decoder = make_decoder('gated', window_size=window_size)
    self.assertLen(decoder.vertical_convs, num_vertical)
    self.assertLen(decoder.horizontal_convs, num_horizontal)

  def test_paper_window_4x2_by_hand(self):
    # Rows -2..-1 over columns -2..1, plus two pixels on the left.
    expected = {(r, c) for r in (-2, -1) for c in (-2, -1, 0, 1)} | {(0, -1), (0, -2)}
    self.assertEqual(gated_pixelcnn.paper_window(4, 2), expected)

  @parameterized.parameters(1, 2, 6)
  def test_depth_limited_window_measured_equals_computed(self, num_masked_layers):
    decoder = make_decoder('depth', num_masked_layers=num_masked_layers)
    self.assertEqual(measured_window(decoder, channels=1), decoder.window())

  def test_depth_limited_window_has_blind_spot_and_depth(self):
    window = make_decoder('depth', num_masked_layers=6).window()
    self.assertIn((-6, 0), window)
    self.assertIn((0, -6), window)
    self.assertNotIn((-7, 0), window)
    self.assertNotIn((-1, 2), window)  # PixelCNN's blind spot.
    self.assertTrue(all(offset < (0, 0) for offset in window))

  def test_untied_weights_see_the_same_window(self):
    tied = make_decoder('depth', num_masked_layers=3)
    untied = make_decoder('depth', num_masked_layers=3, tie_weights=False)
    self.assertEqual(measured_window(untied, channels=1), tied.window())
    tied(tf.zeros([1, HEIGHT, WIDTH, 1]))
    untied(tf.zeros([1, HEIGHT, WIDTH, 1]))
    self.assertLess(len(tied.trainable_variables), len(untied.trainable_variables))


class CausalityTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('depth', 'depth', {}), ('gated_4x2', 'gated', dict(window_size=(4, 2))),
      ('gated_7x4_gray', 'gated', dict(window_size=(7, 4), grayscale=True)))
  def test_perturbing_a_pixel_moves_exactly_the_pixels_whose_window_holds_it(self, kind, kwargs):
    decoder = make_decoder(kind, **kwargs)
    inputs = tf.random.stateless_normal([2, HEIGHT, WIDTH, 3], seed=[7, 8])
    context = tf.random.stateless_normal([2, HEIGHT, WIDTH, 4], seed=[9, 10])
    base = decoder(inputs, context).numpy()
    window = decoder.window()
    for row, col in [(0, 0), (4, 6), (HEIGHT - 1, WIDTH - 1), (3, 0), (5, WIDTH - 1)]:
      delta = np.zeros(inputs.shape, np.float32)
      delta[:, row, col, :] = 1.5
      moved = np.abs(decoder(inputs + delta, context).numpy() - base).max(axis=(0, 3)) > 1e-6
      expected = np.zeros([HEIGHT, WIDTH], bool)
      for drow, dcol in window:
        r, c = row - drow, col - dcol
        if 0 <= r < HEIGHT and 0 <= c < WIDTH:
          expected[r, c] = True
      self.assertAllEqual(moved, expected, msg=f'perturbed pixel {(row, col)}')

  def test_grayscale_window_sees_only_luma(self):
    decoder = make_decoder('gated', window_size=(5, 3), grayscale=True)
    inputs = tf.random.stateless_normal([2, HEIGHT, WIDTH, 3], seed=[1, 1])
    # A change of colour at constant luma: +0.587 R - 0.299 G leaves 0.299 R + 0.587 G unchanged.
    delta = np.zeros(inputs.shape, np.float32)
    delta[:, :, :, 0] = 0.587
    delta[:, :, :, 1] = -0.299
    self.assertAllClose(decoder(inputs), decoder(inputs + delta), atol=1e-5)
    colour = make_decoder('gated', window_size=(5, 3))
    self.assertNotAllClose(colour(inputs), colour(inputs + delta), atol=1e-3)


class LayerTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters('depth', 'gated')
  def test_eager_equals_tf_function(self, kind):
    decoder = make_decoder(kind)
    inputs = tf.random.stateless_normal([2, HEIGHT, WIDTH, 3], seed=[3, 3])
    context = tf.random.stateless_normal([2, HEIGHT, WIDTH, 4], seed=[4, 4])
    self.assertAllClose(decoder(inputs, context), tf.function(decoder)(inputs, context),
                        atol=1e-5)

  def test_gated_vector_conditioning_changes_the_output(self):
    decoder = make_decoder('gated', window_size=(3, 2))
    inputs = tf.zeros([2, HEIGHT, WIDTH, 3])
    first = decoder(inputs, vector=tf.ones([2, 5]))
    second = decoder(inputs, vector=-tf.ones([2, 5]))
    self.assertNotAllClose(first, second)

  @parameterized.parameters('depth', 'gated')
  def test_weight_norm_data_init_normalizes_outputs(self, kind):
    if kind == 'depth':
      decoder = pixelcnn.DepthLimitedPixelCNN(num_outputs=3, filters=5)
    else:
      decoder = gated_pixelcnn.GatedPixelCNN(num_outputs=3, filters=6, num_blocks=2,
                                       window_size=(3, 2))
    inputs = tf.random.stateless_normal([16, HEIGHT, WIDTH, 3], seed=[5, 5]) * 4.0 + 2.0
    params = decoder(inputs)  # The first call initializes from this batch.
    mean, variance = tf.nn.moments(params, axes=[0, 1, 2])
    self.assertAllClose(mean, tf.zeros(3), atol=1e-3)
    self.assertAllClose(variance, tf.ones(3), atol=1e-2)
    # Later calls do not re-initialize.
    weights = [w.numpy() for w in decoder.weights]
    decoder(inputs * 3.0)
    for before, after in zip(weights, decoder.weights):
      self.assertAllEqual(before, after)

  @parameterized.parameters('depth', 'gated')
  def test_config_round_trip(self, kind):
    decoder = make_decoder(kind)
    clone = type(decoder).from_config(decoder.get_config())
    self.assertEqual(clone.get_config(), decoder.get_config())
    self.assertEqual(clone.window(), decoder.window())


SAMPLE_BATCH, SAMPLE_HEIGHT, SAMPLE_WIDTH = 2, 6, 7


def gated_sampler_case(window_size, kind, grayscale=False, with_context=True, with_vector=False,
                       use_weight_norm=False, num_blocks=2):
  """A gated decoder with weights of some scale, and what its samplers need."""
  # The initializers draw from the global seed: without this, the weights (and whether a 1x1
  # window changes any binary draw) depended on which tests ran before in the same process.
  keras.utils.set_random_seed(0)
  if kind == 'bernoulli':
    likelihood, channels = likelihoods.Bernoulli(), 1
  else:
    likelihood, channels = likelihoods.DiscretizedLogisticMixture(num_mixtures=2), 3
  shape = [SAMPLE_BATCH, SAMPLE_HEIGHT, SAMPLE_WIDTH, channels]
  decoder = gated_pixelcnn.GatedPixelCNN(
      num_outputs=likelihood.params_size(channels), window_size=window_size, filters=4,
      num_blocks=num_blocks, grayscale=grayscale, use_weight_norm=use_weight_norm)
  context = (tf.random.stateless_normal(shape[:3] + [3], seed=[1, 2]) if with_context
             else None)
  vector = tf.random.stateless_normal([SAMPLE_BATCH, 5], seed=[1, 3]) if with_vector else None
  # Builds the decoder; with weight norm, its data-dependent init runs on these images.
  levels = 2 if kind == 'bernoulli' else 256
  data = tf.floor(tf.random.stateless_uniform(shape, seed=[2, 2]) * levels)
  decoder(likelihood.network_input(data), context, vector)
  # Larger, perturbed weights: every pixel depends strongly on its window and on z.
  for index, variable in enumerate(decoder.trainable_variables):
    variable.assign(2. * variable + 0.3 * tf.random.stateless_normal(variable.shape,
                                                                    seed=[3, index]))
  noise = likelihood.noise(shape, tf.constant([7, 8]))
  params_fn = lambda images: decoder(likelihood.network_input(images), context, vector)
  return decoder, likelihood, context, vector, noise, shape, params_fn


class GatedSamplerTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('4x2_bernoulli', (4, 2), 'bernoulli', {}),
      ('5x3_mixture_grayscale_vector', (5, 3), 'mixture',
       dict(grayscale=True, with_vector=True, num_blocks=1)),
      ('7x4_mixture', (7, 4), 'mixture', {}),
      ('1x1_bernoulli_no_context_vector', (1, 1), 'bernoulli',
       dict(with_context=False, with_vector=True)),
      ('2x1_mixture_grayscale_no_context', (2, 1), 'mixture',
       dict(grayscale=True, with_context=False, num_blocks=1)),
      ('4x2_mixture_weight_norm_vector', (4, 2), 'mixture',
       dict(use_weight_norm=True, with_vector=True, num_blocks=1)))
  def test_cached_sampler_equals_sequential(self, window_size, kind, kwargs):
    decoder, likelihood, context, vector, noise, shape, params_fn = gated_sampler_case(
        window_size, kind, **kwargs)
    sequential = tf.function(
        lambda: autoregressive_sampling.sample_sequential(params_fn, likelihood, noise, shape))()
    cached = tf.function(lambda: decoder.sample(context, likelihood, noise, shape, vector))()
    self.assertEqual(cached.shape, shape)
    self.assertAllEqual(cached, sequential)
    # Sharp: the images are not constant, and their pixels depend on their windows (the same
    # noise with the window zeroed draws other images).
    self.assertGreater(len(np.unique(cached.numpy())), 1)
    without_window = likelihood.sample_from_noise(params_fn(tf.zeros(shape)), noise)
    self.assertNotAllEqual(cached, without_window)

  def test_cached_sampler_needs_a_built_decoder(self):
    decoder = gated_pixelcnn.GatedPixelCNN(num_outputs=1, filters=4, num_blocks=1)
    likelihood = likelihoods.Bernoulli()
    shape = [1, 3, 4, 1]
    with self.assertRaisesRegex(ValueError, 'built'):
      decoder.sample(None, likelihood, likelihood.noise(shape, tf.constant([1, 1])), shape)


if __name__ == '__main__':
  tf.test.main()
