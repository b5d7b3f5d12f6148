"""Tests of the encoders and context networks (encoders.py, context_networks.py): shapes,
parameter counts, data-dependent init, gradients, configs.

Weight-normed layers are slow to call the first time (TFP's WeightNorm.call is a tf.function
traced per layer), so the structural tests run every network without weight norm and two networks
with it (together they wrap Dense, Conv2D and Conv2DTranspose); those two are built and
data-initialized once per process (`_initialized`).
"""

import functools
import os

from absl.testing import parameterized
import gin
import numpy as np
import tensorflow as tf

from vlae_tf.layers import blocks as blocks_lib
from vlae_tf.models import context_networks
from vlae_tf.models import encoders
from vlae_tf.layers import weight_norm

K = 3  # Kernel side of every tiny network.
SIZE = (12, 10)  # Default tiny image size.
LATENT = 6  # Binary z size.
LATENT_CHANNELS = 2  # Spatial z channels.
HIDDEN = 7
CONTEXT_CHANNELS = 3

# Tiny configurations: 12x10 -> 6x5 -> 3x3 (binary), 12x10 -> 6x5 (spatial).
TINY = {
    'binary_encoder': (encoders.BinaryResNetEncoder, dict(
        latent_size=LATENT, filters=(3, 4), hidden_size=HIDDEN)),
    'binary_decoder': (context_networks.BinaryResNetDecoder, dict(
        context_channels=CONTEXT_CHANNELS, filters=(5, 4), hidden_size=HIDDEN)),
    'resnet_encoder': (encoders.SpatialResNetEncoder, dict(
        filters=(4, 5), blocks=(1, 1), latent_channels=LATENT_CHANNELS)),
    'resnet_decoder': (context_networks.SpatialResNetDecoder, dict(
        context_channels=CONTEXT_CHANNELS, filters=(5, 4), blocks=(1, 1))),
    'densenet_encoder': (encoders.SpatialDenseNetEncoder, dict(
        filters=(4, 5), blocks=(1, 1), latent_channels=LATENT_CHANNELS, growth_rate=3,
        num_steps=2)),
    'densenet_decoder': (context_networks.SpatialDenseNetDecoder, dict(
        context_channels=CONTEXT_CHANNELS, filters=(5, 4), blocks=(1, 1), growth_rate=3,
        num_steps=2)),
}
NAMES = tuple(TINY)
WEIGHT_NORMED = ('binary_encoder', 'resnet_decoder')
CASES = ([dict(testcase_name=f'{name}_plain', name=name, use_weight_norm=False)
          for name in NAMES] +
         [dict(testcase_name=f'{name}_wn', name=name, use_weight_norm=True)
          for name in WEIGHT_NORMED])


def _make(name, size=SIZE, use_weight_norm=True, **overrides):
  cls, kwargs = TINY[name]
  kwargs = dict(kwargs, use_weight_norm=use_weight_norm, **overrides)
  if name.endswith('decoder'):
    kwargs['output_shape'] = size
  return cls(**kwargs)


def _input(name, batch, size=SIZE, seed=0, loc=0., scale=1., stages=None):
  """A batch for network `name` (images for encoders, z for decoders)."""
  if name.endswith('encoder'):
    shape = [batch, *size, 1 if name.startswith('binary') else 3]
  elif name == 'binary_decoder':
    shape = [batch, LATENT]
  else:
    stages = len(TINY[name][1]['filters']) if stages is None else stages
    shape = [batch, *blocks_lib.halved_sizes(size, stages - 1)[-1], LATENT_CHANNELS]
  return loc + scale * tf.random.stateless_normal(shape, [seed, 7])


@functools.lru_cache(maxsize=None)
def _initialized(name, use_weight_norm):
  """(network, inputs): a tiny network after `weight_norm.initialize` on `inputs`, built once."""
  network = _make(name, use_weight_norm=use_weight_norm)
  inputs = _input(name, 2)
  weight_norm.initialize(network, inputs)
  return network, inputs


def _flat(outputs):
  return tf.nest.flatten(outputs)


def _variable_values(module):
  """{name: [value on each replica]} of every variable of `module`."""
  return {variable.name: [np.array(copy.numpy()) for copy in getattr(variable, 'values',
                                                                     (variable,))]
          for variable in module.variables}


# Parameter counts by formula. A layer is (kernel side, input channels, output channels): its
# trainable parameters are the kernel v (k * k * in * out), the bias (out) and, with weight
# norm, the gain g (out). A dense layer is a 1x1 kernel. Transposed convolutions count the same.


