"""Every dataset of the VLAE paper, from local raw files or tensorflow-datasets; binarization.

One entry point, `load(name, split, data_dir=None, seed=0)`, returns an unbatched `tf.data.Dataset`
of images [height, width, channels]: float32 in {0, 1} for the binary datasets, float32 integers
0..255 for CIFAR-10. `info(name)` describes a dataset (shape, pixels per image for bits/dim, kind,
published split sizes), and `make_train_pipeline` / `make_eval_pipeline` batch, shuffle and
prefetch.

Datasets and their sources:

* `static_mnist`: MNIST binarized once by Larochelle & Murray (2011, "The neural autoregressive
  distribution estimator"), as distributed by H. Larochelle:
  http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/ (`binarized_mnist_{train,
  valid,test}.amat`, one image a line, 784 values 0/1, row-major). 50,000 / 10,000 / 10,000.
* `dynamic_mnist`: MNIST (LeCun et al. 1998, http://yann.lecun.com/exdb/mnist/, idx files), grey
  levels / 255 binarized by Bernoulli sampling afresh at every pass over the data (Salakhutdinov &
  Murray 2008; the protocol of Burda et al. 2016, "Importance weighted autoencoders", IWAE). The
  last 10,000 images of the training file are the validation split.
* `omniglot`: OMNIGLOT (Lake et al. 2015, https://github.com/brendenlake/omniglot), either the 28x28
  `chardata.mat` of the IWAE repository (https://github.com/yburda/iwae, 24,345 train / 8,070 test;
  the last 1,345 training images are the validation split, as in the VampPrior and Sylvester-flow
  code) or Lake's 105x105 PNG zips downsampled to 28x28 (every 10th background image is validation,
  the evaluation alphabets are the test split). Grey levels binarized as for `dynamic_mnist`.
* `caltech101_silhouettes`: Caltech-101 Silhouettes 28x28, split 1 (Marlin et al. 2010, "Inductive
  principles for restricted Boltzmann machine learning"),
  https://people.cs.umass.edu/~marlin/data/caltech101_silhouettes_28_split1.mat. Binary already;
  its column-major rows are reshaped upright and inverted so that the silhouette is 1.
* `cifar10`: CIFAR-10 (Krizhevsky 2009), the Python pickle layout of
  https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz. The last 5,000 training images are the
  validation split.

Splits are 'train', 'valid', 'test' and 'train+valid'; 'train+valid' is the training set of the
literature, 'train' excludes the validation images.

Binarization of grey-level data (`dynamic_mnist`, `omniglot`):

* 'train' and 'train+valid' are binarized dynamically: pixel x is 1 with probability equal to its
  grey level, with fresh noise every time the dataset is iterated (every epoch, including each pass
  of `dataset.repeat()`). Images are binarized in chunks of 1,024 consecutive images (one vectorized
  op per chunk); the noise of chunk c in iteration k comes from the stateless key (r_k_c, c), where
  r_k_c is element c of `tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`: one
  `Dataset` object gives a new binarization per iteration, and two datasets made with the same
  `seed` give the same sequence of binarizations. (As for every seeded TensorFlow op, the sequence
  also depends on the global seed if `tf.random.set_seed` was called.) The sequence restarts when a
  new `Dataset` is made, e.g. after restarting a program.
* 'valid' and 'test' are binarized once, with the fixed key (EVAL_BINARIZATION_SEED, c) for chunk
  c, independently of `seed`: every model is evaluated on the same binary images.

Data files are untrusted: every parse error, wrong shape or value becomes a `DatasetError` that
names the file, the problem, and the files the dataset needs with their download address. The
CIFAR-10 pickles are read by an unpickler that only builds plain data and numpy arrays.

Without a data directory (argument `data_dir` or the environment variable VLAE_DATA_DIR), datasets
come from tensorflow-datasets (`binarized_mnist`, `mnist`, `omniglot`, `cifar10`), which downloads
them; Caltech-101 Silhouettes is not in its catalogue.
"""

import dataclasses
import functools
import gzip
import io
import os
import pathlib
import pickle
import socket
import struct
import tarfile
import types
import zipfile
import zlib
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from absl import logging
import gin
import numpy as np
import tensorflow as tf

SPLITS = ('train', 'valid', 'test', 'train+valid')

# Key of the one-off binarization of evaluation splits ('valid', 'test') of grey-level datasets.
EVAL_BINARIZATION_SEED = 20170308

# Splits binarized afresh at every iteration; the others (evaluation) are binarized once.
_DYNAMIC_SPLITS = ('train', 'train+valid')

ENV_DATA_DIR = 'VLAE_DATA_DIR'

PathLike = Union[str, os.PathLike]


class DatasetError(ValueError):
  """A dataset cannot be loaded: unknown name or split, missing, corrupt or malformed data."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a dataset is, independent of where it is loaded from.

  Attributes:
    name: the name `load` takes.
    shape: (height, width, channels) of one image.
    kind: 'binary' (float32 values in {0, 1}) or '8bit' (float32 integers 0..255).
    binarization: 'static' (binary in the files), 'dynamic' (grey levels sampled afresh at every
      iteration of the training splits, fixed once for evaluation splits) or None (8-bit data).
    split_sizes: published number of images of every split.
    files: the raw files `load` reads from a data directory.
    url: where the raw files come from.
    tfds_name: the tensorflow-datasets name used without a data directory, or None.
  """
  name: str
  shape: Tuple[int, int, int]
  kind: str
  binarization: Optional[str]
  split_sizes: Mapping[str, int]
  files: str
  url: str
  tfds_name: Optional[str]

  @property
  def num_pixels(self) -> int:
    """Dimensions per image, height * width * channels: the denominator of bits/dim."""
    return int(np.prod(self.shape))


def _sizes(train: int, valid: int, test: int) -> Mapping[str, int]:
  return types.MappingProxyType(
      {'train': train, 'valid': valid, 'test': test, 'train+valid': train + valid})


