"""Tests of vlae_tf.datasets: the real files in shared/data, crafted bad files, the tfds branch.

Expected sizes are the published split sizes (`datasets.info(name).split_sizes`) and, for the two
subsets in shared/data, the sizes its README documents (OMNIGLOT: 4,840 background images; CIFAR-10:
4,000 training and 1,000 test images).
"""

import builtins
import gzip
import io
import logging
import os
import pickle
import shlex
import struct
import sys
import tarfile
import types
import zipfile

import numpy as np
from PIL import Image
import pytest
import scipy.io
import tensorflow as tf

from vlae_tf import errors
from vlae_tf.data import catalogue
from vlae_tf.data import datasets

# Documented in shared/data/README.md: the two real subsets.
OMNIGLOT_SUBSET_IMAGES = 4_840
CIFAR10_SUBSET_SIZES = {'train': 4_000, 'train+valid': 4_000, 'test': 1_000}


@pytest.fixture(autouse=True)
def no_env_data_dir(monkeypatch):
  """Every test says where its data comes from: VLAE_DATA_DIR (set by some CI set-ups) is unset."""
  monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)


def as_array(dataset, count=None):
  """The first `count` (default all) images of a dataset as one numpy array."""
  if count is not None:
    dataset = dataset.take(count)
  return np.concatenate(list(dataset.batch(8192).as_numpy_iterator()))


def expected_size(name, split):
  if name == 'omniglot':  # Lake's background zips: every 10th image is validation
    valid = OMNIGLOT_SUBSET_IMAGES // 10
    return {'train': OMNIGLOT_SUBSET_IMAGES - valid, 'valid': valid,
            'train+valid': OMNIGLOT_SUBSET_IMAGES}[split]
  if name == 'cifar10':
    return CIFAR10_SUBSET_SIZES[split]
  return datasets.info(name).split_sizes[split]


def real_split_cases():
  slow = pytest.mark.slow  # parses a 50,000- or 60,000-image file
  cases = []
  for split in datasets.SPLITS:
    marks = [slow] if split != 'test' else []
    cases.append(pytest.param('static_mnist', split, marks=marks))
    cases.append(pytest.param('dynamic_mnist', split, marks=[] if split == 'test' else [slow]))
    cases.append(pytest.param('caltech101_silhouettes', split))
  cases += [pytest.param('omniglot', split) for split in ('train', 'valid', 'train+valid')]
  cases += [pytest.param('cifar10', split) for split in ('train', 'test', 'train+valid')]
  return cases


################################################################################
# Real data.


@pytest.mark.parametrize('name,split', real_split_cases())
def test_real_split_sizes_shapes_and_values(shared_data, name, split):
  dataset = datasets.load(name, split, data_dir=str(shared_data))
  dataset_info = datasets.info(name)
  size = expected_size(name, split)
  assert dataset.element_spec == tf.TensorSpec(dataset_info.shape, tf.float32)
  assert int(dataset.cardinality()) == size
  # Values of every image of the evaluation-sized splits, of the first 1,000 of the larger ones.
  images = as_array(dataset) if size <= 10_000 else as_array(dataset, 1_000)
  assert images.shape[1:] == dataset_info.shape and images.dtype == np.float32
  assert len(images) == min(size, 1_000) if size > 10_000 else len(images) == size
  if dataset_info.kind == 'binary':
    assert set(np.unique(images)) == {0.0, 1.0}
  else:
    assert np.all(images == np.round(images)) and images.min() == 0 and images.max() == 255
  if split == 'train+valid' and dataset_info.binarization != 'dynamic':
    train = as_array(datasets.load(name, 'train', data_dir=shared_data), 100)
    np.testing.assert_array_equal(images[:100], train)


def test_info():
  assert datasets.info('static_mnist').num_pixels == 784
  assert datasets.info('cifar10').num_pixels == 32 * 32 * 3
  assert datasets.info('cifar10').kind == '8bit'
  for name in catalogue.NAMES:
    sizes = datasets.info(name).split_sizes
    assert sizes['train+valid'] == sizes['train'] + sizes['valid']
    assert datasets.info(name).kind in ('binary', '8bit')
  assert datasets.info('caltech101_silhouettes').split_sizes['train'] == 4_100
  with pytest.raises(errors.DatasetError, match='Unknown dataset .*static_mnist'):
    datasets.info('mnist_static')