def _resnet_block(width):
  return [(K, width, width), (K, width, width)]


def _densenet_block(width, growth=3, steps=2):
  return ([(K, width + s * growth, growth) for s in range(steps)] +
          [(1, width + steps * growth, width)])


def _layers(name):
  """The (kernel, in, out) of every convolution / dense layer of the tiny network `name`."""
  if name == 'binary_encoder':  # 12x10x1 -> stem 3 -> 6x5x3 -> 3x3x4 -> dense 7 -> 2 * 6
    return ([(K, 1, 3), (K, 3, 3)] + _resnet_block(3) + [(K, 3, 4)] + _resnet_block(4) +
            [(1, 3 * 3 * 4, HIDDEN), (1, HIDDEN, 2 * LATENT)])
  if name == 'binary_decoder':  # 6 -> dense 7 -> 3x3x5 -> 6x5x5 -> 12x10x4 -> 3
    return ([(1, LATENT, HIDDEN), (1, HIDDEN, 3 * 3 * 5), (K, 5, 5)] + _resnet_block(5) +
            [(K, 5, 4)] + _resnet_block(4) + [(K, 4, CONTEXT_CHANNELS)])
  block = _resnet_block if name.startswith('resnet') else _densenet_block
  if name.endswith('encoder'):  # 12x10x3 -> stem 4 -> 6x5x5 -> 1x1 to 2 * 2
    return ([(K, 3, 4)] + block(4) + [(K, 4, 5)] + block(5) +
            [(1, 5, 2 * LATENT_CHANNELS)])
  # Decoders: 6x5x2 -> 1x1 to 5 -> 12x10x4 -> 3
  return ([(1, LATENT_CHANNELS, 5)] + block(5) + [(K, 5, 4)] + block(4) +
          [(K, 4, CONTEXT_CHANNELS)])


def _expected_count(name, use_weight_norm):
  per_layer = [k * k * n_in * n_out + n_out * (2 if use_weight_norm else 1)
               for k, n_in, n_out in _layers(name)]
  return sum(per_layer)


class HelpersTest(tf.test.TestCase):

  def test_gin_binds_constructor_arguments(self):
    @gin.configurable('make_network', module='networks_test')
    def make_network(network=gin.REQUIRED):
      return network

    with gin.unlock_config():
      gin.parse_config([
          'networks_test.make_network.network = @vlae_tf.context_networks.SpatialDenseNetDecoder()',
          'vlae_tf.context_networks.SpatialDenseNetDecoder.growth_rate = 5',
          'vlae_tf.context_networks.SpatialDenseNetDecoder.use_weight_norm = False',
      ])
    try:
      network = make_network()
    finally:
      gin.clear_config()
    self.assertEqual((network.growth_rate, network.use_weight_norm), (5, False))


class NetworksTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('binary_encoder_28x28', 'binary_encoder', (28, 28), 3),
      ('binary_encoder_5x7', 'binary_encoder', (5, 7), 3),
      ('binary_decoder_28x28', 'binary_decoder', (28, 28), 3),
      ('binary_decoder_12x10', 'binary_decoder', (12, 10), 3),
      ('resnet_encoder_32x32', 'resnet_encoder', (32, 32), 3),
      ('resnet_decoder_32x32', 'resnet_decoder', (32, 32), 3),
      ('densenet_encoder_5x7', 'densenet_encoder', (5, 7), 2),
      ('densenet_decoder_5x7', 'densenet_decoder', (5, 7), 2),
  )
  def test_output_shapes(self, name, size, stages):
    """28x28 -> 4x4 (binary, 3 stages); 32x32 -> 8x8 (spatial, 3 stages); odd sizes."""
    filters = (3, 4, 5)[:stages]
    overrides = ({'filters': filters} if name.startswith('binary')
                 else {'filters': filters, 'blocks': (1,) * stages})
    network = _make(name, size, use_weight_norm=False, **overrides)
    outputs = network(_input(name, 2, size, stages=stages))
    if name == 'binary_encoder':
      self.assertEqual([t.shape for t in outputs], [[2, LATENT]] * 2 + [[2, HIDDEN]])
    elif name.endswith('encoder'):
      small = blocks_lib.halved_sizes(size, stages - 1)[-1]
      self.assertEqual([t.shape for t in outputs],
                       [[2, *small, LATENT_CHANNELS]] * 2 + [[2, *small, filters[-1]]])
      if size == (32, 32):
        self.assertEqual(small, (8, 8))
    else:
      self.assertEqual(outputs.shape, [2, *size, CONTEXT_CHANNELS])
    if name.endswith('encoder'):
      self.assertIsInstance(outputs, encoders.EncoderOutput)
      self.assertAllGreater(outputs.scale, 0.)

  @parameterized.named_parameters(*CASES)
  def test_tiny_shapes_and_parameter_count(self, name, use_weight_norm):
    network, inputs = _initialized(name, use_weight_norm)
    outputs = network(inputs)
    if name == 'binary_encoder':
      self.assertEqual([t.shape for t in outputs], [[2, LATENT]] * 2 + [[2, HIDDEN]])
    elif name.endswith('encoder'):
      self.assertEqual([t.shape for t in outputs],
                       [[2, 6, 5, LATENT_CHANNELS]] * 2 + [[2, 6, 5, 5]])
    else:
      self.assertEqual(outputs.shape, [2, *SIZE, CONTEXT_CHANNELS])
    if name.endswith('encoder'):
      self.assertAllGreater(outputs.scale, 0.)
    trainable = sum(v.shape.num_elements() for v in network.trainable_variables)
    self.assertEqual(trainable, _expected_count(name, use_weight_norm))
    # Weight norm adds one non-trainable scalar bool `initialized` per layer, nothing else.
    num_wrapped = len(_layers(name)) if use_weight_norm else 0
    self.assertLen(weight_norm.weight_norm_layers(network), num_wrapped)
    flags = network.non_trainable_variables
    self.assertLen(flags, num_wrapped)
    self.assertTrue(all(v.dtype == tf.bool and v.shape == [] for v in flags))

  def test_context_projection_shapes(self):
    binary = _make('binary_encoder', use_weight_norm=False, context_size=4)
    self.assertEqual(binary(_input('binary_encoder', 2)).context.shape, [2, 4])
    self.assertEqual(binary.context_size, 4)
    spatial = _make('resnet_encoder', use_weight_norm=False, context_channels=5)
    self.assertEqual(spatial(_input('resnet_encoder', 2)).context.shape, [2, 6, 5, 5])

  @parameterized.named_parameters(  # Without blocks: few layers, as each is traced per replica.
      ('binary_encoder', 'binary_encoder', (4, 3), dict(blocks_per_stage=0)),  # Conv2D, Dense
      ('resnet_decoder', 'resnet_decoder', (2, 3), dict(blocks=(0, 0))))  # Conv2DTranspose
  def test_data_init_under_mirrored_strategy(self, name, size, overrides):
    self.assertLen(tf.config.list_logical_devices('CPU'), 2)
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    self.assertEqual(strategy.num_replicas_in_sync, 2)
    batch = _input(name, 4, size, seed=1, loc=3., scale=5.)  # Real-ish: mean 3, std 5.
    with strategy.scope():
      network = _make(name, size, **overrides)
      outputs = weight_norm.initialize(network, batch)
      self.assertEmpty(weight_norm.uninitialized_weight_norms(network))
      first = network.stem(batch)  # The first weight-normed layer: linear, reads the input.
    # Its output, and the last layer's (linear, returned), are normalized per channel.
    last = outputs.loc if name.endswith('encoder') else outputs
    for normalized in (first, last):
      axes = tuple(range(len(normalized.shape) - 1))
      self.assertAllClose(np.mean(normalized, axes), np.zeros(normalized.shape[-1]), atol=1e-4)
      self.assertAllClose(np.std(normalized, axes), np.ones(normalized.shape[-1]), atol=1e-3)
    initialized = _variable_values(network)
    for copies in initialized.values():  # Every replica holds the same values.
      self.assertLen(copies, 2)
      self.assertAllEqual(copies[0], copies[1])

    # Idempotence: later calls, eager or per replica in a tf.function, assign nothing.
    other = _input(name, 4, size, seed=2, loc=-1., scale=0.5)
    with strategy.scope():
      weight_norm.initialize(network, other)
    step = tf.function(lambda x: strategy.run(network, (x,)))
    step(next(iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(other)))))
    after = _variable_values(network)
    self.assertEqual(after.keys(), initialized.keys())
    for key, copies in initialized.items():
      for before_copy, after_copy in zip(copies, after[key]):
        self.assertAllEqual(before_copy, after_copy, msg=key)

  def test_data_init_does_not_retrace(self):
    # TFP's WeightNorm.call is a tf.function: traced once per layer during the data init, which
    # TensorFlow reported as excessive retracing ("5 out of the last 5 calls to WeightNorm.call").
    network = _make('binary_encoder', (4, 3))
    self.assertGreater(len(weight_norm.weight_norm_layers(network)), 5)
    with self.assertNoLogs('tensorflow', level='WARNING'):
      weight_norm.initialize(network, _input('binary_encoder', 4, (4, 3), seed=1))
    self.assertEmpty(weight_norm.uninitialized_weight_norms(network))

  def test_checkpoint_restore_does_not_reinitialize(self):
    # Two weight-normed layers: a 1x1 stem and the 3x3 head, at a single resolution.
    make = functools.partial(_make, 'resnet_decoder', (4, 3), filters=(5,), blocks=(0,))
    network = make()
    weight_norm.initialize(network, _input('resnet_decoder', 2, (4, 3), seed=1, stages=1))
    path = tf.train.Checkpoint(network=network).save(os.path.join(self.get_temp_dir(), 'ckpt'))
    saved = [name for name, _ in tf.train.list_variables(path)]
    self.assertLen([name for name in saved if '/initialized/' in name], 2)
    other = _input('resnet_decoder', 2, (4, 3), seed=2, loc=3., scale=5., stages=1)
    expected = _flat(network(other))

    deferred = make()  # Restore before the variables exist, then build on another batch.
    status = tf.train.Checkpoint(network=deferred).restore(path)
    weight_norm.initialize(deferred, other)
    status.assert_consumed()
    built = make()  # Build, then restore.
    weight_norm.initialize(built, other)
    tf.train.Checkpoint(network=built).restore(path).assert_consumed()
    for restored in (deferred, built):
      for got, want in zip(_flat(restored(other)), expected):
        self.assertAllClose(got, want)

  def test_saved_model_round_trip(self):
    # TFP's WeightNorm alone fails to save a wrapped Conv2DTranspose (the Upsample): the wrapped
    # layer's own trace captures a stale graph tensor.
    network = _make('resnet_decoder', (4, 3), blocks=(0, 0))
    inputs = _input('resnet_decoder', 2, (4, 3))
    weight_norm.initialize(network, inputs)
    module = tf.Module()
    module.network = network
    module.serve = tf.function(network, input_signature=[
        tf.TensorSpec([None, 2, 2, LATENT_CHANNELS])])
    path = os.path.join(self.get_temp_dir(), 'saved_model')
    tf.saved_model.save(module, path)
    loaded = tf.saved_model.load(path)  # Keep a reference: it owns the variables.
    self.assertAllClose(loaded.serve(inputs), network(inputs))

  @parameterized.named_parameters(*CASES)
  def test_gradients_reach_every_variable(self, name, use_weight_norm):
    network, inputs = _initialized(name, use_weight_norm)
    with tf.GradientTape() as tape:
      loss = sum(tf.reduce_sum(tf.square(t)) for t in _flat(network(inputs)))
    gradients = tape.gradient(loss, network.trainable_variables)
    self.assertNotEmpty(gradients)
    for variable, gradient in zip(network.trainable_variables, gradients):
      self.assertIsNotNone(gradient, msg=variable.name)
      self.assertTrue(np.all(np.isfinite(gradient)), msg=variable.name)

  @parameterized.named_parameters(*CASES)
  def test_eager_equals_tf_function(self, name, use_weight_norm):
    network, inputs = _initialized(name, use_weight_norm)
    for eager, graph in zip(_flat(network(inputs)), _flat(tf.function(network)(inputs))):
      # Op by op vs one optimized graph (fused conv + bias + activation): float32 rounding, which
      # the data init on a batch of 2 amplifies (every channel is scaled to +-1 on it).
      self.assertAllClose(eager, graph, rtol=1e-3, atol=1e-3)

  @parameterized.named_parameters(*CASES[:len(NAMES)], CASES[-1])  # All plain, one with wn.
  def test_get_config_round_trip(self, name, use_weight_norm):
    network, inputs = _initialized(name, use_weight_norm)
    config = network.get_config()
    clone = type(network).from_config(config)
    self.assertEqual(clone.get_config(), config)
    weight_norm.initialize(clone, inputs)
    self.assertEqual([v.shape for v in clone.variables], [v.shape for v in network.variables])
    clone.set_weights(network.get_weights())
    for got, want in zip(_flat(clone(inputs)), _flat(network(inputs))):
      self.assertAllClose(got, want)


if __name__ == '__main__':
  tf.test.main()
