"""Tests of training.py.

Polyak averaging and loss scaling under 2 replicas (with a noiseless contract double, so that
replica seeds do not matter), the data order, and a checkpoint resume of the real VLAE (tiny
settings, real static MNIST, 2 replicas) that reaches the state of an uninterrupted run.
"""

import shutil

from absl.testing import parameterized
import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
import tensorflow as tf
import tf_keras as keras

from vlae_tf import batching
from vlae_tf import cli
from vlae_tf import distribution
from vlae_tf import model as model_lib
from vlae_tf import trainer as trainer_lib
from vlae_tf import training



def two_replicas():
  return distribution.make_strategy(['/cpu:0', '/cpu:1'])


def one_replica():
  return distribution.make_strategy(['/cpu:0'])


class DeterministicVLAE(keras.Model):
  """A contract double without noise, so that gradients do not depend on the replica seeds.

  z = linear(x) (the "posterior" is a point mass), p(x|z) is Bernoulli(sigmoid(linear(z))) and
  the "KL" is 0.5 |z|^2 (that of N(z, .) against N(0, I) up to a constant). It has one
  non-trainable variable, which the averaging must copy rather than average.
  """

  def __init__(self, image_shape=(5, 7, 3), latent_size=4):
    super().__init__()
    self.image_shape = tuple(image_shape)
    self.num_dims = int(np.prod(image_shape))
    self.data_kind = 'binary'
    self.latent_shape = (latent_size,)
    self.encoder = keras.layers.Dense(latent_size)
    self.decoder = keras.layers.Dense(self.num_dims)
    self.offset = tf.Variable(0.0, trainable=False, name='offset')

  def elbo(self, x, seed, training=None):
    del seed, training
    pixels = tf.reshape(x, [-1, self.num_dims])  # [B, D]
    z = self.encoder(pixels)  # [B, latent]
    logits = self.decoder(z) + self.offset  # [B, D]
    log_px_z = -tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=pixels, logits=logits), axis=-1)
    kl = 0.5 * tf.reduce_sum(tf.square(z), axis=-1)
    return {'elbo': log_px_z - kl, 'log_px_z': log_px_z, 'kl': kl}

  def initialize(self, x):
    return self.elbo(x, tf.zeros([2], tf.int32))


def fill_deterministically(model, seed=0):
  """Sets every variable to fixed values (the same for every strategy)."""
  rng = np.random.default_rng(seed)
  for variable in model.variables:
    variable.assign(rng.normal(size=variable.shape).astype(np.float32) * 0.3)


