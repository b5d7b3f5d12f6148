"""One's own images (vlae_tf/data/user_images.py): folders, arrays, splits, pixel kinds, bad input.

Real data: the shared MNIST test images written as PNG folders and a .npy (tests/own_images.py).
"""

import os
import pathlib
import posixpath
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import own_images
from vlae_tf import errors
from vlae_tf.cli import preflight
from vlae_tf.cli import run_binaries
from vlae_tf.data import datasets
from vlae_tf.data import labels as labels_lib
from vlae_tf.data import user_images

COUNT = 200
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def mnist(shared_data):
  return own_images.mnist_test_images(shared_data, COUNT)


@pytest.fixture(scope='module')
def folders(mnist, tmp_path_factory):
  grey, labels = mnist
  root = tmp_path_factory.mktemp('own_images')
  bw = own_images.black_and_white(grey)
  np.save(root / 'grey.npy', grey)
  return {'flat': own_images.write_pngs(root / 'flat', bw),
          'classes': own_images.write_pngs(root / 'classes', bw, labels),
          'grey.npy': str(root / 'grey.npy'), 'root': root}


def _index(name):
  return int(pathlib.Path(name).stem)


def test_a_flat_folder_of_black_and_white_pngs_is_binary_and_split_by_name(mnist, folders):
  images = user_images.read(folders['flat'])
  bw = own_images.black_and_white(mnist[0])
  assert (images.shape, images.kind, images.pixels, images.labels) == ((28, 28, 1), 'binary',
                                                                      'binary', None)
  assert sum(images.sizes().values()) == COUNT
  for split in ('train', 'valid', 'test'):
    indices = [_index(name) for name in images.names[split]]
    np.testing.assert_array_equal(images.splits[split][..., 0], bw[indices] // 255)
  fractions = {name: user_images.hash_fraction(name) for name in images.names['test']}
  assert all(fraction < user_images.TEST_FRACTION for fraction in fractions.values())
  assert images.names['test'] and images.names['valid']


def test_class_subfolders_are_the_labels_of_the_probe(mnist, folders):
  images = user_images.read(folders['classes'])
  assert images.class_names == tuple(str(label) for label in range(10))
  for split in ('train', 'test'):
    expected = mnist[1][[_index(name) for name in images.names[split]]]
    np.testing.assert_array_equal(labels_lib.load_labels(folders['classes'], split), expected)
  chosen = labels_lib.load_labels(folders['classes'], 'test', indices=[0, 2])
  np.testing.assert_array_equal(chosen, images.labels['test'][[0, 2]])


def test_adding_images_never_moves_the_old_ones(mnist, folders, tmp_path):
  bw = own_images.black_and_white(mnist[0])
  folder = own_images.write_pngs(tmp_path / 'growing', bw[:120])
  before = user_images.read(folder)
  own_images.write_pngs(tmp_path / 'more', bw[120:])
  for path in (tmp_path / 'more').iterdir():
    shutil.move(str(path), os.path.join(folder, f'1{path.name}'))
  after = user_images.read(folder)
  assert sum(after.sizes().values()) == COUNT
  for split in ('train', 'valid', 'test'):
    assert set(before.names[split]) <= set(after.names[split])


def test_train_and_test_subfolders_are_the_splits(mnist, tmp_path):
  bw = own_images.black_and_white(mnist[0])
  own_images.write_pngs(tmp_path / 'train', bw[:150])
  own_images.write_pngs(tmp_path / 'test', bw[150:])
  images = user_images.read(str(tmp_path))
  assert images.split_origin == 'folders'
  assert images.sizes()['test'] == COUNT - 150
  assert images.sizes()['train'] + images.sizes()['valid'] == 150
  assert all(name.startswith('test/') for name in images.names['test'])


def test_grey_levels_are_8bit_unless_binarized(mnist, folders):
  grey = user_images.read(folders['grey.npy'])
  assert (grey.kind, grey.pixels, grey.binarization) == ('8bit', 'grey', None)
  rows = [int(name) for name in grey.names['test']]
  np.testing.assert_array_equal(grey.splits['test'][..., 0], mnist[0][rows])
  threshold = user_images.read(folders['grey.npy'], binarize='threshold')
  assert threshold.kind == 'binary'
  np.testing.assert_array_equal(threshold.splits['test'][..., 0], mnist[0][rows] >= 128)
  first = next(iter(datasets.load(folders['grey.npy'], 'test').batch(COUNT))).numpy()
  np.testing.assert_array_equal(first[..., 0], mnist[0][rows].astype(np.float32))


def test_dynamic_binarization_samples_training_images_afresh(folders):
  import gin  # pylint: disable=g-import-not-at-top
  gin.bind_parameter('user_images.binarize', 'dynamic')
  train = datasets.load(folders['grey.npy'], 'train', seed=3).batch(COUNT)
  first, second = (next(iter(train)).numpy() for _ in range(2))
  assert set(np.unique(first)) <= {0.0, 1.0} and not np.array_equal(first, second)
  test = datasets.load(folders['grey.npy'], 'test').batch(COUNT)
  np.testing.assert_array_equal(next(iter(test)), next(iter(test)))


def test_image_size_resizes_and_black_and_white_stays_binary(folders):
  images = user_images.read(folders['classes'], image_size=(40, 32))
  assert images.shape == (40, 32, 1) and images.kind == 'binary'
  assert set(np.unique(images.splits['train'])) == {0, 1}


def test_a_keras_style_npz_gives_splits_and_labels(mnist, tmp_path):
  grey, labels = mnist
  path = tmp_path / 'digits.npz'
  np.savez(path, x_train=grey[:150], y_train=labels[:150], x_test=grey[150:], y_test=labels[150:])
  images = user_images.read(str(path))
  assert images.split_origin == 'arrays' and images.sizes()['test'] == COUNT - 150
  np.testing.assert_array_equal(images.labels['test'], labels[150:])


def _write_png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)
  return path


