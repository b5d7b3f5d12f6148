"""Every dataset of the VLAE paper, from local raw files or tensorflow-datasets; binarization.

One entry point, `load(name, split, data_dir=None, seed=0)`, returns an unbatched `tf.data.Dataset`
of images [height, width, channels]: float32 in {0, 1} for the binary datasets, float32 integers
0..255 for CIFAR-10. `info(name)` describes a dataset (shape, pixels per image for bits/dim, kind,
published split sizes; catalogue.py); batching.py batches what `load` returns; the readers of the
untrusted files are dataset_files.py's. This module holds `load`, the split protocols of the local
loaders, binarization and the tensorflow-datasets loaders.

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


import os
import pathlib
import socket
from typing import Callable, Dict, Mapping, Optional, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from vlae_tf.data import dataset_files
# The catalogue is part of this module's public API: datasets.info(name), datasets.DatasetError...
from vlae_tf.data.catalogue import DatasetError  # pylint: disable=unused-import
from vlae_tf.data.catalogue import DatasetInfo  # pylint: disable=unused-import
from vlae_tf.data.catalogue import ENV_DATA_DIR
from vlae_tf.data.catalogue import info
from vlae_tf.data.catalogue import NAMES  # pylint: disable=unused-import
from vlae_tf.data.catalogue import needs
from vlae_tf.data.catalogue import PathLike
from vlae_tf.data.catalogue import SPLITS

# Key of the one-off binarization of evaluation splits ('valid', 'test') of grey-level datasets.
EVAL_BINARIZATION_SEED = 20170308

# Splits binarized afresh at every iteration; the others (evaluation) are binarized once.
_DYNAMIC_SPLITS = ('train', 'train+valid')


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
                       f'directory; {needs(name)}.')
  return root


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
    path = dataset_files.require(root, 'binarized_mnist', (stem, stem + '.gz'), 'static_mnist')
    arrays.append(dataset_files.amat_images(dataset_files.file_key(path)))
    dataset_files.warn_if_unpublished_size('static_mnist', part, len(arrays[-1]), path)
  return _from_arrays(*arrays), 'binary'


_MNIST_VALID_SIZE = 10_000


def _carve_validation(pool, split: str, valid_size: int, source, name: str, what='images'):
  """The `split` of a training pool whose last `valid_size` images are the validation set."""
  if len(pool) <= valid_size:
    raise DatasetError(f'{source} holds {len(pool)} {what}, too few to carve the last '
                       f'{valid_size} as validation; {needs(name)}.')
  return {'train': pool[:-valid_size], 'valid': pool[-valid_size:], 'train+valid': pool}[split]


def _local_dynamic_mnist(root: pathlib.Path, split: str) -> _Loaded:
  stem = 't10k-images-idx3-ubyte' if split == 'test' else 'train-images-idx3-ubyte'
  path = dataset_files.require(root, 'mnist', (stem, stem + '.gz'), 'dynamic_mnist')
  images = dataset_files.idx_images(dataset_files.file_key(path))
  if split != 'test':
    images = _carve_validation(images, split, _MNIST_VALID_SIZE, path, 'dynamic_mnist')
  dataset_files.warn_if_unpublished_size('dynamic_mnist', split, len(images), path)
  return _from_arrays(images), 'grey255'


_CHARDATA_VALID_SIZE = 1_345
_OMNIGLOT_ZIP_VALID_EVERY = 10


def _local_omniglot(root: pathlib.Path, split: str) -> _Loaded:
  """chardata.mat when present, else Lake's zips (see module docstring and docs/datasets.md)."""
  chardata = dataset_files.find(root, 'omniglot', ('chardata.mat',))
  if chardata is not None:
    arrays = dataset_files.chardata_images(dataset_files.file_key(chardata))
    if split == 'test':
      images = arrays['test']
    else:
      images = _carve_validation(arrays['train+valid'], split, _CHARDATA_VALID_SIZE, chardata,
                                 'omniglot', what='training images')
    dataset_files.warn_if_unpublished_size('omniglot', split, len(images), chardata)
    return _from_arrays(images), 'grey'
  pattern = 'images_evaluation*.zip' if split == 'test' else 'images_background*.zip'
  zips = sorted(set(root.glob(pattern)) | set(root.glob(f'omniglot/{pattern}')))
  if not zips:
    unavailable = ("the 'test' split (Lake's evaluation alphabets)" if split == 'test'
                   else f"the {split!r} split (Lake's background alphabets)")
    raise DatasetError(f'No chardata.mat and no {pattern} in {root} or {root / "omniglot"}, so '
                       f'{unavailable} is unavailable; {needs("omniglot")}.')
  pool = dataset_files.omniglot_zip_images(tuple(dataset_files.file_key(path) for path in zips))
  if split != 'test':
    is_valid = np.arange(len(pool)) % _OMNIGLOT_ZIP_VALID_EVERY == _OMNIGLOT_ZIP_VALID_EVERY - 1
    pool = {'train': pool[~is_valid], 'valid': pool[is_valid], 'train+valid': pool}[split]
  return _from_arrays(pool), 'grey255'