def test_static_mnist_is_identical_across_loads_and_iterations(shared_data):
  first = datasets.load('static_mnist', 'test', data_dir=shared_data, seed=1)
  second = datasets.load('static_mnist', 'test', data_dir=shared_data, seed=2)
  images = as_array(first, 500)
  np.testing.assert_array_equal(images, as_array(first, 500))
  np.testing.assert_array_equal(images, as_array(second, 500))


def test_static_mnist_matches_the_raw_amat_row_major(shared_data):
  with gzip.open(shared_data / 'binarized_mnist' / 'binarized_mnist_valid.amat.gz') as amat:
    rows = np.loadtxt(amat, max_rows=3)  # the slow reference parser, on 3 lines only
  images = as_array(datasets.load('static_mnist', 'valid', data_dir=shared_data), 3)
  np.testing.assert_array_equal(images[..., 0], rows.reshape(3, 28, 28))


@pytest.mark.slow
def test_dynamic_mnist_binarization_is_fresh_every_epoch_and_reproducible(shared_data):
  grey = read_idx_gz(shared_data / 'mnist' / 'train-images-idx3-ubyte.gz', count=64) / 255.0
  dataset = datasets.load('dynamic_mnist', 'train', data_dir=shared_data, seed=3)
  epoch_1, epoch_2 = as_array(dataset, 64), as_array(dataset, 64)
  assert not np.array_equal(epoch_1, epoch_2)
  # Bernoulli(grey): grey 0 is never 1, grey 1 always; the ink density matches the grey levels.
  for epoch in (epoch_1, epoch_2):
    assert np.all(epoch[grey == 0] == 0) and np.all(epoch[grey == 1] == 1)
    assert abs(epoch.mean() - grey.mean()) < 0.01
  # The same seed gives the same sequence of binarizations; another seed another one.
  again = datasets.load('dynamic_mnist', 'train', data_dir=shared_data, seed=3)
  np.testing.assert_array_equal(as_array(again, 64), epoch_1)
  np.testing.assert_array_equal(as_array(again, 64), epoch_2)
  other = datasets.load('dynamic_mnist', 'train', data_dir=shared_data, seed=4)
  assert not np.array_equal(as_array(other, 64), epoch_1)
  # repeat() passes are epochs too: the same sequence as re-iterating.
  repeated = as_array(datasets.load('dynamic_mnist', 'train', data_dir=shared_data, seed=3)
                      .take(64).repeat(2))
  np.testing.assert_array_equal(repeated, np.concatenate([epoch_1, epoch_2]))


def test_dynamic_mnist_test_split_is_binarized_once(shared_data):
  grey = read_idx_gz(shared_data / 'mnist' / 't10k-images-idx3-ubyte.gz', count=200) / 255.0
  dataset = datasets.load('dynamic_mnist', 'test', data_dir=shared_data, seed=5)
  images = as_array(dataset, 200)
  np.testing.assert_array_equal(images, as_array(dataset, 200))
  other_seed = datasets.load('dynamic_mnist', 'test', data_dir=shared_data, seed=6)
  np.testing.assert_array_equal(images, as_array(other_seed, 200))
  assert np.all(images[grey == 0] == 0) and np.all(images[grey == 1] == 1)
  assert 0 < np.mean(images[(grey > 0) & (grey < 1)]) < 1  # grey pixels are really sampled


def test_omniglot_zips_train_dynamic_valid_fixed(shared_data):
  train = datasets.load('omniglot', 'train', data_dir=shared_data, seed=7)
  first, second = as_array(train, 100), as_array(train, 100)
  assert not np.array_equal(first, second)
  np.testing.assert_array_equal(
      first, as_array(datasets.load('omniglot', 'train', data_dir=shared_data, seed=7), 100))
  valid = datasets.load('omniglot', 'valid', data_dir=shared_data, seed=7)
  np.testing.assert_array_equal(as_array(valid, 100), as_array(valid, 100))
  # Strokes are 1 on a background of 0: a character covers a minority of its pixels.
  assert 0.02 < first.mean() < 0.3


def test_omniglot_zips_without_evaluation_zip_have_no_test_split(shared_data):
  with pytest.raises(errors.DatasetError, match=r"images_evaluation\*\.zip.*'test' split"):
    datasets.load('omniglot', 'test', data_dir=shared_data)