_MNIST_URL = 'http://yann.lecun.com/exdb/mnist/'
_OMNIGLOT_URL = 'https://github.com/brendenlake/omniglot/tree/master/python'
_CHARDATA_URL = 'https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat'
_CALTECH_URL = 'https://people.cs.umass.edu/~marlin/data/caltech101_silhouettes_28_split1.mat'
_CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'

_INFOS: Dict[str, DatasetInfo] = {
    'static_mnist': DatasetInfo(
        name='static_mnist', shape=(28, 28, 1), kind='binary', binarization='static',
        split_sizes=_sizes(50_000, 10_000, 10_000),
        files='binarized_mnist_{train,valid,test}.amat or .amat.gz, in DATA_DIR or '
              'DATA_DIR/binarized_mnist',
        url='http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/',
        tfds_name='binarized_mnist'),
    'dynamic_mnist': DatasetInfo(
        name='dynamic_mnist', shape=(28, 28, 1), kind='binary', binarization='dynamic',
        split_sizes=_sizes(50_000, 10_000, 10_000),
        files='train-images-idx3-ubyte and t10k-images-idx3-ubyte (or .gz), in DATA_DIR or '
              'DATA_DIR/mnist',
        url=_MNIST_URL, tfds_name='mnist'),
    'omniglot': DatasetInfo(
        name='omniglot', shape=(28, 28, 1), kind='binary', binarization='dynamic',
        split_sizes=_sizes(23_000, 1_345, 8_070),
        files='chardata.mat (IWAE, 28x28), or images_background*.zip and images_evaluation*.zip '
              "(Lake's 105x105 PNGs), in DATA_DIR or DATA_DIR/omniglot",
        url=f'{_CHARDATA_URL} or {_OMNIGLOT_URL}', tfds_name='omniglot'),
    'caltech101_silhouettes': DatasetInfo(
        name='caltech101_silhouettes', shape=(28, 28, 1), kind='binary', binarization='static',
        split_sizes=_sizes(4_100, 2_264, 2_307),
        files='caltech101_silhouettes_28_split1.mat, in DATA_DIR or '
              'DATA_DIR/caltech101_silhouettes',
        url=_CALTECH_URL, tfds_name=None),
    'cifar10': DatasetInfo(
        name='cifar10', shape=(32, 32, 3), kind='8bit', binarization=None,
        split_sizes=_sizes(45_000, 5_000, 10_000),
        files='cifar-10-batches-py/{data_batch_1..5,test_batch} or cifar-10-python.tar.gz, in '
              'DATA_DIR or DATA_DIR/cifar10',
        url=_CIFAR10_URL, tfds_name='cifar10'),
}

NAMES = tuple(_INFOS)


def info(name: str) -> DatasetInfo:
  """Returns the `DatasetInfo` of dataset `name`.

  Raises:
    DatasetError: `name` is not one of `NAMES`.
  """
  try:
    return _INFOS[name]
  except (KeyError, TypeError):
    raise DatasetError(f'Unknown dataset {name!r}; expected one of {", ".join(NAMES)}.') from None


def _needs(name: str) -> str:
  """What dataset `name` needs, for error messages."""
  dataset = _INFOS[name]
  return f'{name} needs {dataset.files} (from {dataset.url})'


################################################################################
# Public entry points.


@gin.register(module='vlae_tf.datasets')
def load(name: str, split: str, data_dir: Optional[PathLike] = None,
         seed: int = 0) -> tf.data.Dataset:
  """Loads one split of a dataset as an unbatched dataset of images.

  Args:
    name: one of `NAMES`: 'static_mnist', 'dynamic_mnist', 'omniglot', 'caltech101_silhouettes',
      'cifar10'.
    split: one of `SPLITS`: 'train', 'valid', 'test', 'train+valid'.
    data_dir: directory of raw files (see `info(name).files`). Defaults to the environment variable
      VLAE_DATA_DIR; when neither is set, the dataset comes from tensorflow-datasets.
    seed: seed of the dynamic binarization of training splits of grey-level datasets; ignored by
      the others.

  Returns:
    A `tf.data.Dataset` of float32 images [height, width, channels]: values in {0, 1} for binary
    datasets, integers 0..255 for CIFAR-10.

  Raises:
    DatasetError: unknown name or split, missing directory or file, unreadable or malformed data.
  """
  dataset_info = info(name)
  if split not in SPLITS:
    raise DatasetError(f'Unknown split {split!r} of {name}; expected one of {", ".join(SPLITS)}.')
  root = _resolve_data_dir(name, data_dir)
  if root is None:
    pixels, source = _TFDS_LOADERS[name](split)
  else:
    pixels, source = _LOCAL_LOADERS[name](root, split)
  return _finish(pixels, source, split, seed, dataset_info.shape)


@gin.register(module='vlae_tf.datasets')
def make_train_pipeline(dataset: tf.data.Dataset, batch_size: int, shuffle_buffer: int = 10_000,
                        seed: int = 0, repeat: bool = True) -> tf.data.Dataset:
  """Shuffles (anew every epoch), repeats, batches and prefetches a training split.

  Every pass of the repeat re-iterates `dataset`, so dynamically binarized data get fresh noise
  every epoch. Batches have exactly `batch_size` images (without `repeat`, the last incomplete
  batch is dropped), so that every step sees a full batch.

  Args:
    dataset: unbatched images, e.g. from `load`.
    batch_size: images per batch (the global batch under a distribution strategy).
    shuffle_buffer: size of the shuffle buffer, in images.
    seed: shuffle seed.
    repeat: repeat forever.

  Returns:
    A dataset of [batch_size, height, width, channels] batches.
  """
  dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    dataset = dataset.repeat()
  return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


@gin.register(module='vlae_tf.datasets')
def make_eval_pipeline(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
  """Batches (in order, keeping the last partial batch) and prefetches an evaluation split."""
  return dataset.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)


