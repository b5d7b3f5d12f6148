"""Tests for vlae_tf.flows: AF prior, IAF posterior, convolutional AF.

Tiny shapes with a different size on every axis: batch 2, latent 5, context 3, MADE hidden (7, 7);
spatial latents 3 x 4 x 2 with 6 hidden maps. Property tests run on randomised weights (a fresh
flow is the identity, which would make them trivial).
"""

from unittest import mock

from absl.testing import parameterized
import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

from vlae_tf.models import conv_flows
from vlae_tf.models import flows

tfb = tfp.bijectors
tfd = tfp.distributions

BATCH, LATENT, CONTEXT, HIDDEN, STEPS = 2, 5, 3, (7, 7), 2
HEIGHT, WIDTH, CHANNELS, HIDDEN_MAPS = 3, 4, 2, (6, 6)
SPATIAL = (HEIGHT, WIDTH, CHANNELS)


def randomize(layer: keras.layers.Layer, seed: int = 0, stddev: float = 0.3):
  """Sets every trainable variable to N(0, stddev^2), keeping the MADE masks.

  TFP's MADE keeps its masks in the kernels' `constraint` (as a tf_keras optimizer does after each
  update); the conv flow masks in the op and has no constraint.
  """
  for index, variable in enumerate(layer.trainable_variables):
    variable.assign(stddev * tf.random.stateless_normal(variable.shape, seed=[seed, index]))
    if variable.constraint is not None:
      variable.assign(variable.constraint(variable))


def built(layer, randomized, *input_shape):
  """`layer`, built (on `input_shape` if given) and, when `randomized`, randomized."""
  layer.build(*input_shape)
  if randomized:
    randomize(layer)
  return layer


def batch_jacobian(fn, x):
  """d fn(x) / d x per example, on the flattened event: [batch, size_out, size_in]."""
  flat = tf.reshape(x, [x.shape[0], -1])
  # Without pfor (a loop over the few outputs): pfor's first use costs seconds of conversion.
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(flat)
    y = fn(tf.reshape(flat, x.shape))
    y = tf.reshape(y, [x.shape[0], -1])
  return tape.batch_jacobian(y, flat, experimental_use_pfor=False)


def log_abs_det(jacobian):
  return tf.linalg.slogdet(jacobian)[1]


def made_param_count(latent, hidden, params, context=0):
  """MADE: sum over layers of (fan_in + context + 1) * fan_out (the context Dense has no bias)."""
  sizes = [latent, *hidden, latent * params]
  return sum((fan_in + context + 1) * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))


def conv_param_count(channels, hidden, params, kernel_size=3):
  sizes = [channels, *hidden, channels * params]
  return sum((kernel_size**2 * fan_in + 1) * fan_out
             for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))


def num_params(layer):
  return sum(int(np.prod(variable.shape)) for variable in layer.trainable_variables)


def assert_no_none_gradients(test, gradients, variables):
  test.assertLen(gradients, len(variables))
  missing = [v.name for v, g in zip(variables, gradients) if g is None]
  test.assertEmpty(missing)


def graph_function(fn):
  """`tf.function` without autograph: flows.py has no tensor-dependent Python control flow (its
  loop is an explicit `tf.while_loop`), and autograph would multiply the tracing time by ~7."""
  return tf.function(fn, autograph=False)


def assert_prior_gradients_and_eager_equals_function(test, prior, z):
  """log_prob(z) of the prior's distribution reaches every variable and is the same in a graph."""
  with tf.GradientTape() as tape:
    log_prob = prior.distribution().log_prob(z)
  variables = prior.trainable_variables
  assert_no_none_gradients(test, tape.gradient(log_prob, variables), variables)
  function = graph_function(lambda z: prior.distribution().log_prob(z))
  test.assertAllClose(log_prob, function(z), atol=1e-5)


def standard_normal_log_prob(z, event_ndims):
  return tf.reduce_sum(tfd.Normal(0., 1.).log_prob(z), axis=list(range(-event_ndims, 0)))


