"""Every binary on a run trained from one's own images (docs/datasets.md, "Your own images"), end
to end on real data.

One tiny run (gin/testing/tiny.gin, 2 steps) trained from a folder of 40x32 black-and-white PNGs
in one subfolder per class (the shared MNIST test digits, padded) with no flag but --dataset, then
eval, sample, export and a compress round trip of PNG folders on it; and the 8-bit family chosen
for a .npy of grey digits resized to 40x32 (its ELBO on them). bin/inspect's probe on the class
folders was checked by hand (labels_test-style alignment is in user_images_test.py).
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tests import own_images
from vlae_tf import errors
from vlae_tf.cli import compress_binaries
from vlae_tf.cli import dataset_flags
from vlae_tf.cli import run_binaries
from vlae_tf.data import datasets
from vlae_tf.data import model_choice
from vlae_tf.data import user_images
from vlae_tf import image_grids
from vlae_tf.models import vlae as model_lib
from vlae_tf.runs import run_config
from vlae_tf.data import sources

COUNT = 200
TINY = ['testing/tiny.gin']
QUICK = ['TRAIN_STEPS=2', 'train.num_summary_images=0']

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def mnist(shared_data):
  return own_images.mnist_test_images(shared_data, COUNT)


@pytest.fixture(scope='module')
def run(mnist, tmp_path_factory):
  """(model_dir, the folder of 40x32 PNGs) of a 2-step run trained with --dataset alone."""
  root = tmp_path_factory.mktemp('own_run')
  grey, labels = mnist
  folder = own_images.write_pngs(
      root / 'digits_40x32', own_images.pad_to_40x32(own_images.black_and_white(grey)), labels)
  model_dir = str(root / 'run')
  run_binaries.run_train(model_dir, TINY, QUICK, dataset=folder)
  return model_dir, folder


def test_train_chose_the_binary_vlae_for_the_size_and_recorded_the_data(run):
  model_dir, folder = run
  with open(os.path.join(model_dir, sources.DATA_SOURCE_FILE)) as f:
    source = json.load(f)
  images = user_images.read(folder)
  assert source['dataset'] == folder and source['image_shape'] == [40, 32, 1]
  assert source['pixel_kind'] == 'binary' and source['split_sizes'] == images.sizes()
  assert sum(source['split_sizes'].values()) == COUNT and len(source['classes']) == 10
  with open(os.path.join(model_dir, run_config.CONFIG_FILE)) as f:
    config = f.read()
  assert 'IMAGE_SHAPE = (40, 32, 1)' in config and 'Bernoulli' in config
  assert f"train.dataset = '{folder}'" in config


def test_eval_reads_the_runs_own_images_or_another_folder_of_its_shape(run, mnist, tmp_path):
  model_dir, folder = run
  report = run_binaries.run_eval(model_dir, max_examples=4, num_samples=2)
  assert report['dataset'] == folder and report['num_examples'] == 4
  assert report['num_dims'] == 40 * 32 and np.isfinite(report['nll_nats'])
  other = own_images.write_pngs(tmp_path / 'other', own_images.pad_to_40x32(
      own_images.black_and_white(mnist[0][::-1])))
  report = run_binaries.run_eval(model_dir, max_examples=4, num_samples=2, dataset=other)
  assert report['dataset'] == other and np.isfinite(report['nll_nats'])
  small = own_images.write_pngs(tmp_path / 'small', own_images.black_and_white(mnist[0]))
  with pytest.raises(errors.DatasetError, match=r'small: 28x28x1 binary images, but the run in '
                     r'.* models 40x32x1 binary images: give a dataset of that shape'):
    run_binaries.run_eval(model_dir, max_examples=4, num_samples=2, dataset=small)


def test_sample_writes_grids_of_40x32_images(run):
  model_dir, _ = run
  paths = run_binaries.run_sample(model_dir, num_images=2, num_reconstructions=2,
                                  num_decodings=1)
  expected = image_grids.enlarged(image_grids.image_grid(np.zeros([2, 40, 32, 1], np.uint8))).shape
  with Image.open(paths['samples']) as grid:
    assert grid.size == (expected[1], expected[0]) and max(grid.size) >= 256


def test_export_records_the_image_shape_and_pixel_kind(run):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model_dir, folder = run
  loaded = tf.saved_model.load(run_binaries.run_export(model_dir))
  metadata = {key: value.numpy() for key, value in loaded.metadata().items()}
  assert list(metadata['image_shape']) == [40, 32, 1] and metadata['data_kind'] == b'binary'
  assert metadata['dataset'].decode() == folder


def test_a_png_folder_compresses_and_comes_back_pixel_for_pixel(run, tmp_path):
  model_dir, folder = run
  test_images = user_images.read(folder).splits['test'][:3, ..., 0] * 255
  source = own_images.write_pngs(tmp_path / 'in', test_images)
  report = compress_binaries.run_compress(model_dir, source, str(tmp_path / 'digits.vlae'))
  assert report['images'] == 3 and report['bits_per_pixel'] > 0
  compress_binaries.run_decompress(model_dir, str(tmp_path / 'digits.vlae'), str(tmp_path / 'out'))
  names = sorted(os.listdir(tmp_path / 'out'))
  assert len(names) == 3
  for name, expected in zip(names, test_images):
    with Image.open(tmp_path / 'out' / name) as image:
      np.testing.assert_array_equal(np.asarray(image.convert('L')), expected)


def test_grey_levels_get_the_8bit_family_at_any_size(mnist, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  np.save(tmp_path / 'grey.npy', mnist[0])
  dataset_flags.prepare_training_config(TINY, dataset=str(tmp_path / 'grey.npy'),
                                        image_size='40x32')
  model = model_lib.make_model()
  assert model.data_kind == '8bit' and tuple(model.latent_shape[:2]) == (10, 8)
  images = next(iter(datasets.load(str(tmp_path / 'grey.npy'), 'test').batch(2)))
  assert images.shape == (2, 40, 32, 1) and float(tf.reduce_max(images)) > 1
  elbo = model.elbo(images, tf.constant([0, 0]), training=False)['elbo']
  assert elbo.shape == (2,) and np.isfinite(elbo.numpy()).all()


def test_the_choice_line_states_the_budget_in_force(mnist, tmp_path, monkeypatch):
  """--gin_param=TRAIN_STEPS=N changes the chosen budget: the line says N (and what it replaced),
  as the training's start line will."""
  np.save(tmp_path / 'grey.npy', mnist[0])
  said = []
  monkeypatch.setattr(dataset_flags.logging, 'info',
                      lambda message, *args: said.append(message % args))
  dataset_flags.prepare_training_config(dataset=str(tmp_path / 'grey.npy'),
                                        gin_params=['TRAIN_STEPS=200', 'BATCH_SIZE=16'])
  line, = [text for text in said if text.startswith('No model in the gin files')]
  own = user_images.read(str(tmp_path / 'grey.npy'))
  epochs = 200 * 16 / own.sizes()['train']
  chosen = model_choice.train_steps(own.sizes()['train'])
  assert f'batch 16, 200 steps (about {epochs:.3g} epochs; {chosen} steps, about 100 epochs, ' \
         'without --gin_param)' in line
  assert 'z of 7x7x16,' in line
  said.clear()
  dataset_flags.prepare_training_config(dataset=str(tmp_path / 'grey.npy'),
                                        gin_params=['LATENT_CHANNELS=4'])
  line, = [text for text in said if text.startswith('No model in the gin files')]
  assert f'batch 128, {chosen} steps (about' in line and 'TRAIN_STEPS=N to change' in line
  assert 'z of 7x7x4,' in line  # The latent channels in force, not the family's default.