def test_caltech_is_upright_fortran_order_with_silhouette_one(shared_data):
  path = shared_data / 'caltech101_silhouettes' / 'caltech101_silhouettes_28_split1.mat'
  rows = scipy.io.loadmat(str(path))['val_data']
  images = as_array(datasets.load('caltech101_silhouettes', 'valid', data_dir=shared_data))
  upright = 1 - rows.reshape((-1, 28, 28), order='F')  # column-major, object 0 in the file
  np.testing.assert_array_equal(images[..., 0], upright)
  assert not np.array_equal(images[..., 0], np.swapaxes(upright, 1, 2))
  # The silhouette is the object, centred: the border is mostly background.
  border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
  assert border.mean() < 0.2 < images[:, 10:18, 10:18].mean()


def test_cifar10_first_image_matches_the_raw_pickle(shared_data):
  with open(shared_data / 'cifar10' / 'cifar-10-batches-py' / 'data_batch_1', 'rb') as file:
    raw = pickle.load(file, encoding='bytes')[b'data'][0]  # trusted test data
  image = as_array(datasets.load('cifar10', 'train', data_dir=shared_data), 1)[0]
  assert image.shape == (32, 32, 3)
  # Row-major red, green, blue planes: (row, col, channel) = raw[channel * 1024 + row * 32 + col].
  for row, col, channel in [(0, 0, 0), (0, 1, 0), (1, 0, 0), (0, 0, 1), (0, 0, 2), (31, 30, 2)]:
    assert image[row, col, channel] == raw[channel * 1024 + row * 32 + col]
  np.testing.assert_array_equal(image, raw.reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar10_subset_warns_and_has_no_valid_split(shared_data, caplog):
  with caplog.at_level(logging.WARNING):
    datasets.load('cifar10', 'train', data_dir=shared_data)
  assert 'data_batch_2' in caplog.text and '4000 images' in caplog.text
  with pytest.raises(errors.DatasetError, match='valid split .* lacks data_batch_2'):
    datasets.load('cifar10', 'valid', data_dir=shared_data)


def test_data_dir_from_environment_and_argument_wins(shared_data, monkeypatch, tmp_path):
  monkeypatch.setenv(datasets.ENV_DATA_DIR, str(shared_data))
  assert len(as_array(datasets.load('caltech101_silhouettes', 'test'))) == 2_307
  with pytest.raises(errors.DatasetError, match='does not exist'):  # the explicit argument wins
    datasets.load('caltech101_silhouettes', 'test', data_dir=tmp_path / 'missing')
  monkeypatch.setenv(datasets.ENV_DATA_DIR, str(tmp_path / 'missing'))
  dataset = datasets.load('caltech101_silhouettes', 'test', data_dir=shared_data)
  assert len(as_array(dataset)) == 2_307


################################################################################
# Crafted files: the format details and every bad input.


def read_idx_gz(path, count):
  with gzip.open(path) as file:
    magic, total, height, width = struct.unpack('>IIII', file.read(16))
    assert magic == 0x803
    pixels = np.frombuffer(file.read(count * height * width), np.uint8)
  return pixels.reshape(count, height, width, 1)


def amat_text(rows):
  return ''.join(' '.join(str(value) for value in row) + '\n' for row in rows).encode()


def write_amat(directory, rows, split='test', gz=True):
  path = directory / f'binarized_mnist_{split}.amat{".gz" if gz else ""}'
  path.write_bytes(gzip.compress(amat_text(rows)) if gz else amat_text(rows))
  return path


def write_idx(path, images, magic=0x803):
  header = struct.pack('>IIII', magic, len(images), *images.shape[1:3])
  data = header + images.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(data) if path.suffix == '.gz' else data)


def letter_f(size=28):
  """An asymmetric 0/1 'F', so that any transpose or flip changes it."""
  image = np.zeros((size, size), np.uint8)
  image[4:24, 6:9] = 1
  image[4:7, 6:20] = 1
  image[12:15, 6:16] = 1
  return image


def cifar_batch(images, labels, protocol=2):
  data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # [N, 3 * 32 * 32]
  return pickle.dumps({b'batch_label': b'crafted', b'labels': list(labels), b'data': data},
                      protocol=protocol)


def png_bytes(pixels):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='PNG')
  return buffer.getvalue()


def write_omniglot_zip(path, entries):
  """entries: {'Alphabet/character01/0001_01.png': [105, 105] uint8 (0 = stroke)}."""
  with zipfile.ZipFile(path, 'w') as archive:
    for name, pixels in entries.items():
      archive.writestr(f'{path.stem}/{name}', png_bytes(pixels))


