"""Unit tests of image_grids.py: grids, PNGs and the seeds of the draws, without a trained run."""

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import doubles
from vlae_tf.data import datasets
from vlae_tf import gin_parsing
from vlae_tf import image_grids
from vlae_tf.models import vlae as model_lib
from vlae_tf import seeds


class SeedEcho(doubles.SamplesAsTheVLAE):
  """A model stand-in whose decodings show the seed they were drawn with."""

  data_kind = '8bit'
  latent_shape = (1,)

  def prior_distribution(self):
    return tfp.distributions.Sample(tfp.distributions.Normal(0.0, 1.0), [1])

  def encode(self, x, seed):
    return None, x[:, 0, 0, :1] * 0.0 + tf.cast(seed[1], tf.float32)

  def decode(self, z, seed):  # seed[1] mod 251: a value a uint8 grid shows as it is.
    return tf.fill([tf.shape(z)[0], 2, 3, 1], tf.cast(tf.math.floormod(seed[1], 251), tf.float32))


def decode_seed(seed, salt):
  """The decode seed of a sample drawn as VLAE.sample draws it with stateless_seed(seed, salt)."""
  return seeds.split_seed(seeds.stateless_seed(seed, salt), 2)[1]


class SamplingTest(tf.test.TestCase):

  def test_to_uint8(self):
    self.assertAllEqual(image_grids.to_uint8([[0.0, 1.0]], 'binary'), [[0, 255]])
    self.assertAllEqual(image_grids.to_uint8([[-3.0, 127.6, 300.0]], '8bit'), [[0, 128, 255]])
    with self.assertRaisesRegex(ValueError, 'Unknown data kind'):
      image_grids.to_uint8([0.0], 'grey')

  def test_image_grid_tiles_rows_first(self):
    images = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1) + 1
    grid = image_grids.image_grid(images, columns=3, padding=1, background=0)
    self.assertEqual(grid.shape, (5, 7, 1))  # 2 rows x 3 columns of 1x1 tiles, 1 px padding.
    self.assertAllEqual(grid[1, 1::2, 0], [1, 2, 3])
    self.assertAllEqual(grid[3, 1::2, 0], [4, 5, 0])

  def test_reconstruction_rows_interleave(self):
    originals = np.zeros([2, 1, 1, 1])
    decodings = [np.ones([2, 1, 1, 1]), 2 * np.ones([2, 1, 1, 1])]
    rows = image_grids.reconstruction_rows(originals, decodings)
    self.assertAllEqual(rows.ravel(), [0, 1, 2, 0, 1, 2])

  def test_upscale(self):
    self.assertAllEqual(image_grids.upscale(np.array([[[1]], [[2]]]), 2)[..., 0],
                        [[1, 1], [1, 1], [2, 2], [2, 2]])
    with self.assertRaisesRegex(ValueError, 'positive integer'):
      image_grids.upscale(np.zeros([1, 1, 1]), 0)

  def test_draws_use_the_seeds_of_the_grid(self):
    renderer = image_grids.GridRenderer(SeedEcho())
    grid = renderer.sample_grid(3, seed=7, batch_size=2)  # Two batches: salts 0 and 2.
    # Tile i shows seed[1] of its batch's decode seed: the salt 2 * batch index.
    self.assertEqual(grid[1, 1, 0], decode_seed(7, 0)[1].numpy() % 251)  # Batch 0, tile 0.
    self.assertEqual(grid[4, 1, 0], decode_seed(7, 2)[1].numpy() % 251)  # Batch 1, tile 2.
    rows = renderer.reconstruction_grid(np.zeros([2, 2, 3, 1], np.float32), num_decodings=2,
                                        seed=7)
    self.assertEqual(rows.shape, (2 * 3 + 1, 3 * 4 + 1, 1))  # 2 rows of 1 + 2 images.

  def test_write_grids_writes_pngs(self):
    directory = self.get_temp_dir()
    paths = image_grids.write_grids(SeedEcho(), directory, step=5, num_images=4,
                                 reconstruction_images=np.zeros([2, 2, 3, 1], np.float32),
                                 num_decodings=2)
    self.assertEqual(sorted(paths), ['reconstructions', 'samples'])
    self.assertEqual(os.path.basename(paths['samples']), 'samples_5.png')
    with Image.open(paths['samples']) as image:  # A 9x7 grid enlarged 29 times: 261 >= 256.
      self.assertEqual(image.size, (29 * (2 * 4 + 1), 29 * (2 * 3 + 1)))
    with Image.open(paths['reconstructions']) as image:  # 13x7, 20 times: 260.
      self.assertEqual(image.size, (20 * (3 * 4 + 1), 20 * (2 * 3 + 1)))

  def test_enlarged_takes_the_smallest_factor_to_the_long_side(self):
    for shape, factor in (((73, 73, 1), 4), ((233, 233, 1), 2), ((849, 700, 3), 1),
                          ((64, 256, 1), 1), ((64, 255, 1), 2)):
      grid = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
      enlarged = image_grids.enlarged(grid)
      self.assertEqual(enlarged.shape, (shape[0] * factor, shape[1] * factor, shape[2]))
      np.testing.assert_array_equal(enlarged[::factor, ::factor], grid)


@pytest.mark.parametrize('experiment, dataset', [('mnist_vlae.gin', 'static_mnist'),
                                                 ('cifar10_resnet_vlae.gin', 'cifar10')])
def test_grids_of_a_tiny_vlae_draw_what_its_sampler_draws_through_one_decode_trace(
    shared_data, experiment, dataset):
  """Both grids decode any number of images with one trace (a batch of unknown size): the
  binary-image model's gated residual decoder, and CIFAR-10's spatial latents, gated PixelCNN
  and logistic mixture."""
  gin_parsing.parse_gin([experiment, 'testing/tiny.gin'])
  model = model_lib.make_model()
  test = datasets.load(dataset, 'test', data_dir=str(shared_data))
  images = np.stack([x.numpy() for x in test.take(4)])
  model.initialize(images)
  seed = seeds.stateless_seed(5, 0)
  # Traced, like the renderer's, for a count unknown until it runs (traced for exactly 3, it gave
  # CI other draws; the cause was not reproduced here).
  want = tf.function(model.sample, input_signature=[tf.TensorSpec([], tf.int32),
                                                    tf.TensorSpec([2], tf.int32)])(3, seed)
  traces = []
  decode = model.decode

  def counted_decode(*args, **kwargs):  # Called once per trace of a function calling it.
    traces.append(args[0].shape)
    return decode(*args, **kwargs)

  model.decode = counted_decode
  renderer = image_grids.GridRenderer(model)
  got = renderer._sample(3, seed).numpy()
  # The same draws. Round-off may still move the few that sit on a decision boundary: on CI's
  # machine 4 of CIFAR-10's 9,216 values came out 1-12 levels apart. Another seed changes 49% of
  # the binary values and 77% of the 8-bit ones (docs/results/reliability/sample_seed_mismatch.py).
  assert got.shape == want.shape, (got.shape, want.shape)
  differing = np.mean(got != want.numpy())
  assert differing <= 0.01, differing
  renderer.sample_grid(5, seed=5, batch_size=3)
  renderer.reconstruction_grid(images[:2], num_decodings=2, seed=5)
  # Samples in batches of three and two, decodings of two images: one trace of the sampler.
  assert traces == [tf.TensorShape([None, *model.latent_shape])]
