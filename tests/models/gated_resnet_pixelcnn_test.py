"""Tests of the first author's decoder (gated_resnet_pixelcnn.py) and its layers (tied_conv.py,
pixel_bias.py): window, parameter count, tying, normalisation, cached sampler, gin, 2 replicas."""

import itertools
import os
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tf_keras as keras

import doubles

from vlae_tf import errors
from vlae_tf import gin_parsing
from vlae_tf.compression import bitsback
from vlae_tf.layers import tied_conv
from vlae_tf.models import gated_resnet_pixelcnn
from vlae_tf.models import likelihoods
from vlae_tf.models import autoregressive_sampling
from vlae_tf.models import vlae as vlae_lib
from vlae_tf.training import settings as settings_lib
from vlae_tf.training import trainer as trainer_lib

HEIGHT, WIDTH, CONTEXT = 5, 7, 3  # Different sizes on every axis.


def make_decoder(**kwargs):
  settings = dict(num_outputs=1, filters=3, num_stages=3, extra_nins=2)
  settings.update(kwargs)
  return gated_resnet_pixelcnn.GatedResNetPixelCNN(**settings)


def inputs_and_context(batch=2, height=HEIGHT, width=WIDTH, channels=1, seed=0):
  images = tf.cast(tf.random.stateless_uniform([batch, height, width, channels], [seed, 1]) < 0.5,
                   tf.float32)
  context = tf.random.stateless_normal([batch, height, width, CONTEXT], [seed, 2])
  return likelihoods.Bernoulli().network_input(images), context


def built_and_perturbed(decoder, height=HEIGHT, width=WIDTH, seed=0, with_context=True):
  """Builds and data-initialises `decoder`, then moves every weight so nothing is symmetric."""
  keras.utils.set_random_seed(seed)
  inputs, context = inputs_and_context(4, height, width, seed=seed)
  decoder(inputs, context if with_context else None)
  for index, variable in enumerate(decoder.trainable_variables):
    variable.assign(variable + 0.3 * tf.random.stateless_normal(variable.shape, [seed, index]))
  return decoder


def parameter_count(height, width, channels, context, filters, outputs, stages, nins,
                    tied=True, per_pixel=True):
  """Trainable parameters, counted by hand from the spec (module docstring of the decoder)."""
  blocks = stages - 1
  kernels = (9 * (channels + context) * filters      # stem, mask A
             + 9 * filters * 2 * filters              # gated, mask B
             + 9 * filters * filters                  # post, mask B
             + nins * filters * filters               # 1x1 NINs
             + 9 * filters * outputs)                 # output, mask B
  if not tied:
    kernels += ((blocks - 1) * 9 * 3 * filters * filters
                + (stages - 1) * nins * filters * filters)
  # One weight-norm scale per output channel of every use.
  scales = filters + blocks * (2 * filters + filters) + stages * nins * filters + outputs
  biases = scales * (height * width if per_pixel else 1)
  return kernels + scales + biases


def num_parameters(layer):
  return sum(int(np.prod(v.shape)) for v in layer.trainable_variables)


def measured_window(decoder, height, width, row, col, wrt='inputs'):
  """Offsets of the inputs (or context) whose value reaches the output at (row, col)."""
  inputs, context = inputs_and_context(1, height, width, seed=3)
  with tf.GradientTape() as tape:
    tape.watch([inputs, context])
    params = decoder(inputs, context)
    target = params[0, row, col, 0]
  gradient = tape.gradient(target, inputs if wrt == 'inputs' else context).numpy()
  rows, cols = np.nonzero(np.abs(gradient).sum(axis=(0, 3)))
  return frozenset((int(r) - row, int(c) - col) for r, c in zip(rows, cols))


class WindowTest(tf.test.TestCase):

  def test_paper_window_is_246_offsets_and_equals_the_measured_one_at_28x28(self):
    decoder = make_decoder(num_stages=6, extra_nins=4)
    window = decoder.window()
    self.assertLen(window, 246)
    self.assertEqual(min(r for r, _ in window), -12)
    self.assertEqual(min(c for r, c in window if r == 0), -12)
    self.assertNotIn((-1, 2), window)  # PixelCNN's blind spot.
    self.assertTrue(all(offset < (0, 0) for offset in window))
    built_and_perturbed(decoder, 28, 28)
    self.assertEqual(measured_window(decoder, 28, 28, 14, 14), window)
    # The context goes through the same type-A mask: the pixel's own context is never seen.
    self.assertEqual(measured_window(decoder, 28, 28, 14, 14, wrt='context'), window)

  def test_perturbing_a_pixel_moves_exactly_the_outputs_whose_window_holds_it(self):
    height, width = 9, 11
    decoder = built_and_perturbed(make_decoder(), height, width)
    inputs, context = inputs_and_context(2, height, width, seed=4)
    base = decoder(inputs, context).numpy()
    window = decoder.window()
    for row, col in [(0, 0), (4, 5), (height - 1, width - 1), (3, 0), (5, width - 1)]:
      delta = np.zeros(inputs.shape, np.float32)
      delta[:, row, col, :] = 1.5
      moved = np.abs(decoder(inputs + delta, context).numpy() - base).max(axis=(0, 3)) > 0
      expected = np.zeros([height, width], bool)
      for drow, dcol in window:
        if 0 <= row - drow < height and 0 <= col - dcol < width:
          expected[row - drow, col - dcol] = True
      self.assertAllEqual(moved, expected, msg=f'perturbed pixel {(row, col)}')


class ParametersTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('paper', dict(num_stages=6, filters=12, extra_nins=4), 28, 28, 4),
      ('tiny_tied', {}, HEIGHT, WIDTH, CONTEXT),
      ('tiny_untied', dict(tie_weights=False), HEIGHT, WIDTH, CONTEXT),
      ('tiny_channel_bias', dict(pixel_bias=False), HEIGHT, WIDTH, CONTEXT),
      ('tiny_two_outputs', dict(num_outputs=2, num_stages=2, extra_nins=1), HEIGHT, WIDTH,
       CONTEXT))
  def test_trainable_parameters_match_the_formula(self, kwargs, height, width, context):
    decoder = make_decoder(**kwargs)
    images = tf.zeros([1, height, width, 1])
    decoder(images, tf.zeros([1, height, width, context]))
    expected = parameter_count(
        height, width, 1, context, decoder.filters, decoder.num_outputs, decoder.num_stages,
        decoder.extra_nins, tied=decoder.tie_weights, per_pixel=decoder.pixel_bias)
    self.assertEqual(num_parameters(decoder), expected)
    if kwargs.get('num_stages') == 6:
      self.assertEqual(expected, 382_697)  # docs/authors_code.md, section 9: 382,697.

  def test_tying_shares_the_named_kernels_and_no_scale_or_bias(self):
    decoder = built_and_perturbed(make_decoder(num_stages=4, extra_nins=3))
    uses = [decoder.stem, *decoder.gated_convs, *decoder.post_convs,
            *[nin for stage in decoder.nin_convs for nin in stage], decoder.output_conv]
    kernel_ids = lambda convs: {id(conv.shared.kernel) for conv in convs}
    self.assertLen(kernel_ids(decoder.gated_convs), 1)
    self.assertLen(kernel_ids(decoder.post_convs), 1)
    for k in range(decoder.extra_nins):
      self.assertLen(kernel_ids([stage[k] for stage in decoder.nin_convs]), 1)
    # stem, gated, post, one per NIN position, output: all distinct.
    self.assertLen(kernel_ids(uses), 4 + decoder.extra_nins)
    self.assertLen(decoder.kernels, 4 + decoder.extra_nins)
    # Every use has its own scale and its own bias.
    self.assertLen({id(use.scale) for use in uses}, len(uses))
    self.assertLen({id(use.bias) for use in uses}, len(uses))
    for use in uses:
      self.assertEqual(use.bias.shape, [1, HEIGHT, WIDTH, use.shared.filters])
    # The trainable variables are exactly these, each once.
    expected = ({id(k.kernel) for k in decoder.kernels} | {id(u.scale) for u in uses}
                | {id(u.bias) for u in uses})
    self.assertCountEqual([id(v) for v in decoder.trainable_variables], expected)

  def test_untied_uses_share_nothing(self):
    decoder = built_and_perturbed(make_decoder(tie_weights=False))
    uses = [decoder.stem, *decoder.gated_convs, *decoder.post_convs,
            *[nin for stage in decoder.nin_convs for nin in stage], decoder.output_conv]
    self.assertLen({id(use.shared.kernel) for use in uses}, len(uses))

  def test_each_use_is_data_initialised_on_its_own_input_to_std_0_1(self):
    decoder = make_decoder()
    inputs, context = inputs_and_context(8, seed=5)
    params = decoder(inputs * 3. + 1., context)
    mean, variance = tf.nn.moments(params, axes=[0, 1, 2])
    self.assertAllClose(mean, [0.], atol=1e-5)
    self.assertAllClose(tf.sqrt(variance), [0.1], atol=1e-5)
    # The per-pixel bias starts equal at every pixel; later calls assign nothing.
    bias = decoder.output_conv.bias.numpy()
    self.assertAllClose(bias, np.broadcast_to(bias[:, :1, :1], bias.shape))
    weights = [v.numpy() for v in decoder.weights]
    decoder(inputs * 2., context)
    for before, after in zip(weights, decoder.weights):
      self.assertAllEqual(before, after)

  def test_data_init_in_a_graph_equals_the_eager_one(self):
    inputs, context = inputs_and_context(4, seed=6)
    keras.utils.set_random_seed(1)
    eager = make_decoder()
    expected = eager(inputs, context)
    keras.utils.set_random_seed(1)
    traced = make_decoder()
    self.assertAllClose(tf.function(traced)(inputs, context), expected, atol=1e-5)
    self.assertAllClose(traced(inputs, context), expected, atol=1e-5)
    for a, b in zip(eager.weights, traced.weights):
      self.assertAllClose(a, b, atol=1e-5)

  def test_a_use_split_into_parts_equals_its_output_split_in_every_path(self):
    inputs, _ = inputs_and_context(4, seed=8)
    inputs = tf.tile(inputs, [1, 1, 1, 2])

    def make_use():
      keras.utils.set_random_seed(2)
      return tied_conv.TiedConv2D(tied_conv.SharedKernel(6, 3, 'B'), name='gated')

    whole_use = make_use()
    whole = whole_use(inputs)  # Eager data init.
    # Before the init, eagerly and in a graph traced then: the split of the data-init output.
    for traced in (False, True):
      use = make_use()  # Seeded just before it is built, as whole_use was.
      parts = (tf.function(use) if traced else use)(inputs, num_parts=3)
      self.assertLen(parts, 3)
      self.assertAllClose(tf.concat(parts, -1), whole, atol=1e-6)
    # After it: one convolution per part, the same values and the same gradients.
    weights = [0.5, -1., 2.]
    with tf.GradientTape(persistent=True) as tape:
      parts = whole_use(inputs, num_parts=3)
      loss_parts = sum(w * tf.reduce_sum(tf.tanh(p)) for w, p in zip(weights, parts))
      loss_whole = sum(w * tf.reduce_sum(tf.tanh(p))
                       for w, p in zip(weights, tf.split(whole_use(inputs), 3, -1)))
    self.assertEqual([p.shape for p in parts], [[4, HEIGHT, WIDTH, 2]] * 3)
    self.assertAllClose(tf.concat(parts, -1), whole, atol=1e-6)
    variables = whole_use.trainable_variables
    self.assertLen(variables, 3)  # Kernel, scale, per-pixel bias.
    for a, b in zip(tape.gradient(loss_parts, variables), tape.gradient(loss_whole, variables)):
      self.assertAllClose(a, b, rtol=1e-5, atol=1e-5)


class DistributionTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('context', {}), ('zeroed_context', dict(zero_context=True)),
                                  ('channel_bias_untied', dict(pixel_bias=False,
                                                               tie_weights=False)))
  def test_probabilities_of_all_2x3_images_sum_to_one(self, kwargs):
    height, width = 2, 3
    decoder = built_and_perturbed(make_decoder(**kwargs), height, width)
    likelihood = likelihoods.Bernoulli()
    images = tf.constant(list(itertools.product([0., 1.], repeat=height * width)))
    images = tf.reshape(images, [-1, height, width, 1])  # All 64 images.
    context = tf.tile(tf.random.stateless_normal([1, height, width, CONTEXT], [7, 7]),
                      [64, 1, 1, 1])  # One z.
    params = decoder(likelihood.network_input(images), context)
    log_probs = tf.cast(likelihood(params).log_prob(images), tf.float64)
    self.assertAllClose(tf.reduce_sum(tf.exp(log_probs)), 1.0, atol=1e-6)
    # Not uniform: the weights matter.
    self.assertGreater(float(tf.reduce_max(log_probs) - tf.reduce_min(log_probs)), 0.1)

  @parameterized.named_parameters(('context', {}, True), ('no_context', {}, False),
                                  ('channel_bias', dict(pixel_bias=False), True),
                                  ('zeroed', dict(zero_context=True), True))
  def test_cached_autoregress_gives_the_parallel_probabilities(self, kwargs, with_context):
    decoder = built_and_perturbed(make_decoder(**kwargs), with_context=with_context)
    likelihood = likelihoods.Bernoulli()
    images = tf.cast(tf.random.stateless_uniform([2, HEIGHT, WIDTH, 1], [8, 8]) < 0.5, tf.float32)
    context = tf.random.stateless_normal([2, HEIGHT, WIDTH, CONTEXT], [9, 9])
    if not with_context:
      context = None
    parallel = decoder(likelihood.network_input(images), context).numpy()
    cached = np.full(parallel.shape, np.nan, np.float32)

    def keep(params, row, col):
      cached[:, int(row), int(col)] = params.numpy()
      return images[:, int(row), int(col)]

    chosen = decoder.autoregress(context, likelihood, keep, images.shape.as_list())
    self.assertAllEqual(chosen, images)
    self.assertAllClose(cached, parallel, atol=1e-5)

  def test_cached_sampler_draws_the_sequential_samples(self):
    decoder = built_and_perturbed(make_decoder())
    likelihood = likelihoods.Bernoulli()
    _, context = inputs_and_context(2, seed=10)
    shape = [2, HEIGHT, WIDTH, 1]
    noise = likelihood.noise(shape, tf.constant([3, 4]))
    params_fn = lambda images: decoder(likelihood.network_input(images), context)
    sequential = autoregressive_sampling.sample_sequential(params_fn, likelihood, noise, shape)
    cached = tf.function(lambda: decoder.sample(context, likelihood, noise, shape))()
    self.assertAllEqual(cached, sequential)
    self.assertGreater(len(np.unique(cached.numpy())), 1)

  def test_zeroed_context_ignores_the_context_exactly(self):
    zeroed = built_and_perturbed(make_decoder(zero_context=True))
    used = built_and_perturbed(make_decoder())
    inputs, context = inputs_and_context(2, seed=11)
    other = context * 3. + 1.
    self.assertAllEqual(zeroed(inputs, context), zeroed(inputs, other))
    self.assertNotAllClose(used(inputs, context), used(inputs, other))