class AutoregressiveFlowPriorTest(tf.test.TestCase, parameterized.TestCase):

  def make_prior(self, shift_only, randomized=True):
    return built(flows.AutoregressiveFlowPrior(LATENT, num_steps=STEPS, hidden_units=HIDDEN,
                                               shift_only=shift_only), randomized)

  def z(self, seed=1):
    return 1.5 * tf.random.stateless_normal([BATCH, LATENT], seed=[seed, 0])

  @parameterized.parameters(True, False)
  def test_variable_and_parameter_counts(self, shift_only):
    prior = self.make_prior(shift_only, randomized=False)
    self.assertLen(prior.trainable_variables, STEPS * 2 * (len(HIDDEN) + 1))
    params = 1 if shift_only else 2
    self.assertEqual(num_params(prior), STEPS * made_param_count(LATENT, HIDDEN, params))

  @parameterized.parameters((True, STEPS), (False, STEPS + 1))
  def test_starts_at_identity(self, shift_only, num_steps):
    # An even and an odd number of steps: the order is restored either way.
    prior = flows.AutoregressiveFlowPrior(LATENT, num_steps=num_steps, hidden_units=HIDDEN,
                                          shift_only=shift_only)
    self.assertAllClose(prior.distribution().log_prob(self.z()),
                        standard_normal_log_prob(self.z(), 1), atol=1e-5)
    seed = [4, 5]
    self.assertAllClose(prior.distribution().sample(BATCH, seed=seed),
                        tfd.MultivariateNormalDiag(tf.zeros(LATENT)).sample(BATCH, seed=seed))

  @parameterized.parameters(True, False)
  def test_round_trip_log_det_and_change_of_variables(self, shift_only):
    prior = self.make_prior(shift_only)
    bijector = prior.bijector()
    eps = self.z()
    z = bijector.forward(eps)  # Sequential.
    self.assertNotAllClose(z, eps)
    # tf.identity: a new tensor, so that TFP's bijector cache cannot answer.
    self.assertAllClose(bijector.inverse(tf.identity(z)), eps, atol=1e-5)
    self.assertAllClose(bijector.forward(bijector.inverse(tf.identity(z))), z, atol=1e-5)

    z = self.z(seed=2)
    jacobian = batch_jacobian(bijector.inverse, z)
    # A shift-only flow has a constant Jacobian: TFP returns its log-det as a scalar.
    ildj = bijector.inverse_log_det_jacobian(z, event_ndims=1) + tf.zeros([BATCH])
    self.assertAllClose(ildj, log_abs_det(jacobian), atol=1e-4)
    if shift_only:
      self.assertAllClose(log_abs_det(jacobian), tf.zeros([BATCH]), atol=1e-5)
    expected = standard_normal_log_prob(bijector.inverse(z), 1) + ildj
    self.assertAllClose(prior.distribution().log_prob(z), expected, atol=1e-5)

  def test_steps_are_autoregressive_and_order_reverses(self):
    bijector = self.make_prior(shift_only=False).bijector()
    # Chain lists the last step first: [restore the order, maf_1, reverse, maf_0].
    restore, maf_1, permute, maf_0 = bijector.bijectors
    self.assertIsInstance(maf_0, tfb.MaskedAutoregressiveFlow)
    self.assertIsInstance(maf_1, tfb.MaskedAutoregressiveFlow)
    self.assertAllEqual(permute.permutation, np.arange(LATENT)[::-1])
    self.assertAllEqual(restore.permutation, np.arange(LATENT)[::-1])
    z = self.z()
    for maf in (maf_0, maf_1):
      # eps_i = (z_i - shift_i(z_<i)) * exp(-log_scale_i(z_<i)): lower triangular in z.
      jacobian = batch_jacobian(maf.inverse, z).numpy()
      self.assertAllEqual(np.triu(jacobian, k=1), np.zeros_like(jacobian))
      self.assertNotAllClose(np.tril(jacobian, k=-1), np.zeros_like(jacobian))
      self.assertTrue(np.all(np.abs(np.diagonal(jacobian, axis1=1, axis2=2)) > 0))
    # Both orders together: eps depends on z in both directions.
    jacobian = batch_jacobian(bijector.inverse, z).numpy()
    self.assertNotAllClose(np.triu(jacobian, k=1), np.zeros_like(jacobian))
    self.assertNotAllClose(np.tril(jacobian, k=-1), np.zeros_like(jacobian))

  def test_masks_survive_an_optimizer_step(self):
    prior = self.make_prior(shift_only=False)
    optimizer = keras.optimizers.Adamax(learning_rate=0.1)
    with tf.GradientTape() as tape:
      loss = -tf.reduce_sum(prior.distribution().log_prob(self.z()))
    variables = prior.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    maf = prior.bijector().bijectors[-1]  # The first step.
    jacobian = batch_jacobian(maf.inverse, self.z()).numpy()
    self.assertAllEqual(np.triu(jacobian, k=1), np.zeros_like(jacobian))

  def test_gradients_and_eager_equals_function(self):
    prior = self.make_prior(shift_only=False)
    z = self.z()
    assert_prior_gradients_and_eager_equals_function(self, prior, z)
    # Sampling in a graph (a tf.while_loop) is TFP's MAF code; ours is covered by the conv prior.
    self.assertEqual(prior.distribution().sample(BATCH, seed=[7, 8]).shape, [BATCH, LATENT])

  def test_mirrored_strategy(self):
    # Two logical CPUs (tests/conftest.py): the zeroing in build() reaches both replicas' copies.
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    with strategy.scope():
      prior = self.make_prior(shift_only=False, randomized=False)
    z = self.z()

    log_probs = strategy.run(graph_function(lambda: prior.distribution().log_prob(z)))
    self.assertLen(strategy.experimental_local_results(log_probs), 2)
    for log_prob in strategy.experimental_local_results(log_probs):
      self.assertAllClose(log_prob, standard_normal_log_prob(z, 1), atol=1e-5)