def images(batch, shape=(5, 7, 3), seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant((rng.uniform(size=(batch,) + shape) < 0.4).astype(np.float32))


def make_trainer(strategy, free_bits_lambda=0.0, ema_decay=0.9, learning_rate=0.01,
                 global_batch_size=4):
  with strategy.scope():
    model = DeterministicVLAE()
    averaged_model = DeterministicVLAE()
    optimizer = keras.optimizers.Adamax(learning_rate)
  trainer = trainer_lib.Trainer(strategy, model, averaged_model, optimizer,
                             global_batch_size=global_batch_size,
                             free_bits_lambda=free_bits_lambda, ema_decay=ema_decay, seed=0)
  with strategy.scope():
    model.initialize(images(1))
    model_lib.create_variables(averaged_model)
    fill_deterministically(model)
    trainer.build()
    trainer.ema.copy()
  return trainer


class PolyakAveragingTest(tf.test.TestCase):

  def test_averages_match_hand_computed_ema_on_both_replicas(self):
    decay = 0.9
    trainer = make_trainer(two_replicas(), ema_decay=decay)
    dataset = tf.data.Dataset.from_tensor_slices(images(12, seed=1)).batch(4).repeat()
    iterator = iter(dataset)
    weights = [v.numpy() for v in trainer.model.variables]
    expected = [w.copy() for w in weights]
    for _ in range(3):
      trainer.train_loop(iterator, 1)
      weights = [v.numpy() for v in trainer.model.variables]
      expected = [decay * e + (1 - decay) * w if v.trainable else w
                  for e, w, v in zip(expected, weights, trainer.model.variables)]
    # The model moved, so the test is not vacuous.
    self.assertGreater(
        max(np.abs(a - w).max() for a, w in zip(expected, weights)), 1e-4)
    for average, want in zip(trainer.averaged_model.variables, expected):
      copies = trainer.strategy.experimental_local_results(average)
      self.assertLen(copies, 2)
      for copy in copies:
        self.assertAllClose(copy.numpy(), want, rtol=1e-6, atol=1e-6)

  def test_warmup_uses_the_smaller_early_decay(self):
    decay = 0.9
    trainer = make_trainer(two_replicas(), ema_decay=decay)
    trainer.ema_warmup = True
    iterator = iter(tf.data.Dataset.from_tensor_slices(images(12, seed=2)).batch(4).repeat())
    expected = [v.numpy() for v in trainer.model.variables]
    for step in range(1, 3):
      trainer.train_loop(iterator, 1)
      weights = [v.numpy() for v in trainer.model.variables]
      step_decay = min(decay, (1 + step) / (10 + step))  # 0.18, then 0.25.
      expected = [step_decay * e + (1 - step_decay) * w if v.trainable else w
                  for e, w, v in zip(expected, weights, trainer.model.variables)]
    for average, want in zip(trainer.averaged_model.variables, expected):
      for copy in trainer.strategy.experimental_local_results(average):
        self.assertAllClose(copy.numpy(), want, rtol=1e-5, atol=1e-6)

  def test_loop_of_three_steps_equals_three_single_steps(self):
    looped = make_trainer(two_replicas())
    stepped = make_trainer(two_replicas())
    batches = tf.data.Dataset.from_tensor_slices(images(12, seed=2)).batch(4)
    looped.train_loop(iter(batches), 3)
    iterator = iter(batches)
    for _ in range(3):
      stepped.train_loop(iterator, 1)
    self.assertEqual(int(looped.step.numpy()), 3)
    for a, b in zip(looped.averaged_model.variables, stepped.averaged_model.variables):
      self.assertAllClose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)

  def test_mismatched_models_are_refused(self):
    small = DeterministicVLAE(latent_size=2)
    large = DeterministicVLAE(latent_size=3)
    small.initialize(images(1))
    large.initialize(images(1))
    with self.assertRaisesRegex(ValueError, 'Cannot average'):
      trainer_lib.ExponentialMovingAverage(small.variables, large.variables, 0.9)


class LossScalingTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('kl_above_threshold', 0.0),
      ('kl_below_threshold', 10.0))
  def test_two_replicas_give_the_one_replica_gradient(self, free_bits_lambda):
    batch = images(4, seed=3)
    one = make_trainer(one_replica(), free_bits_lambda)
    two = make_trainer(two_replicas(), free_bits_lambda)
    gradients_one, loss_one = one.gradients(batch)
    gradients_two, loss_two = two.gradients(batch)
    self.assertAllClose(loss_one, loss_two, rtol=1e-5)
    for g1, g2 in zip(gradients_one, gradients_two):
      self.assertAllClose(g1, g2, rtol=1e-5, atol=1e-6)
    # The global loss is mean reconstruction + max(mean KL, lambda * D).
    outputs = one.model.elbo(batch, None)
    threshold = free_bits_lambda * one.model.num_dims
    want = (-np.mean(outputs['log_px_z']) + max(np.mean(outputs['kl']), threshold))
    self.assertAllClose(loss_two, want, rtol=1e-5)

  def test_steps_agree_across_replica_counts(self):
    one = make_trainer(one_replica())
    two = make_trainer(two_replicas())
    batches = tf.data.Dataset.from_tensor_slices(images(8, seed=4)).batch(4)
    metrics_one = one.train_loop(iter(batches), 2)
    metrics_two = two.train_loop(iter(batches), 2)
    for key in ('loss', 'elbo', 'kl', 'log_px_z', 'gradient_norm'):
      self.assertAllClose(metrics_one[key], metrics_two[key], rtol=1e-5)
    for a, b in zip(one.model.variables, two.model.variables):
      self.assertAllClose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)

  def test_batch_must_split_evenly(self):
    trainer = make_trainer(two_replicas(), global_batch_size=3)
    with self.assertRaisesRegex(ValueError, 'multiple of the number of replicas'):
      trainer.train_loop(
          iter(tf.data.Dataset.from_tensor_slices(images(3)).batch(3, drop_remainder=True)), 1)


