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
                                                      data_kind}

A model without latent variable (the PixelCNN baseline) has no encode or decode, and its
pixel_log_prob takes the images only.

Images are float32 in the model's data kind: binary images in {0, 1}, 8-bit images 0..255.
Every function checks its inputs (`tf.debugging` asserts, an InvalidArgumentError whose message
names the input and the values expected): images must hold 0/1 (binary) or integers 0..255 (8-bit),
z must be finite, num_images >= 0 and num_samples >= 1. Shapes and dtypes are checked by the
signatures themselves ([N, H, W, C] float32 with the model's H, W, C; see `metadata`).

Seeds. `seed` is an int64 scalar; in Python (`loaded.encode(x)`) it defaults to 0, in the
signatures (`loaded.signatures['encode']`, TF Serving) it must be fed. Random draws are stateless:
the same inputs and the same seed give the same outputs, and different seeds give independent draws.
Each function folds its own salt into the seed, so encode and decode with the same seed do not
share noise.

Batching. `decode` and `sample` run the autoregressive sampler on fixed-size chunks of
`decode_chunk_size` images (the last one padded), with the seed of chunk c = fold_in(seed, c): the
model's sampler needs a static batch size, and the chunks bound the memory of a request. Image i of
a request therefore depends on (seed, i // decode_chunk_size, its position in the chunk).
`log_prob` folds the K importance samples in chunks of `log_prob_chunk_size` (plus single samples
for the remainder) into one logsumexp, exactly the K-sample estimator

    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,

so K is a run-time input and memory does not grow with it.

Layout: <model_dir>/export/<step>/ by default (TF Serving's <base>/<version>). It is written to a
hidden temporary directory beside it and renamed into place, so a reader never sees half an export
(TF Serving ignores names that are not version numbers); an existing export of the same step is
replaced. What a SIGKILL mid-export leaves (hidden `.<step>.tmp-*` / `.<step>.old-*` directories) is
deleted by the next export (`remove_leftovers`).
"""

import math
import os
import re
import shutil
import socket
import tempfile

from absl import logging
import tensorflow as tf

from vlae_tf import checkpoints
from vlae_tf import files
from vlae_tf import run_directory
from vlae_tf import seeds

EXPORT_SUBDIR = 'export'
_SALTS = {'encode': 1, 'decode': 2, 'sample': 3, 'log_prob': 4}


def _seed(seed, salt):
  """int64 scalar -> int32 [2] stateless seed for one function (the salt first, then the seed)."""
  return seeds.stateless_seed(salt, seed)


class _Untracked:
  """Holds the Keras model out of the SavedModel's object graph: only its variables are saved."""

  def __init__(self, model):
    self.model = model


class ServingModule(tf.Module):
  """Plain-tensor functions around a VLAE (use the averaged model)."""

  def __init__(self, model, step=0, config_path=None, decode_chunk_size=16,
               log_prob_chunk_size=64, name='vlae'):
    """Wraps `model`.

    Args:
      model: a VLAE with its (averaged) weights.
      step: the training step, reported by `metadata`.
      config_path: the run's config.gin, saved as an asset.
      decode_chunk_size: images per sampler call in `decode` and `sample`.
      log_prob_chunk_size: importance samples per `model.log_likelihood` call.
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
    if config_path:
      self.config = tf.saved_model.Asset(config_path)

    images = tf.TensorSpec([None, *image_shape], tf.float32, name='images')
    latents = tf.TensorSpec([None, *latent_shape], tf.float32, name='z')
    seed = tf.TensorSpec([], tf.int64, name='seed')
    if latent_shape:
      self.encode = tf.function(self._encode, input_signature=[images, seed])
      self.decode = tf.function(self._decode, input_signature=[latents, seed])
      self.pixel_log_prob = tf.function(self._pixel_log_prob, input_signature=[images, latents])
    else:  # A PixelCNN without latent variable (a baseline): p(x) only.
      self.pixel_log_prob = tf.function(lambda images: self._pixel_log_prob(images, None),
                                        input_signature=[images])
    self.sample = tf.function(
        self._sample, input_signature=[tf.TensorSpec([], tf.int32, name='num_images'), seed])
    self.log_prob = tf.function(
        self._log_prob,
        input_signature=[images, tf.TensorSpec([], tf.int32, name='num_samples'), seed])
    self.metadata = tf.function(self._metadata, input_signature=[])

  @property
  def model(self):
    return self._holder.model

  def _check_images(self, images):
    """images, after asserting that their values are valid pixels of the model's data kind."""
    shape = 'x'.join(str(d) for d in self._image_shape)
    if self._data_kind == 'binary':
      valid = tf.reduce_all(tf.logical_or(tf.equal(images, 0.0), tf.equal(images, 1.0)))
      message = (f'images must be binary: float32 [N, {shape}] with every value 0 or 1 '
                 '(binarize with x > 0.5)')
    else:
      valid = tf.reduce_all(tf.logical_and(
          tf.logical_and(images >= 0.0, images <= 255.0), tf.equal(images, tf.round(images))))
      message = (f'images must be 8-bit: float32 [N, {shape}] holding integers 0..255 (not '
                 'scaled to [0, 1] or [-1, 1])')
    with tf.control_dependencies([tf.debugging.Assert(valid, [message])]):
      return tf.identity(images)

  def _check_latents(self, z):
    return tf.debugging.assert_all_finite(
        z, f'z must be finite: float32 [N, {"x".join(str(d) for d in self._latent_shape)}]')

  def _encode(self, images, seed=0):
    images = self._check_images(images)
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
    z = self._check_latents(z)
    size = self._decode_chunk_size
    count = tf.shape(z)[0]
    padding = (size - count % size) % size
    padded = tf.concat([z, tf.zeros([padding, *self._latent_shape], z.dtype)], 0)
    chunks = tf.reshape(padded, [-1, size, *self._latent_shape])  # [chunks, S, ...latent]
    base = _seed(seed, _SALTS['decode'])

    def decode_chunk(index):
      chunk_seed = tf.random.experimental.stateless_fold_in(base, index)
      return self.model.decode(tf.ensure_shape(chunks[index], [size, *self._latent_shape]),
                               chunk_seed)

    return {'images': self._in_chunks(count, decode_chunk)}

  def _sample(self, num_images, seed=0):
    with tf.control_dependencies([tf.debugging.assert_non_negative(
        num_images, message='num_images must be >= 0')]):
      num_images = tf.identity(num_images)
    base = _seed(seed, _SALTS['sample'])

    def sample_chunk(index):
      return self.model.sample(self._decode_chunk_size,
                               tf.random.experimental.stateless_fold_in(base, index))

    return {'images': self._in_chunks(num_images, sample_chunk)}

  def _log_prob(self, images, num_samples, seed=0):
    images = self._check_images(images)
    chunk = self._log_prob_chunk_size
    base = _seed(seed, _SALTS['log_prob'])
    num_samples = tf.cast(num_samples, tf.int32)
    with tf.control_dependencies([tf.debugging.assert_positive(
        num_samples, message='num_samples (importance samples) must be >= 1')]):
      num_samples = tf.identity(num_samples)
    num_chunks = num_samples // chunk
    # log sum_k w_k, accumulated from chunk estimates: log_likelihood(x, n) = log sum_n w - log n.
    total = tf.fill([tf.shape(images)[0]], tf.constant(-float('inf')))
    for index in tf.range(num_chunks):
      estimate = self.model.log_likelihood(
          images, chunk, tf.random.experimental.stateless_fold_in(base, index), chunk_size=chunk)
      total = tf.reduce_logsumexp(tf.stack([total, estimate + math.log(chunk)]), 0)
    for index in tf.range(num_chunks * chunk, num_samples):  # The remainder, one at a time.
      estimate = self.model.log_likelihood(
          images, 1, tf.random.experimental.stateless_fold_in(base, index), chunk_size=1)
      total = tf.reduce_logsumexp(tf.stack([total, estimate]), 0)
    return {'log_prob': total - tf.math.log(tf.cast(num_samples, tf.float32))}

  def _pixel_log_prob(self, images, z):
    images = self._check_images(images)
    if z is not None:
      z = self._check_latents(z)
    return {'pixel_log_prob': self.model.pixel_log_prob(images, z)}

  def _metadata(self):
    return {
        'image_shape': tf.constant(self._image_shape, tf.int32),
        'latent_shape': tf.constant(self._latent_shape, tf.int32),
        'num_dims': tf.constant(self._num_dims, tf.int32),
        'step': tf.constant(self._step, tf.int64),
        'data_kind': tf.constant(self._data_kind),
    }

  def signatures(self):
    """The concrete functions saved as named signatures."""
    names = ('encode', 'decode', 'sample', 'log_prob', 'pixel_log_prob', 'metadata')
    return {name: getattr(self, name).get_concrete_function()
            for name in names if hasattr(self, name)}


def _owner_tag():
  """<host>-<pid>: names a temporary directory after the process that writes it."""
  return f'{socket.gethostname()}-{os.getpid()}'


_LEFTOVER = re.compile(r'\.(?P<name>.+)\.(?:tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+')


def _process_is_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Someone else's process.
    return True
  return True


def remove_leftovers(parent):
  """Deletes the temporary directories of exports killed midway (SIGKILL, power loss) in `parent`.

  They are `.<name>.tmp-<host>-<pid>-*` (a SavedModel being written) and `.<name>.old-...` (an
  export being replaced), hidden beside the exports; only those of this host whose process is
  gone are deleted, so a concurrent export of the same run is left alone.

  Returns:
    The deleted paths.
  """
  removed = []
  if not os.path.isdir(parent):
    return removed
  host = socket.gethostname()
  for entry in sorted(os.listdir(parent)):
    match = _LEFTOVER.fullmatch(entry)
    if not match or match.group('host') != host or _process_is_alive(int(match.group('pid'))):
      continue
    path = os.path.join(parent, entry)
    logging.info('Removing %s, left by an interrupted export.', path)
    shutil.rmtree(path, ignore_errors=True)
    removed.append(path)
  return removed


def save_atomically(module, path):
  """tf.saved_model.save to a temporary directory beside `path`, then rename it into place.

  A kill at any moment leaves `path` either as it was or complete: the SavedModel is written to a
  hidden `.<name>.tmp-<host>-<pid>-*` directory, renamed into place when complete; an existing
  export is first moved aside to `.<name>.old-...`. Leftovers of killed exports are deleted by the
  next export into the same directory (`remove_leftovers`).
  """
  path = os.path.abspath(path)
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  remove_leftovers(parent)
  name = os.path.basename(path)
  temporary = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.tmp-{_owner_tag()}-')
  try:
    files.apply_umask(temporary, directory=True)
    tf.saved_model.save(module, temporary, signatures=module.signatures())
    if os.path.exists(path):
      old = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.old-{_owner_tag()}-')
      os.rename(path, os.path.join(old, 'export'))
      os.rename(temporary, path)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(temporary, path)
  except BaseException:
    shutil.rmtree(temporary, ignore_errors=True)
    raise
  return path


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
  config_path = run_directory.load_run_config(model_dir)
  checkpoint = checkpoints.resolve_checkpoint(model_dir, checkpoint)
  model, step, checkpoint = run_directory.restore_averaged_model(model_dir, checkpoint)
  module = ServingModule(model, step=step, config_path=config_path,
                         decode_chunk_size=decode_chunk_size)
  path = os.path.join(export_dir or os.path.join(model_dir, EXPORT_SUBDIR), str(step))
  save_atomically(module, path)
  logging.info('Exported %s (step %d) to %s', checkpoint, step, path)
  return path