# tf.data calls a map function once per element, at ~0.1 ms a call: pixels are converted and
# binarized in chunks of this many consecutive images, then unbatched.
_CHUNK = 1024


def dynamic_binarization(grey: tf.data.Dataset, seed: int) -> tf.data.Dataset:
  """Bernoulli-samples grey levels with fresh noise at every iteration of the returned dataset.

  Images are binarized in chunks of `_CHUNK` consecutive images: chunk c of iteration k is
  `uniform(key=(r_k_c, c)) < grey`, with r_k_c the c-th element of `tf.data.Dataset.random(seed,
  rerandomize_each_iteration=True)` in iteration k. Re-iterating the dataset (a new epoch, or the
  next pass of a `repeat()`) gives a new binarization, and the same `seed` gives the same sequence
  of binarizations.

  Args:
    grey: unbatched float32 images with values in [0, 1].
    seed: seed of the sequence of binarizations.

  Returns:
    The binarized dataset, float32 in {0, 1}.
  """
  return _binarize_chunks_dynamically(grey.batch(_CHUNK), seed).unbatch()


def fixed_binarization(grey: tf.data.Dataset,
                       seed: int = EVAL_BINARIZATION_SEED) -> tf.data.Dataset:
  """Bernoulli-samples grey levels once: chunk c of `_CHUNK` images always uses the key (seed, c).

  Args:
    grey: unbatched float32 images with values in [0, 1].
    seed: the key of the binarization (an integer, or an int64 scalar tensor, e.g. a function of
      an epoch index inside `flat_map`); evaluation splits use EVAL_BINARIZATION_SEED.

  Returns:
    The binarized dataset, float32 in {0, 1}, the same at every iteration.
  """
  return _binarize_chunks_once(grey.batch(_CHUNK), seed).unbatch()


def _binarize_chunks_dynamically(chunks: tf.data.Dataset, seed: int) -> tf.data.Dataset:
  keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

  def binarize(indexed_chunk, key):
    index, chunk = indexed_chunk
    return _bernoulli(chunk, tf.stack([key, index]))

  return tf.data.Dataset.zip(chunks.enumerate(), keys).map(
      binarize, num_parallel_calls=tf.data.AUTOTUNE)


def _binarize_chunks_once(chunks: tf.data.Dataset, seed: int) -> tf.data.Dataset:

  def binarize(index, chunk):
    return _bernoulli(chunk, tf.stack([tf.cast(seed, tf.int64), index]))

  return chunks.enumerate().map(binarize, num_parallel_calls=tf.data.AUTOTUNE)