def assert_names(error, *parts):
  message = str(error.value)
  for part in parts:
    assert str(part) in message, f'{part!r} not in {message!r}'


def test_amat_plain_and_gzipped_parse_to_row_major_images(tmp_path):
  rows = np.stack([letter_f().reshape(-1), 1 - letter_f().reshape(-1)])
  write_amat(tmp_path, rows, gz=False)
  images = as_array(datasets.load('static_mnist', 'test', data_dir=tmp_path))
  np.testing.assert_array_equal(images[..., 0], [letter_f(), 1 - letter_f()])
  (tmp_path / 'binarized_mnist').mkdir()
  write_amat(tmp_path / 'binarized_mnist', rows[::-1], split='valid')  # the subfolder, gzipped
  images = as_array(datasets.load('static_mnist', 'valid', data_dir=tmp_path))
  np.testing.assert_array_equal(images[..., 0], [1 - letter_f(), letter_f()])


def test_parsed_files_are_reread_when_they_change(tmp_path):
  write_amat(tmp_path, [letter_f().reshape(-1)])
  assert len(as_array(datasets.load('static_mnist', 'test', data_dir=tmp_path))) == 1
  write_amat(tmp_path, [letter_f().reshape(-1)] * 3)
  assert len(as_array(datasets.load('static_mnist', 'test', data_dir=tmp_path))) == 3


def test_truncated_gzip(tmp_path):
  path = write_amat(tmp_path, [letter_f().reshape(-1)] * 4)
  path.write_bytes(path.read_bytes()[:-30])
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('static_mnist', 'test', data_dir=tmp_path)
  assert_names(error, path, 'gzip', 'binarized_mnist', 'larocheh')
  assert error.value.__cause__ is not None


def test_non_gzip_bytes_named_gz(tmp_path):
  path = tmp_path / 't10k-images-idx3-ubyte.gz'
  path.write_bytes(b'this is not gzip data at all')
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('dynamic_mnist', 'test', data_dir=tmp_path)
  assert_names(error, path, 'not a valid gzip file', 'yann.lecun.com')


def test_amat_line_with_783_values(tmp_path):
  rows = [letter_f().reshape(-1), letter_f().reshape(-1)[:783]]
  path = write_amat(tmp_path, rows)
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('static_mnist', 'test', data_dir=tmp_path)
  assert_names(error, path, 'line 2 has 783 values', 'expected 784')


def test_amat_with_value_2(tmp_path):
  row = letter_f().reshape(-1)
  row[100] = 2
  path = write_amat(tmp_path, [letter_f().reshape(-1), row])
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('static_mnist', 'test', data_dir=tmp_path)
  assert_names(error, path, 'line 2, value 101', "'2' is not 0 or 1")


def test_amat_with_multi_character_value(tmp_path):
  path = tmp_path / 'binarized_mnist_test.amat'
  path.write_bytes(amat_text([letter_f().reshape(-1)]).replace(b'0 1', b'0.0 1', 1))
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('static_mnist', 'test', data_dir=tmp_path)
  assert_names(error, path, "b'0.0' is not 0 or 1")


@pytest.mark.parametrize('problem', ['magic', 'truncated', 'size'])
def test_bad_idx_files(tmp_path, problem):
  path = tmp_path / 't10k-images-idx3-ubyte'
  images = np.zeros((3, 28, 28), np.uint8)
  if problem == 'magic':
    write_idx(path, images, magic=0x801)  # a labels file
  elif problem == 'size':
    write_idx(path, np.zeros((3, 28, 27), np.uint8))
  else:
    write_idx(path, images)
    path.write_bytes(path.read_bytes()[:-1])
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('dynamic_mnist', 'test', data_dir=tmp_path)
  expected = {'magic': 'magic number 0x00000801', 'truncated': 'truncated',
              'size': '28x27 images'}[problem]
  assert_names(error, path, expected, 'train-images-idx3-ubyte')


def test_idx_grey_levels_plain_file_in_subfolder(tmp_path):
  (tmp_path / 'mnist').mkdir()
  grey = np.zeros((2, 28, 28), np.uint8)
  grey[0] = letter_f() * 255
  grey[1, :, :14] = 255
  write_idx(tmp_path / 'mnist' / 't10k-images-idx3-ubyte', grey)
  images = as_array(datasets.load('dynamic_mnist', 'test', data_dir=tmp_path))
  np.testing.assert_array_equal(images[..., 0], grey / 255)  # grey levels 0 and 1 are exact


