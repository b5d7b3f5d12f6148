"""Image grids of samples and of lossy reconstructions, as PNG files (pillow) or summary images.

A lossy reconstruction grid has one row per test image: the image, then several decodings of one z
drawn from its own posterior q(z|x). What stays the same along a row is what z encodes (for a VLAE,
global structure); what changes is what the local-window decoder makes up (texture, stroke details).

It sits above models/ (which holds tensor code only, no files): it draws from a model and writes
PNGs. It only needs a model that follows the `VLAE` contract (`sample_prior`, `sample`,
`encode`, `decode`, `latent_shape` and `data_kind`); restoring a run directory is
`opening.open_run`.
"""

import io
import math
import os

import numpy as np
from PIL import Image
import tensorflow as tf

from vlae_tf import files
from vlae_tf import seeds

SAMPLES_FILE = 'samples_{step}.png'
RECONSTRUCTIONS_FILE = 'reconstructions_{step}.png'
# Grids written as files are enlarged (nearest neighbour, whole pixels) until their long side is at
# least this: 64 samples of 8x8 digits are 73 pixels wide at 1x, too small to judge.
MIN_LONG_SIDE = 256


def to_uint8(images, data_kind):
  """[N, H, W, C] images of the model's kind (binary {0, 1} or 8-bit 0..255) as uint8 0..255."""
  images = np.asarray(images, np.float32)
  if data_kind == 'binary':
    images = images * 255.0
  elif data_kind != '8bit':
    raise ValueError(f'Unknown data kind {data_kind!r}.')
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def image_grid(images, columns=None, padding=1, background=128):
  """Tiles [N, H, W, C] uint8 images into one [rows * (H + p) + p, columns * (W + p) + p, C] image.

  Args:
    images: uint8 array [N, H, W, C].
    columns: images per row (default: ceil(sqrt(N))).
    padding: pixels between and around tiles.
    background: the padding's grey level.

  Returns:
    A uint8 array [height, width, C].
  """
  images = np.asarray(images)
  count, height, width, channels = images.shape
  columns = columns or max(int(math.ceil(math.sqrt(count))), 1)
  rows = max(int(math.ceil(count / columns)), 1)
  grid = np.full((rows * (height + padding) + padding, columns * (width + padding) + padding,
                  channels), background, images.dtype)
  for index, image in enumerate(images):
    row, column = divmod(index, columns)
    top = padding + row * (height + padding)
    left = padding + column * (width + padding)
    grid[top:top + height, left:left + width] = image
  return grid


def reconstruction_rows(originals, decodings):
  """Interleaves [n, ...] originals with k [n, ...] decodings: row i = original i, decodings of i.

  Returns:
    [n * (1 + k), H, W, C], to tile with `image_grid(..., columns=1 + k)`.
  """
  stacked = np.stack([np.asarray(originals)] + [np.asarray(d) for d in decodings], axis=1)
  return stacked.reshape((-1,) + stacked.shape[2:])


def write_png(path, grid):
  """Writes a uint8 [H, W, 1 or 3] grid as PNG atomically (`files.atomic_write_bytes`)."""
  grid = np.asarray(grid, np.uint8)
  image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  encoded = io.BytesIO()
  image.save(encoded, format='PNG')
  files.atomic_write_bytes(path, encoded.getvalue())
  return path


def upscale(grid, factor):
  """A uint8 [H, W, C] grid enlarged `factor` times by nearest neighbour: [H * f, W * f, C]."""
  factor = int(factor)
  if factor < 1:
    raise ValueError(f'The upscaling factor must be a positive integer, got {factor}.')
  grid = np.asarray(grid)
  return np.repeat(np.repeat(grid, factor, axis=0), factor, axis=1)


def enlarged(grid, min_long_side=MIN_LONG_SIDE):
  """`upscale`d by the smallest whole factor that makes the long side at least `min_long_side`."""
  grid = np.asarray(grid)
  return upscale(grid, max(1, math.ceil(min_long_side / max(grid.shape[:2]))))


