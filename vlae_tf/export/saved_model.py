"""The serving module and its SavedModel export (Polyak-averaged weights).

A SavedModel written here is self-contained: it loads with `tf.saved_model.load` in a process that
has never imported vlae_tf (or tf_keras), and `saved_model_cli show --all` lists its signatures.
Every function takes and returns plain tensors; shapes below use N images of [H, W, C] and latents
of shape `latent_shape`:

    encode(images [N,H,W,C] float32, seed=0)      -> {posterior_mean: [N,*latent], z: [N,*latent]}
    decode(z [N,*latent] float32, seed=0)         -> {images: [N,H,W,C]}      x ~ p(x|z)
    sample(num_images [] int32, seed=0)           -> {images: [num_images,H,W,C]}
    log_prob(images, num_samples [] int32, seed=0) -> {log_prob: [N]}  importance-weighted, nats
    pixel_log_prob(images, z)                     -> {pixel_log_prob: [N,H,W,C]}  nats
    metadata()                                    -> {image_shape, latent_shape, num_dims, step,
                                                      data_kind, dataset}

A model without latent variable (the PixelCNN baseline) has no encode or decode, and its
pixel_log_prob takes the images only.

Images are float32 in the model's data kind: binary images in {0, 1}, 8-bit images 0..255.

Input checks. Every function checks its inputs in its own graph, so that they hold in a process
that never imports vlae_tf and in the named signatures (TF Serving): images must be [N, H, W, C] with the model's H, W,
C and hold 0/1 (binary) or integers 0..255 (8-bit); z must be [N, *latent_shape] and finite;
pixel_log_prob's images and z must have the same N; 1 <= num_samples <= MAX_NUM_SAMPLES (2**20),
0 <= num_images <= MAX_NUM_IMAGES (2**16), so that no request runs for hours or allocates without
bound. A bad input
raises tf.errors.InvalidArgumentError whose text holds one line of ours (TensorFlow frames it with
'Graph execution error:' above and the node's name below; the input's values are never printed):

    assertion failed: [log_prob: images must be binary: float32 [N, 28x28x1] with every value 0 or 1
    (model: static_mnist, step 20000); got float32 [4, 32x32x1]]

(one line: the function, the input, the dtype/shape/values expected, the model's dataset and step,
and what was given: dtype, shape, and the range of the values when those are wrong). For this, the
functions' input signatures leave the shapes open (saved_model_cli shows images and z of unknown
rank; `metadata` gives the shapes). In Python calls (`loaded.log_prob(x, 8)`), images may also be
float64, float16, uint8, int32, int64 or bool (tensors or NumPy arrays) and z float64: each has its
own saved concrete function, which checks the values in their own dtype (0.9999999999 is not 1) and
casts them to float32. Other dtypes (int8, uint16, ...) get TensorFlow's "Could not find matching
concrete function" error. The named signatures take float32 only (NumPy arrays of other dtypes are
cast by TensorFlow, tensors are refused with TensorFlow's "expected to be a float tensor").

Seeds. `seed` is an int64 scalar; in Python (`loaded.encode(x)`) it defaults to 0, in the
signatures (`loaded.signatures['encode']`, TF Serving) it must be fed. Random draws are stateless:
the same inputs and the same seed give the same outputs, and different seeds give independent draws.
Each function folds its own salt into the seed, so encode and decode with the same seed do not
share noise.

Batching. `decode` and `sample` run the autoregressive sampler on fixed-size chunks of
`decode_chunk_size` images (the last one padded), with the seed of chunk c = fold_in(seed, c): the
model's sampler needs a static batch size, and the chunks bound the memory of a request. Image i of
a request therefore depends on (seed, i // decode_chunk_size, its position in the chunk). A chunk of
`sample` is what the model's `sample` draws with the chunk's seed (z from the prior, then decoded),
computed through the one trace of the sampler that `decode` uses (tracing the sampler is most of an
export's time).
`log_prob` folds the K importance samples in chunks of `log_prob_chunk_size` (plus single samples
for the remainder) into one logsumexp, exactly the K-sample estimator

    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,

so K is a run-time input and memory does not grow with it.

Layout: <model_dir>/export/<step>/ by default (TF Serving's <base>/<version>). It is written to a
hidden temporary directory beside it and renamed into place, so a reader never sees half an export
(TF Serving ignores names that are not version numbers); an existing export of the same step is
replaced. What a SIGKILL mid-export leaves (hidden `.<step>.tmp-*` / `.<step>.old-*` directories) is
deleted by the next export (`remove_leftovers`; both in writing.py).
"""

