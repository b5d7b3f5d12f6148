"""Tests of bin/inspect's report: rate and distortion, the linear probe, per-pixel maps."""

import json

import numpy as np
from PIL import Image
import pytest

from vlae_tf import distribution
from vlae_tf import gin_parsing
from vlae_tf.experiments import inspection
from vlae_tf.training import loop as training


def test_probe_separates_a_separable_toy_case():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(3, 5)) * 4.0
  train_labels = rng.integers(0, 3, 300)
  test_labels = rng.integers(0, 3, 100)
  train = centres[train_labels] + rng.normal(size=(300, 5))
  test = centres[test_labels] + rng.normal(size=(100, 5))
  probe = inspection.linear_probe(train, train_labels, test, test_labels)
  assert probe['accuracy'] >= 0.95
  assert probe['cross_entropy_nats'] < 0.3
  assert probe['num_features'] == 5 and probe['num_test'] == 100
  # Features that carry nothing: chance.
  noise = inspection.linear_probe(rng.normal(size=(300, 5)), train_labels,
                                  rng.normal(size=(100, 5)), test_labels)
  assert noise['accuracy'] < 0.6
  assert noise['cross_entropy_nats'] > probe['cross_entropy_nats']
  # A test class the probe never saw (Caltech-101 subsets miss classes): scored, not a crash.
  unseen = inspection.linear_probe(train, train_labels, test, np.where(test_labels == 2, 7, 0))
  assert unseen['classes_unseen_in_training'] == 1 and np.isfinite(unseen['cross_entropy_nats'])


@pytest.mark.parametrize('side, scale', [(8, 13), (28, 4), (105, 1)])
def test_maps_grid_captions_fit_their_columns_at_any_image_size(side, scale):
  """Tiles are enlarged to at least MIN_TILE_WIDTH pixels, wide enough for the longest default
  caption in Pillow's default font (about 6 pixels a character): 8x8 digits as 105x105 strokes."""
  from PIL import ImageFont  # pylint: disable=g-import-not-at-top
  images = np.zeros((1, side, side, 1), np.uint8)
  bits = np.ones((1, side, side))
  grid = inspection.maps_grid(images, bits, bits)
  assert grid.shape[1] == 4 * (side * scale + 2) + 2
  font = ImageFont.load_default()
  widest = max(font.getbbox(caption)[2] for caption in
               ('image', 'bits | z~q(z|x)', 'bits | z~p(z)', 'saved by z'))
  assert widest + 4 <= side * scale + 2


def test_maps_grid_shapes_and_colours():
  images = np.zeros((2, 5, 7, 1), np.uint8)
  posterior = np.zeros((2, 5, 7))
  other = np.zeros((2, 5, 7))
  other[0, 1, 2] = 3.0  # z saves 3 bits at this pixel of image 0
  grid = inspection.maps_grid(images, posterior, other, scale=2, headers=('a', 'b', 'c', 'd'))
  tile_h, tile_w = 5 * 2, 7 * 2
  assert grid.shape == (28 + 2 * (tile_h + 2) + 2, 4 * (tile_w + 2) + 2, 3)
  body = grid[28:]
  # Image 0's difference tile (column 3) is red at the saved pixel, white elsewhere.
  top, left = 2, 2 + 3 * (tile_w + 2)
  tile = body[top:top + tile_h, left:left + tile_w]
  assert tuple(tile[1 * 2, 2 * 2]) != (255, 255, 255)
  assert tile[1 * 2, 2 * 2, 0] > tile[1 * 2, 2 * 2, 2]  # red, not blue
  assert tuple(tile[0, 0]) == (255, 255, 255)


@pytest.mark.slow
def test_inspect_a_tiny_run(shared_data, tmp_path):
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'],
                ['train.batch_size = 4', 'train.eval_examples = 0', 'train.num_summary_images = 0'])
  run = tmp_path / 'run'
  training.train(str(run), data_dir=str(shared_data),
                 strategy=distribution.make_strategy(['/cpu:0']))
  report = inspection.inspect(str(run), max_examples=30, probe_train_examples=200, num_maps=3,
                              num_reconstructions=2, num_decodings=2, data_dir=str(shared_data))
  on_disk = json.loads((run / 'inspect' / 'report.json').read_text())
  assert on_disk['step'] == report['step'] == 3
  assert on_disk['num_examples'] == 30
  rd = on_disk['rate_distortion']
  for key in ('rate_bits', 'distortion_bits', 'nll_bound_bits'):
    assert set(rd[key]) == {'mean', 'stderr'}
  np.testing.assert_allclose(rd['nll_bound_bits']['mean'],
                             rd['rate_bits']['mean'] + rd['distortion_bits']['mean'], rtol=1e-6)
  assert rd['distortion_bits']['mean'] > 0
  for key in ('latent', 'pixels'):
    probe = on_disk['probe'][key]
    assert 0.0 <= probe['accuracy'] <= 1.0 and probe['num_test'] == 30
  assert on_disk['probe']['latent']['num_features'] == 3  # tiny.gin: LATENT_SIZE = 3
  assert on_disk['decoder_window_pixels'] > 0
  with Image.open(run / 'inspect' / 'pixel_maps.png') as image:
    # 28x28 tiles enlarged 4 times (112 >= inspection.MIN_TILE_WIDTH pixels).
    assert image.size == (4 * (28 * 4 + 2) + 2, 28 + 3 * (28 * 4 + 2) + 2)
  with Image.open(run / 'inspect' / 'reconstructions.png') as image:
    assert image.size == (3 * (3 * 29 + 1), 3 * (2 * 29 + 1))  # enlarged 3 times to 264

  # Side by side: a second (pretend) run with another window.
  other = dict(report, decoder_window_pixels=report['decoder_window_pixels'] + 10)
  paths = inspection.compare([report, other], str(tmp_path / 'compare'), labels=['a', 'b'])
  table = (tmp_path / 'compare' / 'comparison.md').read_text()
  assert table.count('\n| a |') == 1 and table.count('\n| b |') == 1
  assert paths['rate_vs_window'] and paths['reconstructions']
  with Image.open(paths['reconstructions']) as image:
    assert image.size[1] == 2 * (16 + 3 * (2 * 29 + 1))  # each run's grid as it wrote it
  # A second call with the same settings reuses the report.
  again = inspection.inspect(str(run), max_examples=30, probe_train_examples=200, num_maps=3,
                             num_reconstructions=2, num_decodings=2, data_dir=str(shared_data),
                             reuse=True)
  assert again == on_disk