def _empty(tmp_path, mnist):
  (tmp_path / 'data').mkdir()
  (tmp_path / 'data' / 'notes.txt').write_text('no images here')
  return tmp_path / 'data', 'holds no images'


def _corrupt(tmp_path, mnist):
  own_images.write_pngs(tmp_path / 'data', own_images.black_and_white(mnist[0][:20]))
  (tmp_path / 'data' / '00007.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
  return tmp_path / 'data', '00007.png: not a readable image'


def _mixed_sizes(tmp_path, mnist):
  own_images.write_pngs(tmp_path / 'data', own_images.black_and_white(mnist[0][:20]))
  _write_png(tmp_path / 'data' / '00003.png', own_images.pad_to_40x32(mnist[0][3:4])[0])
  return tmp_path / 'data', 'mixed sizes: 00003.png is 40x32, 00000.png is 28x28: pass --image_size'


def _mixed_channels(tmp_path, mnist):
  own_images.write_pngs(tmp_path / 'data', own_images.black_and_white(mnist[0][:20]))
  _write_png(tmp_path / 'data' / '00005.png', np.stack([mnist[0][5]] * 3, -1))
  return tmp_path / 'data', 'mixed channel counts: 00005.png has 3'


def _wrong_rank(tmp_path, mnist):
  np.save(tmp_path / 'flat.npy', mnist[0].reshape(COUNT, -1))
  return tmp_path / 'flat.npy', f'shape [{COUNT}, 784]: expected images [N, H, W]'


def _wrong_values(tmp_path, mnist):
  np.save(tmp_path / 'scaled.npy', mnist[0] / 255.0)
  return tmp_path / 'scaled.npy', 'float64 values from 0.0 to 1.0: expected uint8'


def _wrong_dtype(tmp_path, mnist):
  np.save(tmp_path / 'names.npy', np.array(list('abcdefgh')).reshape(2, 2, 2))
  return tmp_path / 'names.npy', 'expected uint8, bool or numbers 0 and 1'


def _too_small(tmp_path, mnist):
  np.save(tmp_path / 'tiny.npy', mnist[0][:, 10:16, 10:16])
  return tmp_path / 'tiny.npy', '6x6 are too small for the encoder'


@pytest.mark.parametrize('make', [_empty, _corrupt, _mixed_sizes, _mixed_channels, _wrong_rank,
                                  _wrong_values, _wrong_dtype, _too_small],
                         ids=lambda make: make.__name__.strip('_'))
def test_bad_input_is_one_line_naming_it_and_the_run_directory_stays_unwritten(
    make, mnist, tmp_path):
  source, message = make(tmp_path, mnist)
  model_dir = tmp_path / 'run'
  with pytest.raises(errors.DatasetError) as raised:
    run_binaries.run_train(str(model_dir), ['testing/tiny.gin'], dataset=str(source))
  assert message in str(raised.value) and '\n' not in str(raised.value)
  assert str(source.name) in str(raised.value) or str(source) in str(raised.value)
  assert '{{' not in str(raised.value) and 'function_node' not in str(raised.value)
  assert not model_dir.exists()


def _not_an_image(tmp_path, mnist):
  own_images.write_pngs(tmp_path / 'data', own_images.black_and_white(mnist[0][:5]))
  (tmp_path / 'data' / 'notes.png').write_text('a text file with an image\'s name')
  return tmp_path / 'data', 'notes.png: not a readable image'


_EARLY_CHECK = '''
import sys
from vlae_tf.cli import preflight
print(preflight.check_paths('train', {'dataset': sys.argv[1], 'image_size': sys.argv[2] or None}))
print('tensorflow' in sys.modules)
'''


@pytest.mark.parametrize('make', [_empty, _corrupt, _not_an_image, _mixed_sizes, _wrong_rank,
                                  _wrong_values, _wrong_dtype],
                         ids=lambda make: make.__name__.strip('_'))
def test_bad_input_is_one_line_before_tensorflow_loads(make, mnist, tmp_path):
  """bin/train's preflight finds what reading the images would find, with the same line, in a
  process that has not imported TensorFlow."""
  source, message = make(tmp_path, mnist)
  printed = subprocess.run([sys.executable, '-c', _EARLY_CHECK, str(source), ''],
                           capture_output=True, text=True, check=True, cwd=REPO).stdout
  problem, loaded = printed.splitlines()
  assert problem.startswith('error: ') and message in problem
  assert loaded == 'False'


def test_a_bad_image_size_and_a_good_folder_before_tensorflow_loads(mnist, tmp_path):
  folder = own_images.write_pngs(tmp_path / 'data', own_images.black_and_white(mnist[0][:5]))
  _write_png(tmp_path / 'data' / '00003.png', own_images.pad_to_40x32(mnist[0][3:4])[0])
  for size, expected in (('28by28', 'error: --image_size=28by28: expected HEIGHTxWIDTH, e.g. '
                          '--image_size=52x52.'), ('28x28', 'None')):
    printed = subprocess.run([sys.executable, '-c', _EARLY_CHECK, folder, size],
                             capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert printed.splitlines() == [expected, 'False']


def test_fewer_images_than_one_batch_is_one_line_with_the_fix(mnist, tmp_path):
  folder = own_images.write_pngs(tmp_path / 'few', own_images.black_and_white(mnist[0][:100]))
  model_dir = tmp_path / 'run'
  with pytest.raises(errors.DatasetError, match=r'few: \d+ train images, fewer than one batch of '
                     r'128: add images, or lower the batch, e.g. --gin_param=BATCH_SIZE=64'):
    run_binaries.run_train(str(model_dir), dataset=folder)
  assert not model_dir.exists()


def test_a_missing_dataset_is_one_line_before_tensorflow(tmp_path):
  problem = preflight.check_paths('train', {'dataset': str(tmp_path / 'nowhere')})
  assert problem.startswith(f'error: --dataset={tmp_path / "nowhere"}: no such folder or file')
  assert preflight.check_paths('train', {'dataset': 'static_mnist'}) is None
  with pytest.raises(errors.CliError, match='--image_size and --binarize apply to one'):
    run_binaries.run_train(str(tmp_path / 'run'), dataset='static_mnist', binarize='threshold')


def test_an_unknown_tfds_name_is_one_line():
  with pytest.raises(errors.DatasetError) as raised:
    user_images.read('tfds:no_such_dataset_here')
  assert str(raised.value).startswith('tfds:no_such_dataset_here: tensorflow-datasets cannot '
                                      'load it') and '\n' not in str(raised.value)


def _unzip_alphabets(shared_data, target, alphabets):
  """Lake's OMNIGLOT zip unzipped as it is (images_background_small1/alphabet/character/*.png),
  only the given alphabets."""
  import zipfile  # pylint: disable=g-import-not-at-top
  with zipfile.ZipFile(pathlib.Path(shared_data) / 'omniglot' /
                       'images_background_small1.zip') as archive:
    archive.extractall(target, [name for name in archive.namelist()
                                if name.split('/')[1:2] and name.split('/')[1] in alphabets])
  return target / 'images_background_small1'


@pytest.mark.parametrize('depth', ['flat', 'one level', 'two levels'])
def test_the_folder_that_holds_an_image_is_its_class_at_any_depth(shared_data, tmp_path, depth):
  """OMNIGLOT as it unzips: its characters (not its alphabets) are the classes, named
  'alphabet/character'; one level of class folders and a flat folder as before."""
  root = _unzip_alphabets(shared_data, tmp_path, ('Greek', 'Early_Aramaic'))
  if depth == 'one level':
    root = root / 'Greek'
  elif depth == 'flat':
    root = root / 'Greek' / 'character01'
  images = user_images.read(str(root), image_size=(28, 28))
  files = sorted(path.relative_to(root).as_posix() for path in root.rglob('*.png'))
  assert sorted(sum((list(names) for names in images.names.values()), [])) == files
  if depth == 'flat':
    assert images.class_names is None and 'classes' not in images.summary()
    return
  folders = sorted({posixpath.dirname(name) for name in files})
  assert images.class_names == tuple(folders)
  expected_classes = {'one level': 24, 'two levels': 24 + 22}[depth]
  assert len(folders) == expected_classes
  for split in ('train', 'test'):
    np.testing.assert_array_equal(
        images.labels[split],
        [folders.index(posixpath.dirname(name)) for name in images.names[split]])
  summary = images.summary()
  if depth == 'two levels':
    assert images.class_names[0] == 'Early_Aramaic/character01'
    assert (f'{expected_classes} classes (the folders that hold images, e.g. '
            'Early_Aramaic/character01; in 2 groups, e.g. Early_Aramaic)') in summary
  else:
    assert f'{expected_classes} classes (the folders that hold images, e.g. character01)' in summary