class DataTest(tf.test.TestCase):

  def test_resumed_order_equals_uninterrupted_order(self):
    numbers = tf.data.Dataset.range(10).map(lambda i: tf.fill([1, 1, 1], tf.cast(i, tf.float32)))
    full = batching.training_batches(numbers, 4, seed=3)
    resumed = batching.training_batches(numbers, 4, seed=3, start_step=4)
    want = [b.numpy().ravel().tolist() for b in full.take(9)][4:]
    got = [b.numpy().ravel().tolist() for b in resumed.take(5)]
    self.assertEqual(got, want)
    # Every epoch is a permutation, and epochs differ.
    flat = sum([b.numpy().ravel().tolist() for b in full.take(5)], [])
    self.assertCountEqual(flat[:10], range(10))
    self.assertCountEqual(flat[10:20], range(10))
    self.assertNotEqual(flat[:10], flat[10:20])

  def test_strided_subset_spans_the_dataset(self):
    numbers = tf.data.Dataset.range(100)
    self.assertEqual(list(batching.strided_subset(numbers, 4).as_numpy_iterator()),
                     [12, 37, 62, 87])
    self.assertLen(list(batching.strided_subset(numbers, 1000)), 100)

  def test_strided_subset_reaches_the_end_for_every_size(self):
    for size, count in [(10, 3), (100, 7), (10000, 3000), (10000, 6000), (7, 7), (7, 10)]:
      subset = list(batching.strided_subset(tf.data.Dataset.range(size), count)
                    .as_numpy_iterator())
      want = ([(2 * i + 1) * size // (2 * count) for i in range(count)] if count < size
              else list(range(size)))
      self.assertEqual(subset, want)
      self.assertEqual(subset, batching.subset_indices(size, count).tolist())
      if count < size:  # The first and last slices are both represented.
        self.assertLess(subset[0], size / count)
        self.assertGreaterEqual(subset[-1], size - size / count)
    self.assertEqual(int(batching.strided_subset(tf.data.Dataset.range(10), 3).cardinality()), 3)

  def test_distributed_evaluator_per_example_values_in_dataset_order(self):
    strategy = two_replicas()
    data = tf.data.Dataset.from_tensor_slices(tf.reshape(tf.range(7.0), [7, 1, 1, 1]))
    evaluator = distribution.DistributedEvaluator(
        strategy, lambda x, seed: {'value': 10.0 * tf.reshape(x, [-1])}, per_example=True)
    totals, values = evaluator(batching.padded_batches(data, 4))
    self.assertEqual(totals['count'], 7)
    self.assertAllClose(values['value'], 10.0 * np.arange(7.0))

  def test_padded_batches_have_weights(self):
    data = tf.data.Dataset.from_tensor_slices(tf.ones([5, 2, 3, 1]))
    batches = list(batching.padded_batches(data, 4))
    self.assertLen(batches, 2)
    self.assertEqual(batches[1][0].shape, (4, 2, 3, 1))
    self.assertAllEqual(batches[1][1], [1, 0, 0, 0])
    self.assertAllEqual(batches[1][0][1:], tf.zeros([3, 2, 3, 1]))

  def test_distributed_evaluator_ignores_padding(self):
    strategy = two_replicas()
    data = tf.data.Dataset.from_tensor_slices(tf.reshape(tf.range(5.0), [5, 1, 1, 1]))
    evaluator = distribution.DistributedEvaluator(
        strategy, lambda x, seed: {'value': tf.reshape(x, [-1])})
    totals = evaluator(batching.padded_batches(data, 4))
    means, errors = distribution.means_from_sums(totals)
    self.assertEqual(totals['count'], 5)
    self.assertAllClose(means['value'], 2.0)
    self.assertAllClose(errors['value'], np.std(np.arange(5.0)) / np.sqrt(5))


# ---------------------------------------------------------------------------------------------
# End to end: the real VLAE, tiny, on real static MNIST, 2 replicas.


def tiny_run_config(**train_bindings):
  """The static MNIST VLAE shrunk by gin/testing/tiny.gin, plus `train` bindings."""
  bindings = dict(batch_size=4, summary_every=1, checkpoint_every=2, eval_every=0,
                  eval_examples=4, num_summary_images=0, max_checkpoints_to_keep=5)
  bindings.update(train_bindings)
  cli.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'],
                [f'train.{key} = {value!r}' for key, value in bindings.items()])