def _local_caltech(root: pathlib.Path, split: str) -> _Loaded:
  path = dataset_files.require(root, 'caltech101_silhouettes',
                               ('caltech101_silhouettes_28_split1.mat',), 'caltech101_silhouettes')
  arrays = dataset_files.caltech_images(dataset_files.file_key(path))
  parts = ['train', 'valid'] if split == 'train+valid' else [split]
  for part in parts:
    dataset_files.warn_if_unpublished_size('caltech101_silhouettes', part, len(arrays[part]), path)
  return _from_arrays(*[arrays[part] for part in parts]), 'binary'


_CIFAR_VALID_SIZE = 5_000


def _cifar_batches(root: pathlib.Path) -> Tuple[Mapping[str, np.ndarray], pathlib.Path]:
  """The batches present ({name: images}) and where they come from (directory or tarball)."""
  folder = dataset_files.find(root, 'cifar10', (dataset_files.CIFAR_DIR,))
  if folder is not None and folder.is_dir():
    batches = {name: dataset_files.cifar_file_batch(dataset_files.file_key(folder / name))
               for name in dataset_files.CIFAR_TRAIN_BATCHES + (dataset_files.CIFAR_TEST_BATCH,)
               if (folder / name).is_file()}
    return batches, folder
  tarball = dataset_files.require(
      root, 'cifar10', (dataset_files.CIFAR_DIR, dataset_files.CIFAR_TARBALL), 'cifar10')
  return dataset_files.cifar_tarball_batches(dataset_files.file_key(tarball)), tarball


def _local_cifar10(root: pathlib.Path, split: str) -> _Loaded:
  batches, source = _cifar_batches(root)
  if split == 'test':
    if dataset_files.CIFAR_TEST_BATCH not in batches:
      raise DatasetError(f'{source} has no {dataset_files.CIFAR_TEST_BATCH}; {needs("cifar10")}.')
    return _from_arrays(batches[dataset_files.CIFAR_TEST_BATCH]), '8bit'
  present = [name for name in dataset_files.CIFAR_TRAIN_BATCHES if name in batches]
  missing = [name for name in dataset_files.CIFAR_TRAIN_BATCHES if name not in batches]
  if not present:
    raise DatasetError(f'{source} has none of {", ".join(dataset_files.CIFAR_TRAIN_BATCHES)}; '
                       f'{needs("cifar10")}.')
  train = np.concatenate([batches[name] for name in present])
  if missing:
    if split == 'valid':
      raise DatasetError(f'The CIFAR-10 valid split is the last {_CIFAR_VALID_SIZE} images of '
                         f'all 5 training batches, but {source} lacks {", ".join(missing)} (to '
                         'train on these batches without it, validate on another split, '
                         '--gin_param="train.eval_split=\'test\'", or not at all, '
                         '--gin_param=train.eval_examples=0); '
                         f'{needs("cifar10")}.')
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
                     f'data_dir or set {ENV_DATA_DIR}; {needs("caltech101_silhouettes")}.')


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