class IAFPosteriorTest(tf.test.TestCase, parameterized.TestCase):

  def make_posterior(self, shift_only=False, context_size=CONTEXT, randomized=True):
    return built(flows.IAFPosterior(LATENT, context_size, num_steps=STEPS, hidden_units=HIDDEN,
                                    shift_only=shift_only), randomized)

  def inputs(self, context_size=CONTEXT):
    loc = tf.random.stateless_normal([BATCH, LATENT], seed=[1, 1])
    scale = tf.exp(0.3 * tf.random.stateless_normal([BATCH, LATENT], seed=[1, 2]))
    context = (None if context_size is None
               else tf.random.stateless_normal([BATCH, context_size], seed=[1, 3]))
    return loc, scale, context

  @parameterized.parameters((False, CONTEXT), (True, CONTEXT), (False, None))
  def test_variable_and_parameter_counts(self, shift_only, context_size):
    posterior = self.make_posterior(shift_only, context_size, randomized=False)
    per_layer = 2 if context_size is None else 3  # kernel, bias (, context kernel)
    self.assertLen(posterior.trainable_variables, STEPS * per_layer * (len(HIDDEN) + 1))
    params = 1 if shift_only else 2
    self.assertEqual(num_params(posterior),
                     STEPS * made_param_count(LATENT, HIDDEN, params, context_size or 0))

  def test_starts_at_identity(self):
    posterior = self.make_posterior(randomized=False)
    loc, scale, context = self.inputs()
    q = posterior(loc, scale, context=context)
    base = tfd.MultivariateNormalDiag(loc, scale)
    z, log_q = q.experimental_sample_and_log_prob(seed=[3, 4])
    self.assertAllClose(z, base.sample(seed=[3, 4]))
    self.assertAllClose(log_q, base.log_prob(z), atol=1e-5)

  @parameterized.parameters((False, CONTEXT), (True, None))
  def test_sample_and_log_prob_equals_slow_log_prob(self, shift_only, context_size):
    posterior = self.make_posterior(shift_only, context_size)
    q = posterior(*self.inputs(context_size))
    z, log_q = q.experimental_sample_and_log_prob(seed=[5, 6])
    # tf.identity: a new tensor, so log_prob runs the sequential inverse, not TFP's cache.
    self.assertAllClose(q.log_prob(tf.identity(z)), log_q, atol=1e-4)

  def test_sample_and_log_prob_is_one_pass_per_step(self):
    posterior = self.make_posterior()
    q = posterior(*self.inputs())
    made_class = flows._ZeroOutputMADE  # pylint: disable=protected-access
    count_calls = lambda: mock.patch.object(made_class, 'call', autospec=True,
                                            side_effect=made_class.call)
    with count_calls() as fast:
      z, _ = q.experimental_sample_and_log_prob(seed=[5, 6])
    # One pass for the sample and one for its log-det (merged by grappler in a tf.function).
    self.assertLessEqual(fast.call_count, 2 * STEPS)
    with count_calls() as slow:
      q.log_prob(tf.identity(z))
    self.assertGreaterEqual(slow.call_count, LATENT * STEPS)  # The sequential inverse.

  def test_log_det_matches_autodiff_and_steps_are_autoregressive(self):
    posterior = self.make_posterior()
    _, _, context = self.inputs()
    bijector = posterior.bijector(context)
    eps = tf.random.stateless_normal([BATCH, LATENT], seed=[2, 2])
    jacobian = batch_jacobian(bijector.forward, eps)
    self.assertAllClose(bijector.forward_log_det_jacobian(eps, event_ndims=1),
                        log_abs_det(jacobian), atol=1e-4)
    restore, iaf_1, permute, iaf_0 = bijector.bijectors
    self.assertAllEqual(permute.permutation, np.arange(LATENT)[::-1])
    self.assertAllEqual(restore.permutation, np.arange(LATENT)[::-1])
    for iaf in (iaf_0, iaf_1):
      self.assertIsInstance(iaf.bijector, tfb.MaskedAutoregressiveFlow)  # iaf = Invert(MAF).
      # z_i = (eps_i - shift_i(eps_<i, h)) * exp(-log_scale_i(eps_<i, h)): lower triangular.
      step_jacobian = batch_jacobian(iaf.forward, eps).numpy()
      self.assertAllEqual(np.triu(step_jacobian, k=1), np.zeros_like(step_jacobian))
      self.assertNotAllClose(np.tril(step_jacobian, k=-1), np.zeros_like(step_jacobian))

  def test_round_trip_and_context_is_used(self):
    posterior = self.make_posterior()
    _, _, context = self.inputs()
    bijector = posterior.bijector(context)
    eps = tf.random.stateless_normal([BATCH, LATENT], seed=[2, 2])
    z = bijector.forward(eps)
    self.assertAllClose(bijector.inverse(tf.identity(z)), eps, atol=1e-5)
    self.assertNotAllClose(posterior.bijector(context + 1.).forward(eps), z)

  def test_sample_shape_broadcasts_context(self):
    posterior = self.make_posterior()
    q = posterior(*self.inputs())
    z, log_q = q.experimental_sample_and_log_prob(3, seed=[1, 9])
    self.assertEqual(z.shape, [3, BATCH, LATENT])
    self.assertEqual(log_q.shape, [3, BATCH])

  def test_gradients_reach_every_variable(self):
    posterior = self.make_posterior()
    loc, scale, context = self.inputs()
    with tf.GradientTape(persistent=True) as tape:
      tape.watch([loc, scale, context])
      z, log_q = posterior(loc, scale, context=context).experimental_sample_and_log_prob(
          seed=[5, 6])
      loss = tf.reduce_sum(log_q) + tf.reduce_sum(z)
    variables = posterior.trainable_variables
    assert_no_none_gradients(self, tape.gradient(loss, variables), variables)
    self.assertNotIn(None, tape.gradient(loss, [loc, scale, context]))

  def test_eager_equals_function(self):
    posterior = self.make_posterior()
    inputs = self.inputs()

    def sample_and_log_prob(loc, scale, context):
      return posterior(loc, scale, context=context).experimental_sample_and_log_prob(seed=[5, 6])

    self.assertAllClose(sample_and_log_prob(*inputs),
                        graph_function(sample_and_log_prob)(*inputs), atol=1e-5)

  def test_context_is_checked(self):
    posterior = self.make_posterior(randomized=False)
    loc, scale, _ = self.inputs()
    with self.assertRaisesRegex(ValueError, 'context'):
      posterior(loc, scale)