def write_caltech(path, **overrides):
  splits = {'train_data': np.stack([letter_f()] * 3), 'val_data': np.stack([letter_f()] * 2),
            'test_data': np.stack([1 - letter_f()])}
  variables = {key: 1 - images.reshape(len(images), -1, order='F')  # Marlin's layout
               for key, images in splits.items()}
  variables.update(overrides)
  scipy.io.savemat(str(path), {k: v for k, v in variables.items() if v is not None})


def test_caltech_crafted_splits(tmp_path):
  write_caltech(tmp_path / 'caltech101_silhouettes_28_split1.mat')
  load = lambda split: as_array(datasets.load('caltech101_silhouettes', split, data_dir=tmp_path))
  np.testing.assert_array_equal(load('train')[..., 0], [letter_f()] * 3)
  np.testing.assert_array_equal(load('train+valid')[..., 0], [letter_f()] * 5)
  np.testing.assert_array_equal(load('test')[..., 0], [1 - letter_f()])


@pytest.mark.parametrize('override,expected', [
    ({'val_data': None}, 'no variable(s) val_data'),
    ({'test_data': np.zeros((2, 783), np.uint8)}, 'test_data has shape (2, 783)'),
    ({'train_data': np.full((2, 784), 2, np.uint8)}, 'train_data holds values [2]'),
])
def test_bad_caltech_mat(tmp_path, override, expected):
  path = tmp_path / 'caltech101_silhouettes_28_split1.mat'
  write_caltech(path, **override)
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('caltech101_silhouettes', 'train', data_dir=tmp_path)
  assert_names(error, path, expected, 'people.cs.umass.edu')


@pytest.mark.parametrize('content', [b'MATLAB 5.0 MAT-file' + b'\0' * 10, b'\x00' * 200])
def test_corrupt_mat(tmp_path, content):
  path = tmp_path / 'caltech101_silhouettes_28_split1.mat'
  path.write_bytes(content)
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('caltech101_silhouettes', 'test', data_dir=tmp_path)
  assert_names(error, path, 'caltech101_silhouettes_28_split1.mat')


def test_truncated_real_mat(shared_data, tmp_path):
  source = shared_data / 'caltech101_silhouettes' / 'caltech101_silhouettes_28_split1.mat'
  path = tmp_path / source.name
  path.write_bytes(source.read_bytes()[:400_000])
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('caltech101_silhouettes', 'test', data_dir=tmp_path)
  assert_names(error, path)
  assert error.value.__cause__ is not None or 'no variable' in str(error.value)


def test_caltech_without_data_dir_says_where_to_get_it():
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('caltech101_silhouettes', 'train')
  assert_names(error, 'not in tensorflow-datasets', datasets.ENV_DATA_DIR,
               'https://people.cs.umass.edu/~marlin/data/caltech101_silhouettes_28_split1.mat')


def test_chardata_is_iwae_fortran_order_and_wins_over_zips(tmp_path):
  # IWAE layout: [784, N] columns, each a 28x28 image flattened column-major.
  upright = np.stack([letter_f()] * 1347 + [1 - letter_f()])  # [1348, 28, 28]
  test_images = np.stack([1 - letter_f(), letter_f()])
  to_columns = lambda images: images.reshape(len(images), -1, order='F').T.astype(np.float64)
  (tmp_path / 'omniglot').mkdir()
  scipy.io.savemat(str(tmp_path / 'omniglot' / 'chardata.mat'),
                   {'data': to_columns(upright), 'testdata': to_columns(test_images)})
  write_omniglot_zip(tmp_path / 'images_evaluation.zip', {'A/character01/0001_01.png': np.zeros(
      (105, 105), np.uint8)})
  load = lambda split: as_array(datasets.load('omniglot', split, data_dir=tmp_path))[..., 0]
  np.testing.assert_array_equal(load('test'), test_images)  # grey 0/1: binarization is exact
  assert len(load('train+valid')) == 1348
  assert len(load('valid')) == 1345  # the last 1,345 training images
  np.testing.assert_array_equal(load('train'), upright[:3])
  np.testing.assert_array_equal(load('valid')[-1], 1 - letter_f())


def test_bad_chardata(tmp_path):
  path = tmp_path / 'chardata.mat'
  scipy.io.savemat(str(path), {'data': np.zeros((28, 28)), 'testdata': np.zeros((784, 2))})
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('omniglot', 'test', data_dir=tmp_path)
  assert_names(error, path, 'data has shape (28, 28), not [784, N > 0]', 'chardata.mat')