def _bernoulli(grey: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
  """1 with probability grey (exactly 0 for grey 0, 1 for grey 1), from a stateless key [2]."""
  uniform = tf.random.stateless_uniform(tf.shape(grey), seed=key)  # in [0, 1)
  return tf.cast(uniform < grey, tf.float32)


def _finish(pixels: tf.data.Dataset, source: str, split: str, seed: int,
            shape: Tuple[int, int, int]) -> tf.data.Dataset:
  """Turns raw pixels into the output images of `load`.

  Args:
    pixels: unbatched images, any numeric dtype.
    source: 'binary' (0/1 values), '8bit' (integers 0..255), 'grey' (grey levels in [0, 1]) or
      'grey255' (grey levels 0..255).
    split: the split, which decides dynamic or fixed binarization of grey data.
    seed: seed of the dynamic binarization.
    shape: the image shape, set on the output.

  Returns:
    Unbatched float32 images [height, width, channels].
  """

  def to_float(chunk):
    chunk = tf.ensure_shape(tf.cast(chunk, tf.float32), (None,) + tuple(shape))
    return chunk / 255.0 if source == 'grey255' else chunk

  chunks = pixels.batch(_CHUNK).map(to_float)  # [<= _CHUNK, height, width, channels]
  if source in ('grey', 'grey255'):
    if split in _DYNAMIC_SPLITS:
      chunks = _binarize_chunks_dynamically(chunks, seed)
    else:
      chunks = _binarize_chunks_once(chunks, EVAL_BINARIZATION_SEED)
  images = chunks.unbatch()
  count = tf.get_static_value(pixels.cardinality())
  if count is not None and count >= 0:  # unbatch() forgets the number of images: restore it
    images = images.apply(tf.data.experimental.assert_cardinality(count))
  return images


def _resolve_data_dir(name: str, data_dir: Optional[PathLike]) -> Optional[pathlib.Path]:
  """The data directory (argument, else VLAE_DATA_DIR), or None for tensorflow-datasets."""
  origin = 'data_dir'
  if data_dir is None:
    data_dir = os.environ.get(ENV_DATA_DIR) or None
    origin = ENV_DATA_DIR
  if data_dir is None:
    return None
  root = pathlib.Path(data_dir).expanduser()
  if not root.is_dir():
    raise DatasetError(f'Data directory {root} (from {origin}) does not exist or is not a '
                       f'directory; {_needs(name)}.')
  return root


################################################################################
# Reading untrusted files.


def _file_key(path: pathlib.Path) -> Tuple[str, int, int]:
  """(path, mtime, size): the cache key of a parsed file, so an edited file is re-read."""
  stat = path.stat()
  return str(path), stat.st_mtime_ns, stat.st_size


def _read(path: pathlib.Path, expected: str) -> bytes:
  """The bytes of `path`, gunzipped if its name ends in .gz."""
  try:
    raw = path.read_bytes()
  except OSError as error:
    raise DatasetError(f'Cannot read {path}: {error}; expected {expected}.') from error
  if path.suffix != '.gz':
    return raw
  try:
    return gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as error:
    raise DatasetError(f'{path} is not a valid gzip file (truncated or corrupt: {error}); '
                       f'expected {expected}.') from error


def _find(root: pathlib.Path, subdir: str, names: Sequence[str]) -> Optional[pathlib.Path]:
  """The first of root/name, root/subdir/name (for each name in order) that exists."""
  for name in names:
    for folder in (root, root / subdir):
      if (folder / name).exists():
        return folder / name
  return None


def _require(root: pathlib.Path, subdir: str, names: Sequence[str],
             dataset: str) -> pathlib.Path:
  path = _find(root, subdir, names)
  if path is None:
    raise DatasetError(f'None of {", ".join(names)} found in {root} or {root / subdir}; '
                       f'{_needs(dataset)}.')
  return path


def _check_binary(values: np.ndarray, where: str, expected: str) -> None:
  if not np.isin(values, (0, 1)).all():
    bad = np.unique(values[~np.isin(values, (0, 1))])[:5]
    raise DatasetError(f'{where} holds values {bad.tolist()}, not only 0 and 1; '
                       f'expected {expected}.')


def _warn_if_unpublished_size(name: str, split: str, count: int, path: pathlib.Path) -> None:
  published = _INFOS[name].split_sizes[split]
  if count != published:
    logging.warning('%s %s from %s has %d images, the published split has %d.', name, split, path,
                    count, published)


_AMAT_SEPARATORS = b' \t\r\x0b\x0c'  # deleted; lines are split at b'\n'


def _parse_amat(text: bytes, where: str, expected: str) -> np.ndarray:
  """Parses Larochelle's .amat text: one image a line, 784 whitespace-separated 0/1 values.

  Vectorized (np.loadtxt takes tens of seconds on the 50,000-line file): once no two non-space
  characters are adjacent (every value is one character), deleting the spaces turns every line into
  784 ASCII digits that np.frombuffer reads at once.

  Args:
    text: the file's bytes.
    where: the file, for error messages.
    expected: what the file should hold, for error messages.

  Returns:
    uint8 [num_images, 784], values in {0, 1}, in row-major pixel order.
  """
  is_value = np.frombuffer(text, np.uint8) > ord(' ')  # ASCII whitespace is <= b' '
  long_values = np.flatnonzero(is_value[1:] & is_value[:-1])
  if long_values.size:
    start = int(long_values[0])
    while start > 0 and is_value[start - 1]:
      start -= 1
    line = text.count(b'\n', 0, start) + 1
    raise DatasetError(f'{where} line {line}: value {text[start:].split()[0][:20]!r} is not 0 or '
                       f'1; expected {expected}.')
  lines = text.translate(None, _AMAT_SEPARATORS).split(b'\n')
  rows = [(number, line) for number, line in enumerate(lines, 1) if line]
  for number, line in rows:
    if len(line) != 784:
      raise DatasetError(f'{where} line {number} has {len(line)} values; expected 784 per line '
                         f'(one 28x28 image), {expected}.')
  if not rows:
    raise DatasetError(f'{where} holds no images; expected {expected}.')
  digits = np.frombuffer(b''.join(line for _, line in rows), np.uint8).reshape(len(rows), 784)
  values = digits - np.uint8(ord('0'))  # other characters wrap around to values > 1
  if (values > 1).any():
    row, col = np.argwhere(values > 1)[0]
    raise DatasetError(f'{where} line {rows[row][0]}, value {col + 1}: '
                       f'{chr(digits[row, col])!r} is not 0 or 1; expected {expected}.')
  return values


@functools.lru_cache(maxsize=8)
def _amat_images(key: Tuple[str, int, int]) -> np.ndarray:
  """uint8 [N, 28, 28, 1] in {0, 1} from an .amat(.gz), cached per (path, mtime, size)."""
  path = pathlib.Path(key[0])
  expected = f"Larochelle's binarized MNIST ({_needs('static_mnist')})"
  images = _parse_amat(_read(path, expected), str(path), expected).reshape(-1, 28, 28, 1)
  images.flags.writeable = False
  return images


_IDX_UBYTE_3D = 0x00000803  # idx magic: unsigned bytes, 3 dimensions


@functools.lru_cache(maxsize=8)
def _idx_images(key: Tuple[str, int, int]) -> np.ndarray:
  """uint8 [N, 28, 28, 1] grey levels from an idx3-ubyte(.gz) file, cached per (path, mtime)."""
  path = pathlib.Path(key[0])
  expected = f'an MNIST idx3-ubyte image file ({_needs("dynamic_mnist")})'
  raw = _read(path, expected)
  if len(raw) < 16:
    raise DatasetError(f'{path} is {len(raw)} bytes, shorter than the 16-byte idx header; '
                       f'expected {expected}.')
  magic, count, height, width = struct.unpack('>IIII', raw[:16])
  if magic != _IDX_UBYTE_3D:
    raise DatasetError(f'{path} has idx magic number {magic:#010x}, not {_IDX_UBYTE_3D:#010x} '
                       f'(unsigned bytes, 3 dimensions); expected {expected}.')
  if (height, width) != (28, 28):
    raise DatasetError(f'{path} holds {height}x{width} images, not 28x28; expected {expected}.')
  if len(raw) != 16 + count * height * width:
    raise DatasetError(f'{path} is {len(raw)} bytes, but its header announces {count} images '
                       f'({16 + count * height * width} bytes): truncated or corrupt; '
                       f'expected {expected}.')
  images = np.frombuffer(raw, np.uint8, offset=16).reshape(count, height, width, 1)
  return images


def _load_mat(path: pathlib.Path, variables: Sequence[str], expected: str) -> Dict[str, np.ndarray]:
  """Reads the named variables of a MATLAB file; every one must be there."""
  import scipy.io  # pylint: disable=g-import-not-at-top  (only the .mat datasets need scipy)
  try:
    contents = scipy.io.loadmat(str(path), variable_names=list(variables))
  except Exception as error:  # pylint: disable=broad-except
    # scipy raises IndexError, OSError, ValueError, MatReadError, ... on corrupt files.
    raise DatasetError(f'Cannot read MATLAB file {path} ({type(error).__name__}: {error}); '
                       f'expected {expected}.') from error
  missing = [name for name in variables if name not in contents]
  if missing:
    raise DatasetError(f'{path} has no variable(s) {", ".join(missing)}; expected {expected} '
                       f'with variables {", ".join(variables)}.')
  return {name: contents[name] for name in variables}


_CALTECH_KEYS = {'train': 'train_data', 'valid': 'val_data', 'test': 'test_data'}


@functools.lru_cache(maxsize=4)
def _caltech_images(key: Tuple[str, int, int]) -> Mapping[str, np.ndarray]:
  """{'train', 'valid', 'test'}: uint8 [N, 28, 28, 1] in {0, 1}, upright, silhouette = 1.

  Each row of Marlin's matrices is a 28x28 image flattened column-major (MATLAB order), so the
  upright image is `row.reshape((28, 28), order='F')`. The file stores the silhouette as 0 on a
  background of 1; like the VampPrior and Sylvester-flow loaders (`1. - data`), the images are
  inverted so that the object is 1, as the strokes of MNIST and OMNIGLOT.
  """
  path = pathlib.Path(key[0])
  expected = _needs('caltech101_silhouettes')
  contents = _load_mat(path, list(_CALTECH_KEYS.values()), expected)
  splits = {}
  for split, variable in _CALTECH_KEYS.items():
    rows = contents[variable]
    if rows.ndim != 2 or rows.shape[1] != 784:
      raise DatasetError(f'{path} variable {variable} has shape {rows.shape}, not [N, 784]; '
                         f'expected {expected}.')
    _check_binary(rows, f'{path} variable {variable}', expected)
    images = 1 - rows.astype(np.uint8).reshape((-1, 28, 28), order='F')[..., np.newaxis]
    images = np.ascontiguousarray(images)
    images.flags.writeable = False
    splits[split] = images
  return types.MappingProxyType(splits)


@functools.lru_cache(maxsize=4)
def _chardata_images(key: Tuple[str, int, int]) -> Mapping[str, np.ndarray]:
  """{'train+valid', 'test'}: float32 [N, 28, 28, 1] grey levels in [0, 1] from IWAE's chardata.

  `data` and `testdata` are [784, N] and each column is a 28x28 image flattened column-major
  (MATLAB order): the IWAE code's `reshape_data` turns them upright with
  `data.T.reshape((-1, 28, 28), order='fortran')`, which is `column.reshape((28, 28), order='F')`
  for every column.
  """
  path = pathlib.Path(key[0])
  expected = f'the IWAE chardata.mat ({_needs("omniglot")})'
  contents = _load_mat(path, ('data', 'testdata'), expected)
  splits = {}
  for split, variable in (('train+valid', 'data'), ('test', 'testdata')):
    columns = contents[variable]
    if columns.ndim != 2 or columns.shape[0] != 784 or columns.shape[1] == 0:
      raise DatasetError(f'{path} variable {variable} has shape {columns.shape}, not [784, N > 0]; '
                         f'expected {expected}.')
    if not np.issubdtype(columns.dtype, np.number) or not (
        np.isfinite(columns).all() and columns.min() >= 0 and columns.max() <= 1):
      raise DatasetError(f'{path} variable {variable} holds values outside [0, 1]; expected '
                         f'grey levels in [0, 1], {expected}.')
    images = columns.T.astype(np.float32).reshape((-1, 28, 28), order='F')[..., np.newaxis]
    images = np.ascontiguousarray(images)
    images.flags.writeable = False
    splits[split] = images
  return types.MappingProxyType(splits)


_OMNIGLOT_SIZE = 105  # Lake's PNGs are 105x105


def _omniglot_entries(zip_paths: Sequence[pathlib.Path]) -> Dict[Tuple[str, ...], bytes]:
  """{(alphabet, character, file): PNG bytes} of Lake's zips; a path seen twice is read once.

  The small zips overlap (images_background_small1 and small2 both hold Greek and Latin), and the
  small ones are subsets of the full zip: images are identified by their last three path parts.
  """
  entries = {}
  for path in zip_paths:
    expected = f"Lake's OMNIGLOT zip of alphabet/character/xxxx_yy.png ({_needs('omniglot')})"
    try:
      with zipfile.ZipFile(path) as archive:
        for member in sorted(archive.namelist()):
          parts = member.split('/')
          entry = tuple(parts[-3:])
          if (member.endswith('.png') and len(parts) >= 3 and '__MACOSX' not in parts
              and entry not in entries):
            entries[entry] = archive.read(member)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError,
            zlib.error) as error:
      raise DatasetError(f'Cannot read zip file {path} ({error}); expected {expected}.') from error
  return entries