class GaussianTest(tf.test.TestCase):

  def test_gaussian_prior(self):
    prior = flows.GaussianPrior(LATENT)
    distribution = prior(None)
    self.assertEmpty(prior.trainable_variables)
    self.assertEqual(distribution.event_shape, [LATENT])
    z = tf.random.stateless_normal([BATCH, LATENT], seed=[1, 1])
    self.assertAllClose(distribution.log_prob(z), standard_normal_log_prob(z, 1))
    self.assertEqual(flows.GaussianPrior(SPATIAL).distribution().event_shape, SPATIAL)

  def test_diagonal_gaussian_posterior(self):
    posterior = flows.DiagonalGaussianPosterior()
    loc = tf.random.stateless_normal([BATCH, LATENT], seed=[1, 1])
    scale = tf.fill([BATCH, LATENT], 2.)
    q = posterior(loc, scale, context=tf.zeros([BATCH, CONTEXT]))
    self.assertEmpty(posterior.trainable_variables)
    self.assertEqual(q.batch_shape, [BATCH])
    self.assertEqual(q.event_shape, [LATENT])
    z, log_q = q.experimental_sample_and_log_prob(seed=[2, 2])
    self.assertAllClose(log_q, tfd.MultivariateNormalDiag(loc, scale).log_prob(z))
    spatial = posterior(tf.zeros([BATCH, *SPATIAL]), tf.ones([BATCH, *SPATIAL]))
    self.assertEqual(spatial.batch_shape, [BATCH])
    self.assertEqual(spatial.event_shape, SPATIAL)