class GridRenderer:
  """Sample and reconstruction grids of one model, with its sampler and encoder traced once.

  The `tf.function`s are made in the constructor, so that a renderer called again and again (the
  image summaries of a training run) traces them once; `sample_grid` and `reconstruction_grid`
  below build a renderer per call. With a latent variable both grids go through one trace of
  `model.decode` (any number of images): samples are `decode(*model.sample_prior(n, seed))`, what
  `model.sample` draws, so the autoregressive sampler, most of the work of a first grid, is traced
  and optimized once rather than twice. Autograph is off: the samplers' loops are explicit
  `tf.while_loop`s, and autograph's conversion of every layer's call doubled their tracing.
  """

  def __init__(self, model):
    self.model = model
    self._encode = self._decode = None  # A PixelCNN without latent variable: nothing to decode.
    if getattr(model, 'has_latent', True):
      latents = tf.TensorSpec([None, *model.latent_shape], tf.float32)
      seed = tf.TensorSpec([2], tf.int32)
      self._encode = tf.function(lambda x, s: model.encode(x, s)[1], autograph=False)
      self._decode = tf.function(model.decode, input_signature=[latents, seed], autograph=False)
      sample_prior = tf.function(model.sample_prior, autograph=False,
                                 input_signature=[tf.TensorSpec([], tf.int32), seed])
      # `model.sample` in two calls, so that samples and reconstructions run the one decode
      # graph (as a nested function, the sampler was optimized again inside the sample graph).
      self._sample = lambda count, s: self._decode(*sample_prior(count, s))
    else:
      self._sample = tf.function(model.sample, autograph=False)

  @property
  def can_reconstruct(self):
    return self._encode is not None

  def sample_grid(self, num_images, seed=0, batch_size=64):
    """A uint8 grid of `num_images` samples (in batches of `batch_size`)."""
    batches = []
    for index, start in enumerate(range(0, num_images, batch_size)):
      count = min(batch_size, num_images - start)
      batches.append(self._sample(count, seeds.stateless_seed(seed, 2 * index)).numpy())
    images = np.concatenate(batches, axis=0)
    return image_grid(to_uint8(images, self.model.data_kind))

  def reconstruction_grid(self, images, num_decodings=7, seed=0):
    """Each image followed by `num_decodings` decodings of one z ~ q(z|x), one row per image.

    Args:
      images: [n, H, W, C] float32 images of the model's data kind.
      num_decodings: decodings per image.
      seed: integer seed.

    Returns:
      A uint8 grid of n rows and 1 + num_decodings columns.
    """
    if not self.can_reconstruct:
      raise ValueError('A model without latent variable has no reconstructions.')
    z = self._encode(tf.convert_to_tensor(images, tf.float32), seeds.stateless_seed(seed, 1))
    decodings = [self._decode(z, seeds.stateless_seed(seed, 3 + 2 * i)).numpy()
                 for i in range(num_decodings)]
    rows = reconstruction_rows(images, decodings)
    return image_grid(to_uint8(rows, self.model.data_kind), columns=1 + num_decodings)


def sample_grid(model, num_images, seed=0, batch_size=64):
  """A uint8 grid of `num_images` samples of `model` (in batches of `batch_size`)."""
  return GridRenderer(model).sample_grid(num_images, seed, batch_size)


def reconstruction_grid(model, images, num_decodings=7, seed=0):
  """Each image followed by `num_decodings` decodings of one z ~ q(z|x): a uint8 grid, one row each.

  Args:
    model: a VLAE (averaged weights).
    images: [n, H, W, C] float32 images of the model's data kind.
    num_decodings: decodings per image.
    seed: integer seed.

  Returns:
    A uint8 grid of n rows and 1 + num_decodings columns.
  """
  return GridRenderer(model).reconstruction_grid(images, num_decodings, seed)


def write_grids(model, output_dir, step, num_images=64, reconstruction_images=None,
                num_decodings=7, seed=0):
  """Writes samples_<step>.png and, given images, reconstructions_<step>.png to `output_dir`,
  each `enlarged` to a long side of at least MIN_LONG_SIDE pixels.

  Returns:
    {'samples': path, 'reconstructions': path (when images were given)}.
  """
  paths = {}
  if num_images:
    paths['samples'] = write_png(os.path.join(output_dir, SAMPLES_FILE.format(step=step)),
                                 enlarged(sample_grid(model, num_images, seed)))
  if reconstruction_images is not None and len(reconstruction_images):
    paths['reconstructions'] = write_png(
        os.path.join(output_dir, RECONSTRUCTIONS_FILE.format(step=step)),
        enlarged(reconstruction_grid(model, reconstruction_images, num_decodings, seed)))
  return paths