def _downsample_omniglot(png: bytes, where: str) -> np.ndarray:
  """uint8 [28, 28] stroke intensity (255 = stroke) of a 105x105 black-on-white PNG."""
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only OMNIGLOT zips need PIL)
  try:
    with Image.open(io.BytesIO(png)) as image:
      image.load()
      size = image.size
      small = image.convert('L').resize((28, 28), Image.Resampling.LANCZOS)  # antialiased
  except (OSError, ValueError, SyntaxError) as error:  # PIL.UnidentifiedImageError is an OSError
    raise DatasetError(f'Cannot decode PNG {where} ({error}); {_needs("omniglot")}.') from error
  if size != (_OMNIGLOT_SIZE, _OMNIGLOT_SIZE):
    raise DatasetError(f'{where} is {size[0]}x{size[1]}, not {_OMNIGLOT_SIZE}x{_OMNIGLOT_SIZE}; '
                       f'{_needs("omniglot")}.')
  return 255 - np.asarray(small, np.uint8)


@functools.lru_cache(maxsize=4)
def _omniglot_zip_images(keys: Tuple[Tuple[str, int, int], ...]) -> np.ndarray:
  """uint8 [N, 28, 28, 1] stroke intensities of Lake's zips, sorted by alphabet/character/file."""
  paths = [pathlib.Path(key[0]) for key in keys]
  entries = _omniglot_entries(paths)
  if not entries:
    raise DatasetError(f'No PNG images in {", ".join(map(str, paths))}; {_needs("omniglot")}.')
  images = np.stack([_downsample_omniglot(entries[entry], '/'.join(entry))
                     for entry in sorted(entries)])[..., np.newaxis]
  images.flags.writeable = False
  return images


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickles plain data and numpy arrays only; refuses every other global.

  A pickle can call any importable callable (os.system, builtins.eval, ...). The CIFAR-10 batches
  need only numpy's array reconstruction (`_reconstruct`, `ndarray`, `dtype`), plus, in pickles
  written by Python 3 with protocol 2, `_codecs.encode(text, 'latin1')` that rebuilds bytes objects;
  that one is replaced by a latin-1-only encoder.
  """

  def find_class(self, module: str, name: str):
    try:
      return _PICKLE_GLOBALS[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f'global {module}.{name} is forbidden (only plain data and numpy arrays are allowed)'
      ) from None


def _latin1_encode(text: str, encoding: str = 'latin1') -> bytes:
  """`_codecs.encode` restricted to the latin-1 round trip of bytes through protocol-2 pickles."""
  if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
    raise pickle.UnpicklingError(f'_codecs.encode({type(text).__name__}, {encoding!r}) is '
                                 'forbidden (only latin1 text is allowed)')
  return text.encode('latin1')


def _numpy_reconstruct() -> Callable[..., np.ndarray]:
  try:
    from numpy._core import multiarray  # pylint: disable=g-import-not-at-top  (numpy >= 2)
  except ImportError:  # numpy 1.x
    from numpy.core import multiarray  # pylint: disable=g-import-not-at-top
  return multiarray._reconstruct  # pylint: disable=protected-access


_PICKLE_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'): _numpy_reconstruct(),
    ('numpy._core.multiarray', '_reconstruct'): _numpy_reconstruct(),
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): _latin1_encode,
}


def _unpickle(raw: bytes, where: str, expected: str):
  try:
    return _RestrictedUnpickler(io.BytesIO(raw), encoding='bytes').load()
  except Exception as error:  # pylint: disable=broad-except
    # Malformed pickles raise UnpicklingError, EOFError, ValueError, TypeError, KeyError, ...
    raise DatasetError(f'Cannot unpickle {where} ({type(error).__name__}: {error}); '
                       f'expected {expected}.') from error


_CIFAR_TRAIN_BATCHES = tuple(f'data_batch_{i}' for i in range(1, 6))
_CIFAR_TEST_BATCH = 'test_batch'
_CIFAR_DIR = 'cifar-10-batches-py'
_CIFAR_TARBALL = 'cifar-10-python.tar.gz'


def _cifar_batch_images(raw: bytes, where: str) -> np.ndarray:
  """uint8 [N, 32, 32, 3] of one pickled batch ({b'data': uint8 [N, 3072], b'labels': [N]})."""
  expected = f'a CIFAR-10 python batch: a dict with uint8 data [N, 3072] ({_needs("cifar10")})'
  batch = _unpickle(raw, where, expected)
  if not isinstance(batch, dict):
    raise DatasetError(f'{where} holds a {type(batch).__name__}, not a dict; '
                       f'expected {expected}.')
  data = batch.get(b'data', batch.get('data'))
  if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or (
      data.shape[1] != 3072):
    description = (f'{data.dtype} {list(data.shape)}' if isinstance(data, np.ndarray)
                   else type(data).__name__)
    raise DatasetError(f'{where}: data is {description}; expected {expected}.')
  labels = batch.get(b'labels', batch.get('labels'))
  if labels is not None and len(labels) != len(data):
    raise DatasetError(f'{where} has {len(labels)} labels for {len(data)} images; '
                       f'expected {expected}.')
  # Each row holds the red, green then blue 32x32 planes, each row-major.
  return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


@functools.lru_cache(maxsize=16)
def _cifar_file_batch(key: Tuple[str, int, int]) -> np.ndarray:
  path = pathlib.Path(key[0])
  images = _cifar_batch_images(_read(path, _needs('cifar10')), str(path))
  images.flags.writeable = False
  return images


@functools.lru_cache(maxsize=4)
def _cifar_tarball_batches(key: Tuple[str, int, int]) -> Mapping[str, np.ndarray]:
  """{batch name: uint8 [N, 32, 32, 3]} of the batches present in cifar-10-python.tar.gz."""
  path = pathlib.Path(key[0])
  batches = {}
  try:
    with tarfile.open(path, 'r:gz') as archive:
      for member in archive.getmembers():
        name = pathlib.PurePosixPath(member.name).name
        if member.isfile() and name in _CIFAR_TRAIN_BATCHES + (_CIFAR_TEST_BATCH,):
          raw = archive.extractfile(member).read()
          batches[name] = _cifar_batch_images(raw, f'{path}:{member.name}')
  except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
    raise DatasetError(f'Cannot read {path} (truncated or corrupt: {error}); '
                       f'{_needs("cifar10")}.') from error
  for images in batches.values():
    images.flags.writeable = False
  return types.MappingProxyType(batches)


################################################################################
# Local loaders: (root, split) -> (dataset of raw pixels, source kind: see `_finish`).

_Loaded = Tuple[tf.data.Dataset, str]


def _from_arrays(*arrays: np.ndarray) -> tf.data.Dataset:
  """A dataset of the rows of the arrays, one after the other."""
  images = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
  return tf.data.Dataset.from_tensor_slices(images)


def _local_static_mnist(root: pathlib.Path, split: str) -> _Loaded:
  parts = {'train': ['train'], 'valid': ['valid'], 'test': ['test'],
           'train+valid': ['train', 'valid']}[split]
  arrays = []
  for part in parts:
    stem = f'binarized_mnist_{part}.amat'
    path = _require(root, 'binarized_mnist', (stem, stem + '.gz'), 'static_mnist')
    arrays.append(_amat_images(_file_key(path)))
    _warn_if_unpublished_size('static_mnist', part, len(arrays[-1]), path)
  return _from_arrays(*arrays), 'binary'


_MNIST_VALID_SIZE = 10_000


def _carve_validation(pool, split: str, valid_size: int, source, name: str, what='images'):
  """The `split` of a training pool whose last `valid_size` images are the validation set."""
  if len(pool) <= valid_size:
    raise DatasetError(f'{source} holds {len(pool)} {what}, too few to carve the last '
                       f'{valid_size} as validation; {_needs(name)}.')
  return {'train': pool[:-valid_size], 'valid': pool[-valid_size:], 'train+valid': pool}[split]


def _local_dynamic_mnist(root: pathlib.Path, split: str) -> _Loaded:
  stem = 't10k-images-idx3-ubyte' if split == 'test' else 'train-images-idx3-ubyte'
  path = _require(root, 'mnist', (stem, stem + '.gz'), 'dynamic_mnist')
  images = _idx_images(_file_key(path))
  if split != 'test':
    images = _carve_validation(images, split, _MNIST_VALID_SIZE, path, 'dynamic_mnist')
  _warn_if_unpublished_size('dynamic_mnist', split, len(images), path)
  return _from_arrays(images), 'grey255'


_CHARDATA_VALID_SIZE = 1_345
_OMNIGLOT_ZIP_VALID_EVERY = 10


def _local_omniglot(root: pathlib.Path, split: str) -> _Loaded:
  """chardata.mat when present, else Lake's zips (see module docstring and docs/datasets.md)."""
  chardata = _find(root, 'omniglot', ('chardata.mat',))
  if chardata is not None:
    arrays = _chardata_images(_file_key(chardata))
    if split == 'test':
      images = arrays['test']
    else:
      images = _carve_validation(arrays['train+valid'], split, _CHARDATA_VALID_SIZE, chardata,
                                 'omniglot', what='training images')
    _warn_if_unpublished_size('omniglot', split, len(images), chardata)
    return _from_arrays(images), 'grey'
  pattern = 'images_evaluation*.zip' if split == 'test' else 'images_background*.zip'
  zips = sorted(set(root.glob(pattern)) | set(root.glob(f'omniglot/{pattern}')))
  if not zips:
    unavailable = ("the 'test' split (Lake's evaluation alphabets)" if split == 'test'
                   else f"the {split!r} split (Lake's background alphabets)")
    raise DatasetError(f'No chardata.mat and no {pattern} in {root} or {root / "omniglot"}, so '
                       f'{unavailable} is unavailable; {_needs("omniglot")}.')
  pool = _omniglot_zip_images(tuple(_file_key(path) for path in zips))
  if split != 'test':
    is_valid = np.arange(len(pool)) % _OMNIGLOT_ZIP_VALID_EVERY == _OMNIGLOT_ZIP_VALID_EVERY - 1
    pool = {'train': pool[~is_valid], 'valid': pool[is_valid], 'train+valid': pool}[split]
  return _from_arrays(pool), 'grey255'


