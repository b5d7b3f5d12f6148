"""Drawing images from an autoregressive decoder: the naive and fixed-point samplers, and the
loops that the decoders' cached samplers are written with.

* `sample_sequential`: one decoder pass per pixel in raster order (the definition of a sample).
* `sample_fixed_point`: the same images by fixed-point (Jacobi) iteration of whole-image passes.
* `sample_by_autoregress`: the same images through a decoder's cached `autoregress` (O(1) work per
  pixel); `column_loop`, `columns` and `rows_of` are the row-and-column loop pieces those cached
  samplers (pixelcnn.py, gated_pixelcnn.py, gated_resnet_pixelcnn.py) share.

All loops are explicit `tf.while_loop`s: callers trace them without autograph.
"""

from typing import Optional

import tensorflow as tf


def columns(tensor: tf.Tensor) -> tf.Tensor:
  """[B, W, ...] -> [W, B, ...]: the cached samplers' column-major rows (a column is `[col]`)."""
  return tf.transpose(tensor, [1, 0] + list(range(2, tensor.shape.rank)))


def rows_of(column_values: tf.TensorArray) -> tf.Tensor:
  """A TensorArray of a row's W columns [B, C] as the row [B, W, C]."""
  return tf.transpose(column_values.stack(), [1, 0, 2])


# Columns per iteration of the cached samplers' column loops (at most; a divisor of the width).
# `model.decode` of gin/mnist_vlae.gin (28 columns) on a 2-core AMD EPYC, measured when the column
# loops came in (commit 8c8aa74; docs/RESULTS.md, "Speed and precision"), tracing + first call /
# median call of 16 images / of 100 images: all 28 unrolled 13.5-15.7 s / 0.38-0.41 s / 0.52 s; one
# column 2.6-3.1 s / 0.44-0.46 s / 0.53 s; four 3.7-4.3 s / 0.40 s / 0.38 s.
COLUMNS_PER_ITERATION = 4


def column_loop(step_column, start, width: int):
  """`tf.while_loop` of `step_column(col, *state) -> (col + 1, *state)` over the columns of a row.

  The body unrolls `COLUMNS_PER_ITERATION` columns (or the largest divisor of `width` below),
  so that the graph, its tracing and its optimization by Grappler do not grow with the width.

  Returns:
    The loop's final state, `start`'s structure.
  """
  per_iteration = max(k for k in range(1, COLUMNS_PER_ITERATION + 1) if width % k == 0)

  def body(*state):
    for _ in range(per_iteration):
      state = step_column(*state)
    return state

  return tf.while_loop(lambda col, *_: col < width, body, start)


def sample_by_autoregress(decoder, context: Optional[tf.Tensor], likelihood, noise,
                          shape) -> tf.Tensor:
  """Images drawn from `noise` through `decoder.autoregress` (the decoders' fast `sample`).

  Args:
    decoder: a decoder with `autoregress(context, likelihood, choose_pixel, shape)`.
    context: [B, H, W, K] context map, or None.
    likelihood: the pixel likelihood whose parameters the decoder outputs.
    noise: `likelihood.noise(shape, seed)` (a nest of [B, H, W, ...] tensors).
    shape: [B, H, W, C]; H, W, C static, B may be a scalar tensor.

  Returns:
    [B, H, W, C] images, the ones `sample_sequential` draws with the same noise.
  """
  noise_rows = tf.nest.map_structure(lambda n: tf.transpose(n, [1, 0, 2, 3]), noise)

  def draw(params, row, col):
    pixel_noise = tf.nest.map_structure(lambda n: n[row][:, col][:, None, None], noise_rows)
    return likelihood.sample_from_noise(params[:, None, None], pixel_noise)[:, 0, 0]

  return decoder.autoregress(context, likelihood, draw, shape)



def sample_sequential(params_fn, likelihood, noise, shape) -> tf.Tensor:
  """Draws images pixel by pixel in raster order: one decoder pass per pixel (the naive sampler).

  Pixel p is taken from `likelihood.sample_from_noise(params_fn(x), noise)` after pixels < p are
  fixed, so with the same `noise` this returns the same images as `sample_fixed_point`.

  Args:
    params_fn: maps images [B, H, W, C] to likelihood parameters [B, H, W, P]; the parameters of
      pixel p must depend only on pixels before p in raster order.
    likelihood: a pixel likelihood (`vlae_tf.likelihoods`).
    noise: `likelihood.noise(shape, seed)`.
    shape: [B, H, W, C], static.

  Returns:
    [B, H, W, C] images.
  """
  batch, height, width, channels = shape
  del batch, channels

  def next_pixel(index, images):
    # One-hot [1, H, W, 1] selector of pixel `index`.
    selector = tf.reshape(tf.one_hot(index, height * width), [1, height, width, 1])
    drawn = likelihood.sample_from_noise(params_fn(images), noise)
    return index + 1, images + selector * (drawn - images)

  # An explicit loop (callers may trace without autograph).
  _, images = tf.while_loop(lambda index, _: index < height * width, next_pixel,
                            (tf.constant(0), tf.zeros(shape, tf.float32)))
  return images


def sample_fixed_point(params_fn, likelihood, noise, shape, max_iterations=None):
  """Draws the same images as `sample_sequential` by fixed-point iteration, usually far faster.

  With the noise fixed, an image is a sample exactly when every pixel equals the value drawn from
  its own conditional: x = S(x), with S(x) = likelihood.sample_from_noise(params_fn(x), noise).
  Starting from zeros, after t iterations of x <- S(x) every pixel whose dependency chain has
  length < t is final, so at most H*W iterations reach the fixed point, and the solution is
  unique (pixels are determined one after another in raster order). In practice local windows stop
  changing after far fewer passes; the loop ends at the first pass that changes nothing (Jacobi
  iteration of an autoregressive model, Song et al. 2021).

  Args:
    params_fn, likelihood, noise, shape: as `sample_sequential`.
    max_iterations: a bound on passes, default H*W + 1 (always enough).

  Returns:
    (images [B, H, W, C], number of decoder passes).
  """
  batch, height, width, channels = shape
  del batch, channels
  if max_iterations is None:
    max_iterations = height * width + 1
  images = likelihood.sample_from_noise(params_fn(tf.zeros(shape, tf.float32)), noise)

  def next_pass(images, passes, changed):  # pylint: disable=unused-argument
    updated = likelihood.sample_from_noise(params_fn(images), noise)
    return updated, passes + 1, tf.reduce_any(tf.not_equal(updated, images))

  # An explicit loop (callers may trace without autograph).
  images, passes, _ = tf.while_loop(
      lambda images, passes, changed: changed & (passes < max_iterations), next_pass,
      (images, tf.constant(1), tf.constant(True)))
  return images, passes