def lake_png(top_rows_black):
  pixels = np.full((105, 105), 255, np.uint8)  # white background, black (0) strokes
  pixels[:top_rows_black] = 0
  return pixels


def test_omniglot_zips_are_downsampled_inverted_and_deduplicated(tmp_path):
  background = {f'Alpha/character0{c}/000{c}_{d:02d}.png': lake_png(52)
                for c in (1, 2) for d in range(1, 11)}  # 20 images
  write_omniglot_zip(tmp_path / 'images_background_small1.zip', background)
  overlap = dict(list(background.items())[:5])
  overlap['Beta/character01/0100_01.png'] = lake_png(0)
  write_omniglot_zip(tmp_path / 'images_background_small2.zip', overlap)
  write_omniglot_zip(tmp_path / 'images_evaluation.zip',
                     {'Gamma/character01/0200_01.png': lake_png(105)})
  load = lambda split: as_array(datasets.load('omniglot', split, data_dir=tmp_path))[..., 0]
  train_and_valid = load('train+valid')
  assert len(train_and_valid) == 21  # 20 + 1 new, the 5 duplicates once
  assert len(load('valid')) == 2 and len(load('train')) == 19
  alpha = train_and_valid[:20]  # sorted: Alpha before Beta
  assert np.all(alpha[:, :10] == 1) and np.all(alpha[:, 18:] == 0)  # black top half -> 1, upright
  np.testing.assert_array_equal(train_and_valid[20], np.zeros((28, 28)))  # all white -> 0
  np.testing.assert_array_equal(load('test'), np.ones((1, 28, 28)))  # all black -> 1


@pytest.mark.parametrize('problem', ['corrupt_zip', 'wrong_size', 'bad_png'])
def test_bad_omniglot_zips(tmp_path, problem):
  path = tmp_path / 'images_background.zip'
  if problem == 'corrupt_zip':
    path.write_bytes(b'PK\x03\x04 not really a zip')
  elif problem == 'wrong_size':
    write_omniglot_zip(path, {'A/character01/0001_01.png': np.zeros((28, 28), np.uint8)})
  else:
    with zipfile.ZipFile(path, 'w') as archive:
      archive.writestr('images_background/A/character01/0001_01.png', b'\x89PNG garbage')
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('omniglot', 'train', data_dir=tmp_path)
  expected = {'corrupt_zip': path, 'wrong_size': '28x28, not 105x105',
              'bad_png': 'A/character01/0001_01.png'}[problem]
  assert_names(error, expected, 'images_background')


def test_omniglot_without_any_file(tmp_path):
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('omniglot', 'train', data_dir=tmp_path)
  assert_names(error, 'images_background*.zip', 'chardata.mat', 'github.com/brendenlake/omniglot')


def make_cifar_dir(root, batches, images_per_batch=3):
  folder = root / 'cifar10' / 'cifar-10-batches-py'
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for batch in batches:
    images = rng.integers(0, 256, (images_per_batch, 32, 32, 3), dtype=np.uint8)
    (folder / batch).write_bytes(cifar_batch(images, range(images_per_batch)))
  return folder