def _local_caltech(root: pathlib.Path, split: str) -> _Loaded:
  path = _require(root, 'caltech101_silhouettes', ('caltech101_silhouettes_28_split1.mat',),
                  'caltech101_silhouettes')
  arrays = _caltech_images(_file_key(path))
  parts = ['train', 'valid'] if split == 'train+valid' else [split]
  for part in parts:
    _warn_if_unpublished_size('caltech101_silhouettes', part, len(arrays[part]), path)
  return _from_arrays(*[arrays[part] for part in parts]), 'binary'


_CIFAR_VALID_SIZE = 5_000


def _cifar_batches(root: pathlib.Path) -> Tuple[Mapping[str, np.ndarray], pathlib.Path]:
  """The batches present ({name: images}) and where they come from (directory or tarball)."""
  folder = _find(root, 'cifar10', (_CIFAR_DIR,))
  if folder is not None and folder.is_dir():
    batches = {name: _cifar_file_batch(_file_key(folder / name))
               for name in _CIFAR_TRAIN_BATCHES + (_CIFAR_TEST_BATCH,)
               if (folder / name).is_file()}
    return batches, folder
  tarball = _require(root, 'cifar10', (_CIFAR_DIR, _CIFAR_TARBALL), 'cifar10')
  return _cifar_tarball_batches(_file_key(tarball)), tarball