import math
import os

from absl import logging
import tensorflow as tf

from vlae_tf.runs import opening
from vlae_tf import seeds
from vlae_tf.export import serving_checks
from vlae_tf.export.writing import remove_leftovers  # pylint: disable=unused-import (public here)
from vlae_tf.export.writing import save_atomically

EXPORT_SUBDIR = 'export'
# The most a request may ask (a request from elsewhere must not hold a server for hours or
# allocate without bound): K of log_prob (256 times the paper's 4096) and images of sample.
MAX_NUM_SAMPLES = 2**20
MAX_NUM_IMAGES = 2**16
_SALTS = {'encode': 1, 'decode': 2, 'sample': 3, 'log_prob': 4}


def _function(python_function, **kwargs):
  """tf.function without autograph: the model's code and the loops here are explicit TensorFlow
  control flow, and autograph's conversion of every layer's call took half of the tracing."""
  return tf.function(python_function, autograph=False, **kwargs)


def _seed(seed, salt):
  """int64 scalar -> int32 [2] stateless seed for one function (the salt first, then the seed)."""
  return seeds.stateless_seed(salt, seed)


class _Untracked:
  """Holds objects out of the SavedModel's object graph: the Keras model (only its variables are
  saved) and the float32 functions that the saved ones call."""

  def __init__(self, model):
    self.model = model
    self.core = {}