class LayerTest(tf.test.TestCase):

  def test_other_image_size_is_a_one_line_error_naming_both_sizes(self):
    decoder = built_and_perturbed(make_decoder())
    inputs, context = inputs_and_context(1, HEIGHT + 1, WIDTH)
    with self.assertRaises(errors.ImageSizeError) as caught:
      decoder(inputs, context)
    self.assertIsInstance(caught.exception, errors.IncompatibleRunError)
    message = str(caught.exception)
    self.assertNotIn('\n', message)
    self.assertIn(f'{HEIGHT}x{WIDTH}', message)
    self.assertIn(f'{HEIGHT + 1}x{WIDTH}', message)
    likelihood = likelihoods.Bernoulli()
    with self.assertRaisesRegex(errors.ImageSizeError, f'{HEIGHT}x{WIDTH + 2}'):
      decoder.autoregress(None, likelihood, lambda p, r, c: p, [1, HEIGHT, WIDTH + 2, 1])

  def test_eager_equals_tf_function_and_config_round_trips(self):
    decoder = built_and_perturbed(make_decoder())
    inputs, context = inputs_and_context(2, seed=12)
    self.assertAllClose(decoder(inputs, context), tf.function(decoder)(inputs, context),
                        atol=1e-5)
    config = decoder.get_config()
    clone = keras.layers.deserialize(keras.layers.serialize(decoder))
    self.assertIsInstance(clone, gated_resnet_pixelcnn.GatedResNetPixelCNN)
    self.assertEqual(clone.get_config(), config)
    self.assertEqual(clone.window(), decoder.window())
    use = tied_conv.TiedConv2D.from_config(decoder.stem.get_config())
    self.assertEqual(use.get_config(), decoder.stem.get_config())

  def test_checkpoint_restores_into_an_unbuilt_decoder(self):
    decoder = built_and_perturbed(make_decoder())
    inputs, context = inputs_and_context(2, seed=13)
    with tempfile.TemporaryDirectory() as directory:
      path = tf.train.Checkpoint(decoder=decoder).save(os.path.join(directory, 'ckpt'))
      restored = make_decoder()
      tf.train.Checkpoint(decoder=restored).restore(path).assert_existing_objects_matched()
      # Restored on creation: the data init does not run again on these other inputs.
      self.assertAllClose(restored(inputs * 2., context), decoder(inputs * 2., context),
                          atol=1e-6)


def parse(*files, params=()):
  gin_parsing.parse_gin(
      ['mnist_vlae.gin', *files, 'testing/tiny.gin'],
      ['gated_resnet_pixelcnn.GatedResNetPixelCNN.filters = 3',
       'gated_resnet_pixelcnn.GatedResNetPixelCNN.num_stages = 3',
       'gated_resnet_pixelcnn.GatedResNetPixelCNN.extra_nins = 2', *params])