def _local_cifar10(root: pathlib.Path, split: str) -> _Loaded:
  batches, source = _cifar_batches(root)
  if split == 'test':
    if _CIFAR_TEST_BATCH not in batches:
      raise DatasetError(f'{source} has no {_CIFAR_TEST_BATCH}; {_needs("cifar10")}.')
    return _from_arrays(batches[_CIFAR_TEST_BATCH]), '8bit'
  present = [name for name in _CIFAR_TRAIN_BATCHES if name in batches]
  missing = [name for name in _CIFAR_TRAIN_BATCHES if name not in batches]
  if not present:
    raise DatasetError(f'{source} has none of {", ".join(_CIFAR_TRAIN_BATCHES)}; '
                       f'{_needs("cifar10")}.')
  train = np.concatenate([batches[name] for name in present])
  if missing:
    if split == 'valid':
      raise DatasetError(f'The CIFAR-10 valid split is the last {_CIFAR_VALID_SIZE} images of '
                         f'all 5 training batches, but {source} lacks {", ".join(missing)} (to '
                         'train on these batches without it, validate on another split, '
                         '--gin_param="train.eval_split=\'test\'", or not at all, '
                         '--gin_param=train.eval_examples=0); '
                         f'{_needs("cifar10")}.')
    logging.warning('CIFAR-10 at %s has only %s (%d images), %s missing: %r is every training '
                    'image present and no validation split is carved.', source,
                    ', '.join(present), len(train), ', '.join(missing), split)
    return _from_arrays(train), '8bit'
  images = _carve_validation(train, split, _CIFAR_VALID_SIZE, source, 'cifar10',
                             what='training images')
  return _from_arrays(images), '8bit'