class ServingModule(tf.Module):
  """Plain-tensor functions around a VLAE (use the averaged model)."""

  def __init__(self, model, step=0, config_path=None, decode_chunk_size=16,
               log_prob_chunk_size=64, dataset=None, name='vlae'):
    """Wraps `model`.

    Args:
      model: a VLAE with its (averaged) weights.
      step: the training step, reported by `metadata`.
      config_path: the run's config.gin, saved as an asset.
      decode_chunk_size: images per sampler call in `decode` and `sample`.
      log_prob_chunk_size: importance samples per `model.log_likelihood` call.
      dataset: the dataset the model was trained on, reported by `metadata` and named in the
        messages of the input checks.
      name: the module name.
    """
    super().__init__(name=name)
    self._decode_chunk_size = int(decode_chunk_size)
    self._log_prob_chunk_size = int(log_prob_chunk_size)
    self._holder = _Untracked(model)
    # Tracked so that the functions' captured variables are saved.
    self.model_variables = list(model.variables)
    image_shape = tuple(int(d) for d in model.image_shape)
    latent_shape = tuple(int(d) for d in model.latent_shape)
    self._image_shape = image_shape
    self._latent_shape = latent_shape
    self._num_dims = int(model.num_dims)
    self._data_kind = str(model.data_kind)
    self._step = int(step)
    self._dataset = str(dataset or '')
    self._about = (f'(model: {self._dataset}, step {self._step})' if self._dataset else
                   f'(model: {self._data_kind} data, step {self._step})')
    self._checks = serving_checks.InputChecks(image_shape, latent_shape, self._data_kind,
                                              self._about)
    if config_path:
      self.config = tf.saved_model.Asset(config_path)

    # The float32 functions on checked inputs of static shape: the model's graph, saved once.
    images32 = tf.TensorSpec([None, *image_shape], tf.float32)
    latents32 = tf.TensorSpec([None, *latent_shape], tf.float32)
    seed = tf.TensorSpec([], tf.int64, name='seed')
    num_samples = tf.TensorSpec([], tf.int32, name='num_samples')
    core = self._holder.core
    if latent_shape:
      # The autoregressive sampler, traced once for decode and sample: a chunk of
      # decode_chunk_size codes and its int32 [2] seed.
      core['decode_chunk'] = _function(
          lambda z, chunk_seed: self.model.decode(z, chunk_seed),
          input_signature=[tf.TensorSpec([self._decode_chunk_size, *latent_shape], tf.float32),
                           tf.TensorSpec([2], tf.int32)])
      core['encode'] = _function(self._encode, input_signature=[images32, seed])
      core['decode'] = _function(self._decode, input_signature=[latents32, seed])
      core['pixel_log_prob'] = _function(self._pixel_log_prob,
                                        input_signature=[images32, latents32])
    else:  # A PixelCNN without latent variable (a baseline): p(x) only.
      core['pixel_log_prob'] = _function(lambda images: self._pixel_log_prob(images, None),
                                        input_signature=[images32])
    core['log_prob'] = _function(self._log_prob, input_signature=[images32, num_samples, seed])

    # The saved functions: inputs of any shape (and images of any dtype in
    # serving_checks.IMAGE_DTYPES, z in LATENT_DTYPES), checked in-graph so that a bad input fails
    # with one line of ours rather than
    # TensorFlow's binding error (which prints the whole array). `signatures` traces them once
    # per dtype before saving; the float32 traces are the named signatures.
    if latent_shape:
      def encode(images, seed=0):
        images, = self._checks.checked('encode', images=images)
        return core['encode'](images, seed)

      def decode(z, seed=0):
        z, = self._checks.checked('decode', z=z)
        return core['decode'](z, seed)

      def pixel_log_prob(images, z):
        images, z = self._checks.checked('pixel_log_prob', images=images, z=z)
        return core['pixel_log_prob'](images, z)

      self.encode = _function(encode)
      self.decode = _function(decode)
      self.pixel_log_prob = _function(pixel_log_prob)
    else:
      def pixel_log_prob_of_x(images):
        images, = self._checks.checked('pixel_log_prob', images=images)
        return core['pixel_log_prob'](images)

      self.pixel_log_prob = _function(pixel_log_prob_of_x)

    def log_prob(images, num_samples, seed=0):
      images, = self._checks.checked('log_prob', images=images)
      num_samples = tf.convert_to_tensor(num_samples, tf.int32)
      check = serving_checks.assert_that(
          (num_samples >= 1) & (num_samples <= MAX_NUM_SAMPLES), tf.strings.join([
              f'log_prob: num_samples (K, the number of importance samples) must be in 1..'
              f'{MAX_NUM_SAMPLES} {self._about}; got ', tf.strings.as_string(num_samples)]))
      with tf.control_dependencies([check]):
        return core['log_prob'](images, tf.identity(num_samples), seed)

    self.log_prob = _function(log_prob)
    self.sample = _function(
        self._sample, input_signature=[tf.TensorSpec([], tf.int32, name='num_images'), seed])
    self.metadata = _function(self._metadata, input_signature=[])

  @property
  def model(self):
    return self._holder.model

  def _encode(self, images, seed=0):
    posterior_mean, z = self.model.encode(images, _seed(seed, _SALTS['encode']))
    return {'posterior_mean': posterior_mean, 'z': z}

  def _in_chunks(self, count, chunk_fn):
    """Concatenates chunk_fn(c) [S, H, W, C] for the chunks c covering `count` images."""
    size = self._decode_chunk_size
    num_chunks = (count + size - 1) // size
    chunks = tf.map_fn(chunk_fn, tf.range(num_chunks),
                       fn_output_signature=tf.TensorSpec([size, *self._image_shape], tf.float32))
    return tf.reshape(chunks, [-1, *self._image_shape])[:count]  # [count, H, W, C]

  def _decode(self, z, seed=0):
    size = self._decode_chunk_size
    count = tf.shape(z)[0]
    padding = (size - count % size) % size
    padded = tf.concat([z, tf.zeros([padding, *self._latent_shape], z.dtype)], 0)
    chunks = tf.reshape(padded, [-1, size, *self._latent_shape])  # [chunks, S, ...latent]
    base = _seed(seed, _SALTS['decode'])

    def decode_chunk(index):
      chunk_seed = tf.random.experimental.stateless_fold_in(base, index)
      return self._holder.core['decode_chunk'](
          tf.ensure_shape(chunks[index], [size, *self._latent_shape]), chunk_seed)

    return {'images': self._in_chunks(count, decode_chunk)}

  def _sample(self, num_images, seed=0):
    check = serving_checks.assert_that(
        (num_images >= 0) & (num_images <= MAX_NUM_IMAGES), tf.strings.join([
            f'sample: num_images must be in 0..{MAX_NUM_IMAGES} {self._about}; got ',
            tf.strings.as_string(num_images)]))
    with tf.control_dependencies([check]):
      num_images = tf.identity(num_images)
    base = _seed(seed, _SALTS['sample'])

    def sample_chunk(index):
      # What model.sample draws, through the sampler traced for decode (when there is a z).
      return self.model.sample(self._decode_chunk_size,
                               tf.random.experimental.stateless_fold_in(base, index),
                               decode=self._holder.core.get('decode_chunk'))

    return {'images': self._in_chunks(num_images, sample_chunk)}

  def _log_prob(self, images, num_samples, seed=0):
    chunk = self._log_prob_chunk_size
    base = _seed(seed, _SALTS['log_prob'])
    num_chunks = num_samples // chunk
    # log sum_k w_k, accumulated from chunk estimates: log_likelihood(x, n) = log sum_n w - log n.
    total = tf.fill([tf.shape(images)[0]], tf.constant(-float('inf')))

    def add_chunk(index, total):
      estimate = self.model.log_likelihood(
          images, chunk, tf.random.experimental.stateless_fold_in(base, index), chunk_size=chunk)
      return index + 1, tf.reduce_logsumexp(tf.stack([total, estimate + math.log(chunk)]), 0)

    def add_one(index, total):  # The remainder, one sample at a time.
      estimate = self.model.log_likelihood(
          images, 1, tf.random.experimental.stateless_fold_in(base, index), chunk_size=1)
      return index + 1, tf.reduce_logsumexp(tf.stack([total, estimate]), 0)

    _, total = tf.while_loop(lambda index, _: index < num_chunks, add_chunk,
                             (tf.constant(0), total))
    _, total = tf.while_loop(lambda index, _: index < num_samples, add_one,
                             (num_chunks * chunk, total))
    return {'log_prob': total - tf.math.log(tf.cast(num_samples, tf.float32))}

  def _pixel_log_prob(self, images, z):
    return {'pixel_log_prob': self.model.pixel_log_prob(images, z)}

  def _metadata(self):
    return {
        'image_shape': tf.constant(self._image_shape, tf.int32),
        'latent_shape': tf.constant(self._latent_shape, tf.int32),
        'num_dims': tf.constant(self._num_dims, tf.int32),
        'step': tf.constant(self._step, tf.int64),
        'data_kind': tf.constant(self._data_kind),
        'dataset': tf.constant(self._dataset),
    }

  def _input_specs(self, image_dtype=tf.float32, latent_dtype=tf.float32):
    """{function name: its input TensorSpecs} for images and z of the given dtypes."""
    seed = tf.TensorSpec([], tf.int64, name='seed')
    images = tf.TensorSpec(None, image_dtype, name='images')
    z = tf.TensorSpec(None, latent_dtype, name='z')
    specs = {
        'encode': [images, seed],
        'decode': [z, seed],
        'sample': [],
        'log_prob': [images, tf.TensorSpec([], tf.int32, name='num_samples'), seed],
        'pixel_log_prob': [images, z] if self._latent_shape else [images],
        'metadata': [],
    }
    return {name: spec for name, spec in specs.items() if hasattr(self, name)}

  def signatures(self):
    """The concrete functions saved as named signatures: float32 inputs of any shape.

    Also traces the functions for the other dtypes of images (IMAGE_DTYPES) and z
    (LATENT_DTYPES), which `tf.saved_model.save` then saves as well: call it before saving.
    """
    for image_dtype in serving_checks.IMAGE_DTYPES:
      for latent_dtype in serving_checks.LATENT_DTYPES:
        for name, specs in self._input_specs(image_dtype, latent_dtype).items():
          if specs:
            getattr(self, name).get_concrete_function(*specs)
    return {name: getattr(self, name).get_concrete_function(*specs)
            for name, specs in self._input_specs().items()}