def raster_then_channel_index(row, col, channel):
  return (row * WIDTH + col) * CHANNELS + channel


class ConvAutoregressiveFlowTest(tf.test.TestCase, parameterized.TestCase):

  def make_flow(self, reverse=False, params=2, randomized=True):
    network = built(conv_flows.MaskedConvShiftAndLogScale(
        params=params, hidden_filters=HIDDEN_MAPS), randomized, (None, *SPATIAL))
    return conv_flows.ConvAutoregressiveFlow(network, reverse=reverse)

  def make_prior(self, randomized=True):
    return built(conv_flows.ConvAutoregressiveFlowPrior(SPATIAL, num_steps=STEPS,
                                                        hidden_filters=HIDDEN_MAPS), randomized)

  def z(self, seed=1):
    return tf.random.stateless_normal([BATCH, *SPATIAL], seed=[seed, 0])

  def test_mask_at_the_centre(self):
    # First layer: 2 latent channels -> 4 hidden units in groups [0, 1, 0, 1].
    mask = conv_flows.conv_autoregressive_mask(3, [0, 1], [0, 1, 0, 1], strict=True)
    self.assertEqual(mask.shape, (3, 3, 2, 4))
    self.assertAllEqual(mask[1, 1], [[0, 1, 0, 1], [0, 0, 0, 0]])
    self.assertAllEqual(mask[2], np.zeros([3, 2, 4]))  # Row below: never.
    self.assertAllEqual(mask[1, 2], np.zeros([2, 4]))  # Right of the centre: never.
    self.assertAllEqual(mask[0], np.ones([3, 2, 4]))  # Row above: always.
    self.assertAllEqual(mask[1, 0], np.ones([2, 4]))  # Left of the centre: always.
    # Output layer: hidden groups [0, 1] -> (shift, log_scale) of channels [0, 0, 1, 1].
    mask = conv_flows.conv_autoregressive_mask(3, [0, 1], [0, 0, 1, 1], strict=False)
    self.assertAllEqual(mask[1, 1], [[1, 1, 1, 1], [0, 0, 1, 1]])

  @parameterized.parameters(1, 2)
  def test_variable_and_parameter_counts(self, params):
    network = self.make_flow(params=params, randomized=False).network
    self.assertLen(network.trainable_variables, 2 * (len(HIDDEN_MAPS) + 1))
    self.assertEqual(num_params(network), conv_param_count(CHANNELS, HIDDEN_MAPS, params))
    prior = self.make_prior(randomized=False)
    self.assertLen(prior.trainable_variables, STEPS * 2 * (len(HIDDEN_MAPS) + 1))
    self.assertEqual(num_params(prior), STEPS * conv_param_count(CHANNELS, HIDDEN_MAPS, 2))

  @parameterized.parameters((False, 2), (True, 2), (False, 1))
  def test_round_trip(self, reverse, params):
    flow = self.make_flow(reverse, params)
    eps = self.z()
    z = flow.forward(eps)  # Sequential.
    self.assertNotAllClose(z, eps)
    self.assertAllClose(flow.inverse(tf.identity(z)), eps, atol=1e-5)
    self.assertAllClose(flow.forward(flow.inverse(tf.identity(z))), z, atol=1e-5)

  @parameterized.parameters(False, True)
  def test_jacobian_is_triangular_in_raster_then_channel_order(self, reverse):
    flow = self.make_flow(reverse)
    z = self.z()
    jacobian = batch_jacobian(flow.inverse, z)
    self.assertAllClose(flow.inverse_log_det_jacobian(z, event_ndims=3),
                        log_abs_det(jacobian), atol=1e-4)
    jacobian = jacobian.numpy()
    # Reversed order: eps at index i depends on z at indices >= i.
    future = np.triu(jacobian, k=1) if not reverse else np.tril(jacobian, k=-1)
    past = np.tril(jacobian, k=-1) if not reverse else np.triu(jacobian, k=1)
    self.assertAllEqual(future, np.zeros_like(future))
    self.assertTrue(np.all(np.abs(np.diagonal(jacobian, axis1=1, axis2=2)) > 0))
    # The masks are not too strict: channel 1 sees channel 0 at its own position, and every
    # element sees its raster neighbours.
    earlier, later = (0, 1) if not reverse else (1, 0)
    for row, col in [(0, 0), (1, 2), (2, 3)]:
      self.assertTrue(np.all(jacobian[:, raster_then_channel_index(row, col, later),
                                      raster_then_channel_index(row, col, earlier)] != 0))
    self.assertGreater(np.count_nonzero(past[0]), HEIGHT * WIDTH * CHANNELS)

  def test_prior_starts_at_identity(self):
    distribution = self.make_prior(randomized=False).distribution()
    self.assertEqual(distribution.event_shape, SPATIAL)
    z = self.z()
    self.assertAllClose(distribution.log_prob(z), standard_normal_log_prob(z, 3), atol=1e-5)

  def test_prior_log_prob_is_change_of_variables(self):
    prior = self.make_prior()
    bijector, z = prior.bijector(), self.z()
    flow_1, flow_0 = bijector.bijectors
    self.assertEqual((flow_0.reverse, flow_1.reverse), (False, True))
    jacobian = batch_jacobian(bijector.inverse, z)
    self.assertAllClose(bijector.inverse_log_det_jacobian(z, event_ndims=3),
                        log_abs_det(jacobian), atol=1e-4)
    expected = (standard_normal_log_prob(bijector.inverse(z), 3)
                + bijector.inverse_log_det_jacobian(z, event_ndims=3))
    self.assertAllClose(prior.distribution().log_prob(z), expected, atol=1e-5)

  def test_prior_gradients_and_eager_equals_function(self):
    prior = self.make_prior()
    z = self.z()
    assert_prior_gradients_and_eager_equals_function(self, prior, z)
    sample = lambda: prior.distribution().sample(BATCH, seed=[7, 8])
    self.assertAllClose(sample(), graph_function(sample)(), atol=1e-5)