_LOCAL_LOADERS: Dict[str, Callable[[pathlib.Path, str], _Loaded]] = {
    'static_mnist': _local_static_mnist,
    'dynamic_mnist': _local_dynamic_mnist,
    'omniglot': _local_omniglot,
    'caltech101_silhouettes': _local_caltech,
    'cifar10': _local_cifar10,
}


################################################################################
# tensorflow-datasets loaders: split -> (dataset of raw pixels, source kind: see `_finish`).


_TFDS_PROBE_URL = 'https://storage.googleapis.com/'  # where tensorflow-datasets downloads from


def _is_network_error(error: BaseException) -> bool:
  """Whether `error`, or an error it was raised from, says that the network is unreachable."""
  import urllib.error  # pylint: disable=g-import-not-at-top
  network_errors = [ConnectionError, TimeoutError, urllib.error.URLError, socket.gaierror]
  try:
    import requests  # pylint: disable=g-import-not-at-top  (tensorflow-datasets downloads with it)
    network_errors.append(requests.exceptions.RequestException)
  except ImportError:
    pass
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, tuple(network_errors)):
      return True
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return False


def _tfds_images(name: str, split: str) -> tf.data.Dataset:
  """The 'image' feature of tensorflow-datasets `name`, in its deterministic file order.

  tensorflow-datasets downloads and prepares the dataset on first use (into $TFDS_DATA_DIR or
  ~/tensorflow_datasets), which needs the network; offline, that is one DatasetError.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import)
  except ImportError as error:
    raise DatasetError(f'tensorflow-datasets cannot be imported ({error}): reinstall vlae_tf '
                       f'(pip install .), or pass --data_dir with the raw files of {name}.') from error
  def offline(error):
    reason = ' '.join(f'{type(error).__name__}: {error}'.split())
    reason = reason if len(reason) <= 160 else reason[:157] + '...'
    return DatasetError(
        f'tensorflow-datasets could not download {name!r} ({reason}): without --data_dir it needs '
        f'the network the first time; offline, pass --data_dir=DIR holding the raw files (or set '
        f'{ENV_DATA_DIR}), see docs/datasets.md.')

  try:
    if not tfds.builder(name).is_prepared():
      # tensorflow-datasets retries a failed download ten times with back-off (minutes offline):
      # one quick request first, through the same proxies, says whether the network is there.
      import requests  # pylint: disable=g-import-not-at-top
      requests.head(_TFDS_PROBE_URL, timeout=15)
    dataset = tfds.load(name, split=split, shuffle_files=False)
  except Exception as error:  # pylint: disable=broad-except
    if not _is_network_error(error):
      raise
    raise offline(error) from None
  return dataset.map(lambda example: example['image'], num_parallel_calls=tf.data.AUTOTUNE)


def _tfds_static_mnist(split: str) -> _Loaded:
  tfds_split = {'train': 'train', 'valid': 'validation', 'test': 'test',
                'train+valid': 'train+validation'}[split]
  return _tfds_images('binarized_mnist', tfds_split), 'binary'


def _tfds_dynamic_mnist(split: str) -> _Loaded:
  tfds_split = {'train': 'train[:50000]', 'valid': 'train[50000:]', 'test': 'test',
                'train+valid': 'train'}[split]
  return _tfds_images('mnist', tfds_split), 'grey255'


def _tfds_omniglot(split: str) -> _Loaded:
  """Lake's background alphabets ('train') and evaluation alphabets ('test'), as for the zips."""
  images = _tfds_images('omniglot', 'test' if split == 'test' else 'train')

  def stroke_intensity(image):  # [105, 105, 3] uint8, black strokes on white
    grey = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))  # [105, 105, 1]
    small = tf.image.resize(grey, [28, 28], method='lanczos3', antialias=True)  # [28, 28, 1]
    small = tf.round(tf.clip_by_value(small, 0.0, 255.0))  # 8-bit grey levels, as PIL's
    return tf.cast(255.0 - small, tf.uint8)  # 255 = stroke

  images = images.map(stroke_intensity, num_parallel_calls=tf.data.AUTOTUNE)
  if split in ('train', 'valid'):
    every = _OMNIGLOT_ZIP_VALID_EVERY

    def in_split(index, unused_image):
      is_valid = tf.equal(index % every, every - 1)
      return is_valid if split == 'valid' else tf.logical_not(is_valid)

    images = images.enumerate().filter(in_split).map(lambda unused_index, image: image)
  return images, 'grey255'


def _tfds_caltech(split: str) -> _Loaded:
  raise DatasetError(f'caltech101_silhouettes ({split}) is not in tensorflow-datasets: pass '
                     f'data_dir or set {ENV_DATA_DIR}; {_needs("caltech101_silhouettes")}.')


def _tfds_cifar10(split: str) -> _Loaded:
  tfds_split = {'train': 'train[:45000]', 'valid': 'train[45000:]', 'test': 'test',
                'train+valid': 'train'}[split]
  return _tfds_images('cifar10', tfds_split), '8bit'


_TFDS_LOADERS: Dict[str, Callable[[str], _Loaded]] = {
    'static_mnist': _tfds_static_mnist,
    'dynamic_mnist': _tfds_dynamic_mnist,
    'omniglot': _tfds_omniglot,
    'caltech101_silhouettes': _tfds_caltech,
    'cifar10': _tfds_cifar10,
}