def export(model_dir, export_dir=None, decode_chunk_size=16, checkpoint=None):
  """Exports a checkpoint's averaged weights as a SavedModel.

  Rebuilds the model from <model_dir>/config.gin (this clears any gin config already parsed).
  Exports the newest intact checkpoint (a damaged newer one is named in a warning), or
  `checkpoint`.

  Args:
    model_dir: the run directory.
    export_dir: the base directory (default <model_dir>/export); the SavedModel goes to
      <export_dir>/<step>.
    decode_chunk_size: images per sampler call in the exported `decode` and `sample`.
    checkpoint: a checkpoint prefix (<model_dir>/ckpt-N) or a step N; default: the newest intact.

  Returns:
    The SavedModel directory.
  """
  run = opening.open_run(model_dir, checkpoint)
  module = ServingModule(run.model, step=run.step, config_path=run.config_path,
                         decode_chunk_size=decode_chunk_size, dataset=run.dataset)
  path = os.path.join(export_dir or os.path.join(model_dir, EXPORT_SUBDIR), str(run.step))
  logging.info('Exporting %s (step %d): tracing and writing the signatures (encode, decode, '
               'sample, log_prob, pixel_log_prob)...', run.checkpoint_path, run.step)
  save_atomically(module, path)  # bin/export prints the path.
  return path
