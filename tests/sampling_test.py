"""Unit tests of sampling.py: grids, PNGs and the seeds of the draws, without a trained run."""

import os

import numpy as np
from PIL import Image
import tensorflow as tf

from vlae_tf.models import sampling
from vlae_tf import seeds


class SeedEcho:
  """A model stand-in whose samples and decodings show the seed they were drawn with."""

  data_kind = '8bit'
  has_latent = True

  def sample(self, num_images, seed):
    return tf.fill([num_images, 2, 3, 1], tf.cast(seed[1], tf.float32))

  def encode(self, x, seed):
    return None, x[:, :1, :1, 0] * 0.0 + tf.cast(seed[1], tf.float32)

  def decode(self, z, seed):
    del z
    return tf.fill([2, 2, 3, 1], tf.cast(seed[1], tf.float32))


class SamplingTest(tf.test.TestCase):

  def test_to_uint8(self):
    self.assertAllEqual(sampling.to_uint8([[0.0, 1.0]], 'binary'), [[0, 255]])
    self.assertAllEqual(sampling.to_uint8([[-3.0, 127.6, 300.0]], '8bit'), [[0, 128, 255]])
    with self.assertRaisesRegex(ValueError, 'Unknown data kind'):
      sampling.to_uint8([0.0], 'grey')

  def test_image_grid_tiles_rows_first(self):
    images = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1) + 1
    grid = sampling.image_grid(images, columns=3, padding=1, background=0)
    self.assertEqual(grid.shape, (5, 7, 1))  # 2 rows x 3 columns of 1x1 tiles, 1 px padding.
    self.assertAllEqual(grid[1, 1::2, 0], [1, 2, 3])
    self.assertAllEqual(grid[3, 1::2, 0], [4, 5, 0])

  def test_reconstruction_rows_interleave(self):
    originals = np.zeros([2, 1, 1, 1])
    decodings = [np.ones([2, 1, 1, 1]), 2 * np.ones([2, 1, 1, 1])]
    rows = sampling.reconstruction_rows(originals, decodings)
    self.assertAllEqual(rows.ravel(), [0, 1, 2, 0, 1, 2])

  def test_upscale(self):
    self.assertAllEqual(sampling.upscale(np.array([[[1]], [[2]]]), 2)[..., 0],
                        [[1, 1], [1, 1], [2, 2], [2, 2]])
    with self.assertRaisesRegex(ValueError, 'positive integer'):
      sampling.upscale(np.zeros([1, 1, 1]), 0)

  def test_draws_use_the_seeds_of_the_grid(self):
    renderer = sampling.GridRenderer(SeedEcho())
    grid = renderer.sample_grid(3, seed=7, batch_size=2)  # Two batches: salts 0 and 2.
    # Tile i shows seed[1] of its batch's seed: the salt 2 * batch index.
    self.assertEqual(grid[1, 1, 0], seeds.stateless_seed(7, 0)[1].numpy())  # Batch 0, tile 0.
    self.assertEqual(grid[4, 1, 0], seeds.stateless_seed(7, 2)[1].numpy())  # Batch 1, tile 2.
    rows = renderer.reconstruction_grid(np.zeros([2, 2, 3, 1], np.float32), num_decodings=2,
                                        seed=7)
    self.assertEqual(rows.shape, (2 * 3 + 1, 3 * 4 + 1, 1))  # 2 rows of 1 + 2 images.

  def test_write_grids_writes_pngs(self):
    directory = self.get_temp_dir()
    paths = sampling.write_grids(SeedEcho(), directory, step=5, num_images=4,
                                 reconstruction_images=np.zeros([2, 2, 3, 1], np.float32),
                                 num_decodings=2)
    self.assertEqual(sorted(paths), ['reconstructions', 'samples'])
    self.assertEqual(os.path.basename(paths['samples']), 'samples_5.png')
    with Image.open(paths['samples']) as image:
      self.assertEqual(image.size, (2 * 4 + 1, 2 * 3 + 1))