def read_checkpoint(path):
  reader = tf.train.load_checkpoint(path)
  names = [name for name in reader.get_variable_to_shape_map()
           if name.endswith('.ATTRIBUTES/VARIABLE_VALUE')]
  return {name: reader.get_tensor(name) for name in names}


@pytest.mark.slow
def test_resume_reaches_the_uninterrupted_state(shared_data, tmp_path):
  """Run A trains 4 steps (checkpoints at 2 and 4); run B starts from A's step-2 checkpoint alone,
  as if A had been killed after it, and must reach A's step-4 state: weights, averages, optimizer.
  """
  data_dir = str(shared_data)
  uninterrupted = tmp_path / 'uninterrupted'
  tiny_run_config(train_steps=4, eval_examples=4, num_summary_images=2)
  validation = training.train(str(uninterrupted), data_dir=data_dir, strategy=two_replicas())

  resumed = tmp_path / 'resumed'
  resumed.mkdir()
  for path in uninterrupted.glob('ckpt-2.*'):
    shutil.copy(path, resumed / path.name)
  (resumed / 'checkpoint').write_text('model_checkpoint_path: "ckpt-2"\n'
                                      'all_model_checkpoint_paths: "ckpt-2"\n')
  tiny_run_config(train_steps=4, eval_examples=0)
  training.train(str(resumed), data_dir=data_dir, strategy=two_replicas())

  want = read_checkpoint(str(uninterrupted / 'ckpt-4'))
  got = read_checkpoint(tf.train.latest_checkpoint(str(resumed)))
  assert set(want) == set(got)
  assert any(name.startswith('averaged_model/') for name in want)
  assert any(name.startswith('optimizer/') for name in want)
  before = read_checkpoint(str(uninterrupted / 'ckpt-2'))
  assert any(not np.array_equal(before[name], want[name]) for name in want)
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
  assert int(want['step/.ATTRIBUTES/VARIABLE_VALUE']) == 4

  # The run directory has what eval/sample/export need, and the summaries.
  config = (uninterrupted / 'config.gin').read_text()
  assert "train.dataset = 'static_mnist'" in config
  assert 'VLAE.' in config
  assert 'VLAE.' in (uninterrupted / 'operative_config.gin').read_text()
  assert list((uninterrupted / 'train').glob('events.out.tfevents.*'))
  assert list((uninterrupted / 'validation').glob('events.out.tfevents.*'))
  tags = summary_tags(uninterrupted / 'train')
  assert {'elbo_nats', 'kl_nats', 'kl_bits', 'reconstruction_nats', 'nll_bound_bits_per_dim',
          'learning_rate', 'gradient_norm', 'examples_per_second',
          'gin/operative_config'} <= tags, tags
  assert {'elbo_nats', 'samples', 'reconstructions'} <= summary_tags(uninterrupted / 'validation')
  assert np.isfinite(validation['elbo'])
  # Images at summary steps, not only at validation (the first, traced at step 1, and the last),
  # 4x the grid: 2 samples on a 1x2 grid of 28x28 tiles with 1-pixel borders are 30x59.
  images = summary_images(uninterrupted / 'validation')
  assert {1, 4} <= set(images['samples']), sorted(images['samples'])
  assert images['samples'][4].shape == (4 * 30, 4 * 59, 1)
  assert images['reconstructions'][4].shape == (4 * 30, 4 * (4 * 29 + 1), 1)
  # The hparams dashboard's row of the run.
  hparams = run_hparams(uninterrupted)
  assert hparams['dataset'] == 'static_mnist' and hparams['model'] == 'VLAE'
  assert hparams['decoder'] == 'DepthLimitedPixelCNN' and hparams['latent_size'] == 3
  assert hparams['batch_size'] == 4 and hparams['train_steps'] == 4