class ConfigTest(tf.test.TestCase):

  def test_get_config_round_trips(self):
    layers = [
        flows.GaussianPrior(LATENT),
        flows.AutoregressiveFlowPrior(LATENT, num_steps=STEPS, hidden_units=HIDDEN),
        flows.IAFPosterior(LATENT, CONTEXT, num_steps=STEPS, hidden_units=HIDDEN),
        flows.DiagonalGaussianPosterior(),
        conv_flows.MaskedConvShiftAndLogScale(params=1, hidden_filters=HIDDEN_MAPS),
        conv_flows.ConvAutoregressiveFlowPrior(SPATIAL, num_steps=STEPS, hidden_filters=HIDDEN_MAPS),
    ]
    for layer in layers:
      config = layer.get_config()
      self.assertEqual(type(layer).from_config(config).get_config(), config)

  def test_gin_registered(self):
    # A scoped binding: nothing global to clear for the other test modules.
    with gin.unlock_config():
      gin.parse_config('flows_test/vlae_tf.flows.AutoregressiveFlowPrior.num_steps = 3')
    with gin.config_scope('flows_test'):
      prior = gin.get_configurable('vlae_tf.flows.AutoregressiveFlowPrior')(LATENT)
    self.assertEqual(prior.num_steps, 3)
    for module, name in [('flows', 'GaussianPrior'), ('flows', 'AutoregressiveFlowPrior'),
                         ('flows', 'DiagonalGaussianPosterior'), ('flows', 'IAFPosterior'),
                         ('conv_flows', 'MaskedConvShiftAndLogScale'),
                         ('conv_flows', 'ConvAutoregressiveFlow'),
                         ('conv_flows', 'ConvAutoregressiveFlowPrior')]:
      gin.get_configurable(f'vlae_tf.{module}.{name}')  # Each in the module that defines it.


if __name__ == '__main__':
  tf.test.main()