class GinTest(tf.test.TestCase):

  def tearDown(self):
    gin_parsing.gin.clear_config()
    super().tearDown()

  def test_whole_model_from_the_gin_file_has_the_parts_variables(self):
    parse('models/vlae_binary_authors.gin')
    model = vlae_lib.make_model()
    self.assertIsInstance(model.decoder, gated_resnet_pixelcnn.GatedResNetPixelCNN)
    model.initialize(doubles.binary_images(4, shape=(28, 28, 1)))
    parts = [model.encoder, model.context_network, model.prior, model.posterior, model.decoder]
    self.assertGreater(len(model.trainable_variables), 0)
    self.assertEqual(len(model.trainable_variables),
                     sum(len(part.trainable_variables) for part in parts))
    self.assertEqual(num_parameters(model), sum(num_parameters(part) for part in parts))
    context_channels = model.context_network.context_channels
    self.assertEqual(num_parameters(model.decoder),
                     parameter_count(28, 28, 1, context_channels, 3, 1, 3, 2))

  def test_no_latent_authors_gin_ignores_z_exactly(self):
    parse('models/pixelcnn_no_latent_authors.gin')
    model = vlae_lib.make_model()
    self.assertTrue(model.decoder.zero_context)
    self.assertTrue(model.has_latent)  # z is sampled and its KL charged, as he ran it.
    images = doubles.binary_images(2, shape=(28, 28, 1))
    model.initialize(images)
    z = tf.random.stateless_normal([2, 3], [1, 1])
    self.assertAllEqual(model.decoder_params(images, z), model.decoder_params(images, 5. * z + 1.))

  def test_todays_no_latent_variant_runs_the_authors_decoder_without_context(self):
    parse('models/vlae_binary_authors.gin', 'models/pixelcnn_no_latent.gin')
    model = vlae_lib.make_model()
    self.assertFalse(model.has_latent)
    terms = model.initialize(doubles.binary_images(2, shape=(28, 28, 1)))
    self.assertAllEqual(terms['kl'], tf.zeros([2]))
    self.assertEqual(model.decoder.stem.shared.input_channels, 1)

  def test_trains_a_few_steps_on_two_replicas(self):
    parse('models/vlae_binary_authors.gin')
    strategy = doubles.two_replicas()
    self.assertEqual(strategy.num_replicas_in_sync, 2)
    trainer = trainer_lib.make_trainer(strategy, global_batch_size=4,
                                       **settings_lib.trainer_settings())
    images = doubles.binary_images(12, shape=(28, 28, 1), seed=2)
    trainer.initialize(images[:4])
    decoder = trainer.model.decoder
    before = [v.numpy() for v in decoder.trainable_variables]
    metrics = trainer.train_loop(iter(tf.data.Dataset.from_tensor_slices(images).batch(4)), 3)
    self.assertEqual(int(trainer.step.numpy()), 3)
    self.assertTrue(np.isfinite(metrics['loss']))
    self.assertEqual(metrics['bad_steps'], 0)
    moved = [np.abs(b - v.numpy()).max() for b, v in zip(before, decoder.trainable_variables)]
    self.assertGreater(min(moved), 0)  # Every kernel, scale and per-pixel bias trains.
    for variable in trainer.model.variables:  # Data init and steps agree on both replicas.
      first, second = strategy.experimental_local_results(variable)
      self.assertAllEqual(first.numpy(), second.numpy(), msg=variable.name)


if __name__ == '__main__':
  tf.test.main()


class ConsumersTest(tf.test.TestCase):
  """Sampling and the bits-back codec use `autoregress` of a model built from the gin file."""

  def model(self):
    parse('models/vlae_binary_authors.gin')
    keras.utils.set_random_seed(0)
    model = vlae_lib.make_model()
    model.initialize(doubles.binary_images(4, shape=(28, 28, 1), seed=5))
    return model

  def tearDown(self):
    gin_parsing.gin.clear_config()
    super().tearDown()

  def test_fast_sampling_equals_fixed_point_sampling(self):
    model = self.model()
    seed = tf.constant([4, 2])
    fast = tf.function(lambda: model.sample(2, seed, method='fast'))()
    self.assertAllEqual(fast, model.sample(2, seed, method='fixed_point'))

  def test_bits_back_round_trip_is_exact(self):
    model = self.model()
    images = doubles.binary_images(3, shape=(28, 28, 1), seed=6).numpy()
    coder = bitsback.BitsBackCoder(model, first_batch=1, largest_batch=2, growth_percent=50)
    words, lengths, _ = coder.encode(images)
    decoded, leftover = coder.decode(words, len(images))
    self.assertAllEqual(decoded, images)
    self.assertAllEqual(leftover, coder.initial_words())
    self.assertGreater(lengths.pixels, 0)