@pytest.mark.parametrize('grey_levels,trained', [(False, (28, 28)), (True, (32, 32))])
def test_large_images_train_at_a_size_that_trains(mnist, tmp_path, monkeypatch, grey_levels,
                                                  trained):
  """105x105 images (OMNIGLOT's size as Lake's zip unzips) train at 28x28 (binary) or 32x32
  (8-bit), bound as --image_size would bind it, with one line saying how to keep their size."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  grey = mnist[0][:40]
  images = tf.image.resize(grey[..., None], (105, 105), 'nearest').numpy()[..., 0]
  array = images if grey_levels else own_images.black_and_white(images).astype(np.uint8)
  np.save(tmp_path / 'large.npy', array)
  said = []
  monkeypatch.setattr(dataset_flags.logging, 'info',
                      lambda message, *args: said.append(message % args))
  dataset_flags.prepare_training_config(TINY, dataset=str(tmp_path / 'large.npy'))
  size = 'x'.join(map(str, trained))
  assert any(text.startswith(f'Images of 105x105 train at {size}:') and
             '--image_size=105x105 keeps their size' in text for text in said)
  assert user_images.options()[0] == trained
  assert tuple(model_lib.make_model().image_shape[:2]) == trained
  said.clear()
  dataset_flags.prepare_training_config(TINY, dataset=str(tmp_path / 'large.npy'),
                                        image_size='105x105')
  assert not any(text.startswith('Images of') for text in said)
  assert tuple(model_lib.make_model().image_shape[:2]) == (105, 105)


def test_training_size_keeps_the_aspect_ratio_and_small_images():
  assert model_choice.training_size((40, 32, 1), 'binary') is None
  assert model_choice.training_size((48, 48, 3), '8bit') is None
  assert model_choice.training_size((105, 210, 1), 'binary') == (14, 28)
  assert model_choice.training_size((480, 640, 3), '8bit') == (24, 32)
  assert model_choice.training_size((30, 400, 1), 'binary') == (8, 28)


def test_the_example_folders_read_as_their_layouts_say(shared_data, tmp_path):
  """examples/make_image_folders.py: OMNIGLOT as it unzips (two levels, the character is the
  class), scikit-learn's digits (8x8 grey) and CIFAR-10 photos (32x32 RGB), one level each."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  script = os.path.join(os.path.dirname(__file__), '..', '..', 'examples', 'make_image_folders.py')
  completed = subprocess.run([sys.executable, script, f'--data_dir={shared_data}',
                              f'--output={tmp_path}'], capture_output=True, text=True,
                             check=False, timeout=600)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert 'tensorflow' not in completed.stderr.lower()  # No start-up noise: TF is not imported.
  omniglot = user_images.read(str(tmp_path / 'images_background_small1'))
  assert omniglot.shape == (105, 105, 1) and omniglot.kind == 'binary'
  assert all(name.count('/') == 1 for name in omniglot.class_names)  # alphabet/character
  digits = user_images.read(str(tmp_path / 'digits'))
  assert (digits.shape, digits.kind, len(digits.class_names)) == ((8, 8, 1), '8bit', 10)
  assert sum(digits.sizes().values()) == 1797
  photos = user_images.read(str(tmp_path / 'cifar_photos'))
  assert (photos.shape, photos.kind, len(photos.class_names)) == ((32, 32, 3), '8bit', 10)
  assert 'airplane' in photos.class_names