def test_cifar10_valid_is_the_last_5000_of_five_batches(tmp_path):
  folder = make_cifar_dir(tmp_path, [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch'],
                          images_per_batch=1_001)
  load = lambda split: as_array(datasets.load('cifar10', split, data_dir=tmp_path))
  count = lambda split: int(datasets.load('cifar10', split, data_dir=tmp_path).cardinality())
  assert (count('train'), count('valid'), count('train+valid')) == (5, 5_000, 5_005)
  valid = load('valid')
  assert len(valid) == 5_000
  with open(folder / 'data_batch_5', 'rb') as file:
    last = pickle.load(file, encoding='bytes')[b'data'][-1]
  np.testing.assert_array_equal(valid[-1], last.reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar10_tarball(tmp_path):
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  with tarfile.open(tmp_path / 'cifar-10-python.tar.gz', 'w:gz') as archive:
    for name, protocol in (('data_batch_1', 2), ('test_batch', 4)):
      content = cifar_batch(images, [0, 1], protocol=protocol)
      member = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      member.size = len(content)
      archive.addfile(member, io.BytesIO(content))
  for split in ('train', 'test'):
    np.testing.assert_array_equal(
        as_array(datasets.load('cifar10', split, data_dir=tmp_path)), images)


def test_corrupt_cifar10_tarball(tmp_path):
  path = tmp_path / 'cifar-10-python.tar.gz'
  path.write_bytes(gzip.compress(b'not a tar archive' * 100)[:-8])
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('cifar10', 'test', data_dir=tmp_path)
  assert_names(error, path, 'cifar-10-python.tar.gz')


def test_truncated_pickle(tmp_path):
  folder = make_cifar_dir(tmp_path, ['test_batch'])
  path = folder / 'test_batch'
  path.write_bytes(path.read_bytes()[:-100])
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('cifar10', 'test', data_dir=tmp_path)
  assert_names(error, path, 'Cannot unpickle', 'cifar-10-python.tar.gz')


@pytest.mark.parametrize('content,expected', [
    (pickle.dumps([1, 2, 3], protocol=2), 'holds a list, not a dict'),
    (pickle.dumps({b'data': np.zeros((2, 3071), np.uint8)}, protocol=2), 'data is uint8 [2, 3071]'),
    (pickle.dumps({b'data': np.zeros((2, 3072), np.float32)}, protocol=2), 'float32'),
    (pickle.dumps({b'data': np.zeros((2, 3072), np.uint8), b'labels': [0]}, protocol=2),
     '1 labels for 2 images'),
])
def test_malformed_cifar10_batches(tmp_path, content, expected):
  folder = make_cifar_dir(tmp_path, [])
  (folder / 'test_batch').write_bytes(content)
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('cifar10', 'test', data_dir=tmp_path)
  assert_names(error, folder / 'test_batch', expected)


class RunsShell:
  """Unpickles into os.system(command)."""

  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return os.system, (self.command,)


class RunsEval:
  """Unpickles into builtins.eval(source)."""

  def __init__(self, source):
    self.source = source

  def __reduce__(self):
    return builtins.eval, (self.source,)


def malicious_pickle(kind, marker):
  """A protocol-2 pickle that, unpickled without restrictions, runs code or decodes rot_13."""
  if kind == 'codecs':
    # _codecs.encode('x', 'rot_13'): the allowed latin-1 encoder must not reach other codecs.
    return (b'\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x06\x00\x00\x00rot_13'
            b'\x86R.')
  payload = {
      'os.system': RunsShell(f'touch {shlex.quote(str(marker))}'),
      'builtins.eval': RunsEval(f'open({str(marker)!r}, "w").write("pwned")'),
  }[kind]
  return pickle.dumps({b'data': payload, b'labels': []}, protocol=2)


@pytest.mark.parametrize('kind', ['os.system', 'builtins.eval', 'codecs'])
def test_malicious_pickle_runs_no_code(tmp_path, kind):
  marker = tmp_path / 'pwned'
  folder = make_cifar_dir(tmp_path, [])
  (folder / 'test_batch').write_bytes(malicious_pickle(kind, marker))
  with pytest.raises(errors.DatasetError, match='forbidden') as error:
    datasets.load('cifar10', 'test', data_dir=tmp_path)
  assert_names(error, folder / 'test_batch')
  assert isinstance(error.value.__cause__, pickle.UnpicklingError)
  assert not marker.exists()


def test_missing_directory(tmp_path):
  with pytest.raises(errors.DatasetError) as error:
    datasets.load('static_mnist', 'train', data_dir=tmp_path / 'nowhere')
  assert_names(error, tmp_path / 'nowhere', 'does not exist', 'binarized_mnist_{train,valid,test}')


@pytest.mark.parametrize('name,expected', [
    ('static_mnist', ['binarized_mnist_train.amat', 'larocheh/public/datasets/binarized_mnist']),
    ('dynamic_mnist', ['train-images-idx3-ubyte', 'yann.lecun.com/exdb/mnist']),
    ('omniglot', ['images_background*.zip', 'chardata.mat']),
    ('caltech101_silhouettes', ['caltech101_silhouettes_28_split1.mat', 'people.cs.umass.edu']),
    ('cifar10', ['cifar-10-python.tar.gz', 'cs.toronto.edu/~kriz']),
])
def test_missing_files_name_what_is_expected(tmp_path, name, expected):
  with pytest.raises(errors.DatasetError) as error:
    datasets.load(name, 'train', data_dir=tmp_path)
  assert_names(error, tmp_path, *expected)


def test_unknown_name_and_split(tmp_path):
  with pytest.raises(errors.DatasetError, match="Unknown dataset 'mnist'.*dynamic_mnist"):
    datasets.load('mnist', 'train', data_dir=tmp_path)
  with pytest.raises(errors.DatasetError,
                     match="Unknown split 'validation' of static_mnist.*train"):
    datasets.load('static_mnist', 'validation', data_dir=tmp_path)
  assert issubclass(errors.DatasetError, ValueError)


################################################################################
# tensorflow-datasets (never downloaded here: a fake module records the calls).

FAKE_TFDS_IMAGES = {
    'binarized_mnist': lambda: np.stack([letter_f()[..., None]] * 20),
    'mnist': lambda: np.stack([letter_f()[..., None] * 255] * 20),
    'omniglot': lambda: np.stack([np.repeat(lake_png(52)[..., None], 3, -1)] * 20),
    'cifar10': lambda: np.arange(20 * 32 * 32 * 3).reshape(20, 32, 32, 3) % 256,
}


@pytest.fixture
def fake_tfds(monkeypatch):
  calls = []

  def load(name, split, shuffle_files=True, **unused_kwargs):
    calls.append((name, split, shuffle_files))
    images = FAKE_TFDS_IMAGES[name]().astype(np.uint8)
    return tf.data.Dataset.from_tensor_slices({'image': images, 'label': np.zeros(20, np.int64)})

  module = types.ModuleType('tensorflow_datasets')
  module.load = load
  # Already downloaded and prepared: no network check.
  module.builder = lambda name: types.SimpleNamespace(is_prepared=lambda: True)
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', module)
  return calls


@pytest.mark.parametrize('name,split,tfds_name,tfds_split', [
    ('static_mnist', 'train', 'binarized_mnist', 'train'),
    ('static_mnist', 'valid', 'binarized_mnist', 'validation'),
    ('static_mnist', 'test', 'binarized_mnist', 'test'),
    ('static_mnist', 'train+valid', 'binarized_mnist', 'train+validation'),
    ('dynamic_mnist', 'train', 'mnist', 'train[:50000]'),
    ('dynamic_mnist', 'valid', 'mnist', 'train[50000:]'),
    ('dynamic_mnist', 'test', 'mnist', 'test'),
    ('dynamic_mnist', 'train+valid', 'mnist', 'train'),
    ('omniglot', 'train', 'omniglot', 'train'),
    ('omniglot', 'valid', 'omniglot', 'train'),
    ('omniglot', 'test', 'omniglot', 'test'),
    ('cifar10', 'train', 'cifar10', 'train[:45000]'),
    ('cifar10', 'valid', 'cifar10', 'train[45000:]'),
    ('cifar10', 'test', 'cifar10', 'test'),
    ('cifar10', 'train+valid', 'cifar10', 'train'),
])
def test_tfds_branch(fake_tfds, name, split, tfds_name, tfds_split):
  images = as_array(datasets.load(name, split))
  assert fake_tfds == [(tfds_name, tfds_split, False)]
  assert images.shape[1:] == datasets.info(name).shape and images.dtype == np.float32
  if name == 'cifar10':
    np.testing.assert_array_equal(images, FAKE_TFDS_IMAGES['cifar10']())
  elif name == 'omniglot':
    assert len(images) == {'train': 18, 'valid': 2, 'test': 20}[split]  # every 10th is valid
    assert np.all(images[:, :10] == 1) and np.all(images[:, 18:] == 0)
  else:
    np.testing.assert_array_equal(images[..., 0], np.stack([letter_f()] * 20))


def test_tensorflow_datasets_offline_is_one_line_error(tmp_path, monkeypatch):
  """Without --data_dir and without the network, one DatasetError that names both ways out.

  The network is cut for this test only, whatever the machine has: every proxy variable points at
  a closed local port, so the download fails at once (and TFDS_DATA_DIR is empty, so nothing is
  found prepared).
  """
  monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'tfds'))
  for variable in ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY'):
    monkeypatch.setenv(variable, 'http://127.0.0.1:9')
  for variable in ('NO_PROXY', 'no_proxy'):
    monkeypatch.delenv(variable, raising=False)
  with pytest.raises(errors.DatasetError) as raised:
    datasets.load('dynamic_mnist', 'test')
  message = str(raised.value)
  assert '\n' not in message
  assert 'needs the network' in message and '--data_dir' in message, message