def summary_images(directory):
  """{tag: {step: uint8 image}} of the image summaries in `directory`."""
  images = {}
  for path in directory.glob('events.out.tfevents.*'):
    for record in tf.data.TFRecordDataset(str(path)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == 'images':
          png = tf.make_ndarray(value.tensor)[2]
          images.setdefault(value.tag, {})[event.step] = tf.io.decode_png(png).numpy()
  return images


def run_hparams(model_dir):
  """{name: value} of the hparams session written in model_dir (its root run)."""
  for path in model_dir.glob('events.out.tfevents.*'):
    for record in tf.data.TFRecordDataset(str(path)):
      for value in event_pb2.Event.FromString(record.numpy()).summary.value:
        if value.tag == hparams_metadata.SESSION_START_INFO_TAG:
          info = hparams_metadata.parse_session_start_info_plugin_data(
              value.metadata.plugin_data.content)
          return {name: getattr(item, item.WhichOneof('kind'))
                  for name, item in info.hparams.items()}
  raise AssertionError(f'no hparams in {model_dir}')


def summary_tags(directory):
  tags = set()
  for path in directory.glob('events.out.tfevents.*'):
    for record in tf.data.TFRecordDataset(str(path)):
      event = event_pb2.Event.FromString(record.numpy())
      tags.update(value.tag for value in event.summary.value)
  return tags


@pytest.mark.slow
def test_without_validation_the_validation_split_is_not_read(shared_data, tmp_path):
  """shared/data's CIFAR-10 holds one training batch, so it has no 'valid' split."""
  cli.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'],
                ['train.train_steps = 1', 'train.batch_size = 2', 'train.eval_examples = 0',
                 'train.num_summary_images = 0'])
  training.train(str(tmp_path / 'run'), data_dir=str(shared_data), strategy=one_replica())
  assert tf.train.latest_checkpoint(str(tmp_path / 'run')).endswith('ckpt-1')


@pytest.mark.slow
def test_model_without_latent_trains_through_validation_and_image_summaries(shared_data, tmp_path):
  """The PixelCNN without z (Table 3's baseline) has no encode: its validation summaries are
  samples only (its first validation, at step 5,000 of a reproduce run, once crashed there)."""
  cli.parse_gin(['dynamic_mnist_pixelcnn.gin', 'testing/tiny.gin'],
                ['train.train_steps = 2', 'train.batch_size = 2', 'train.eval_every = 1',
                 'train.eval_examples = 2', 'train.num_summary_images = 2',
                 'train.checkpoint_every = 2'])
  run = tmp_path / 'run'
  validation = training.train(str(run), data_dir=str(shared_data), strategy=one_replica())
  assert np.isfinite(validation['elbo'])
  assert 'samples' in summary_tags(run / 'validation')
  assert tf.train.latest_checkpoint(str(run)).endswith('ckpt-2')
