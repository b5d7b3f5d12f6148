"""Test doubles shared by several test modules."""

import os
import pathlib
import types

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2
import tensorflow as tf
import tf_keras as keras

from vlae_tf.cli import user_errors
from vlae_tf import distribution
from vlae_tf.models import vlae as model_lib
from vlae_tf.training import actions
from vlae_tf.training import trainer as trainer_lib


def scalars(directory, tag):
  """{step: value} of a scalar summary over the event files in `directory` (later files win)."""
  values = {}
  for path in sorted(pathlib.Path(directory).glob('events.out.tfevents.*'), key=os.path.getmtime):
    for record in tf.data.TFRecordDataset(str(path)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


class ConstantWeights:
  """A model stand-in whose importance weights all equal exp(-5): the K-sample estimate is -5 for
  every K exactly when the chunk arithmetic counts K samples."""

  image_shape = (2, 3, 1)
  latent_shape = (2,)
  num_dims = 6
  data_kind = 'binary'
  variables = ()

  def log_likelihood(self, images, num_samples, seed, chunk_size=64):
    del num_samples, seed, chunk_size
    return tf.fill([tf.shape(images)[0]], -5.0)


class SamplesAsTheVLAE:
  """`sample` and `sample_prior` are `VLAE`'s own, drawing z from the double's
  `prior_distribution()` and decoding it with the double's `decode` (or the caller's traced one)."""

  has_latent = True
  sample = model_lib.VLAE.sample
  sample_prior = model_lib.VLAE.sample_prior


def one_line_error(run):
  """Runs `run` as a binary's main does (cli/user_errors.py); returns its one-line error message."""
  with pytest.raises(SystemExit) as raised:
    user_errors.guard(run)
  message = str(raised.value.code)
  assert message.startswith('error: ') and '\n' not in message, message
  return message


def two_replicas():
  """MirroredStrategy over the two logical CPU devices of conftest.py."""
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


def binary_images(batch, shape=(5, 7, 3), seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant((rng.uniform(size=(batch,) + shape) < 0.4).astype(np.float32))


def deterministic_trainer(strategy, free_bits_lambda=0.0, ema_decay=0.9, learning_rate=0.01,
                          global_batch_size=4):
  """A `trainer.Trainer` of two `DeterministicVLAE`s with fixed weights, built and averaged."""
  with strategy.scope():
    model = DeterministicVLAE()
    averaged_model = DeterministicVLAE()
    optimizer = keras.optimizers.Adamax(learning_rate)
  trainer = trainer_lib.Trainer(strategy, model, averaged_model, optimizer,
                                global_batch_size=global_batch_size,
                                free_bits_lambda=free_bits_lambda, ema_decay=ema_decay, seed=0)
  with strategy.scope():
    model.initialize(binary_images(1))
    model_lib.create_variables(averaged_model)
    fill_deterministically(model)
    trainer.build()
    trainer.ema.copy()
  return trainer


# -- The train loop's controller, with a fake trainer and recording actions (loop_test.py,
# time_limits_test.py).


class FakeTrainer:
  """Counts steps; the steps in `bad` are skipped (not finite)."""

  def __init__(self, step=0, bad=()):
    self.step = tf.Variable(step, dtype=tf.int64)
    self.consecutive_bad_steps = tf.Variable(0, dtype=tf.int64)
    self.bad = set(bad)
    self.chunks = []

  def train_loop(self, iterator, num_steps, max_consecutive_bad_steps=None):
    del iterator
    self.chunks.append(num_steps)
    bad_steps = 0
    for _ in range(num_steps):
      self.step.assign_add(1)
      if int(self.step.numpy()) in self.bad:
        bad_steps += 1
        self.consecutive_bad_steps.assign_add(1)
        if (max_consecutive_bad_steps is not None and
            self.consecutive_bad_steps >= max_consecutive_bad_steps):
          break
      else:
        self.consecutive_bad_steps.assign(0)
    return dict(loss=1.0, elbo=-1.0, kl=0.0, log_px_z=-1.0, gradient_norm=1.0, kl_weight=1.0,
                bad_steps=float(bad_steps))


class Recorder(actions.Action):
  """Records its hook calls, in one list shared by several recorders."""

  def __init__(self, name, calls, on_call=None):
    self.name = name
    self.calls = calls
    self.on_call = on_call

  def start(self, chunk):
    self.calls.append((self.name, 'start', chunk.step))

  def __call__(self, chunk):
    self.calls.append((self.name, 'call', chunk.step))
    if self.on_call is not None:
      self.on_call(chunk)


def no_stop():
  return types.SimpleNamespace(signum=None, requested=False)
