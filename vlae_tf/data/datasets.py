"""Every dataset of the VLAE paper, from local raw files or tensorflow-datasets; binarization.

One entry point, `load(name, split, data_dir=None, seed=0)`, returns an unbatched `tf.data.Dataset`
of images [height, width, channels]: float32 in {0, 1} for the binary datasets, float32 integers
0..255 for CIFAR-10. `info(name)` describes a dataset (shape, pixels per image for bits/dim, kind,
published split sizes; catalogue.py); batching.py batches what `load` returns; the readers of the
untrusted files are dataset_files.py's. This module holds `load` and the split protocols of the
local loaders; binarization.py binarizes grey levels, tfds_loaders.py reads tensorflow-datasets.

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

Grey-level data (`dynamic_mnist`, `omniglot`) is binarized afresh at every iteration for 'train'
and 'train+valid', once with a fixed key for 'valid' and 'test' (binarization.py).

Data files are untrusted: every parse error, wrong shape or value becomes a `DatasetError` that
names the file, the problem, and the files the dataset needs with their download address. The
CIFAR-10 pickles are read by an unpickler that only builds plain data and numpy arrays.

Without a data directory (argument `data_dir` or the environment variable VLAE_DATA_DIR), datasets
come from tensorflow-datasets (`binarized_mnist`, `mnist`, `omniglot`, `cifar10`), which downloads
them; Caltech-101 Silhouettes is not in its catalogue.

Any other name is one's own images (a folder, a .npy/.npz file or 'tfds:NAME'), read by
user_images.py with the same splits and output.
"""


import os
import pathlib
from typing import Callable, Dict, Mapping, Optional, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from vlae_tf import errors
from vlae_tf.data import binarization
from vlae_tf.data import dataset_files
from vlae_tf.data import tfds_loaders
from vlae_tf.data import user_images
from vlae_tf.data.catalogue import ENV_DATA_DIR
from vlae_tf.data.catalogue import info
from vlae_tf.data.catalogue import needs
from vlae_tf.data.catalogue import OMNIGLOT_ZIP_VALID_EVERY
from vlae_tf.data.catalogue import PathLike
from vlae_tf.data.catalogue import SPLITS


################################################################################
# Public entry points.


@gin.register(module='vlae_tf.datasets')
def load(name: str, split: str, data_dir: Optional[PathLike] = None,
         seed: int = 0) -> tf.data.Dataset:
  """Loads one split of a dataset as an unbatched dataset of images.

  Args:
    name: one of `catalogue.NAMES`: 'static_mnist', 'dynamic_mnist', 'omniglot',
      'caltech101_silhouettes', 'cifar10'; or one's own images: a folder, a .npy/.npz file or
      'tfds:NAME' (user_images.py; `data_dir` is then unused).
    split: one of `SPLITS`: 'train', 'valid', 'test', 'train+valid'.
    data_dir: directory of raw files (see `info(name).files`). Defaults to the environment variable
      VLAE_DATA_DIR; when neither is set, the dataset comes from tensorflow-datasets.
    seed: seed of the dynamic binarization of training splits of grey-level datasets; ignored by
      the others.

  Returns:
    A `tf.data.Dataset` of float32 images [height, width, channels]: values in {0, 1} for binary
    datasets, integers 0..255 for CIFAR-10.

  Raises:
    errors.DatasetError: unknown name or split, missing directory or file, unreadable or
      malformed data.
  """
  if split not in SPLITS:
    raise errors.DatasetError(f'Unknown split {split!r} of {name}; expected one of '
                              f'{", ".join(SPLITS)}.')
  if user_images.is_user_source(name):  # one's own folder, array file or tfds:NAME
    pixels, source, shape = user_images.load(name, split)
    return _finish(pixels, source, split, seed, shape)
  dataset_info = info(name)
  root = _resolve_data_dir(name, data_dir)
  if root is None:
    pixels, source = tfds_loaders.LOADERS[name](split)
  else:
    pixels, source = _LOCAL_LOADERS[name](root, split)
  return _finish(pixels, source, split, seed, dataset_info.shape)


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

  # [<= CHUNK_SIZE, height, width, channels]
  chunks = pixels.batch(binarization.CHUNK_SIZE).map(to_float)
  if source in ('grey', 'grey255'):
    if split in binarization.DYNAMIC_SPLITS:
      chunks = binarization.binarize_chunks_dynamically(chunks, seed)
    else:
      chunks = binarization.binarize_chunks_once(chunks, binarization.EVAL_BINARIZATION_SEED)
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
    raise errors.DatasetError(f'Data directory {root} (from {origin}) does not exist or is not a '
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
    raise errors.DatasetError(f'{source} holds {len(pool)} {what}, too few to carve the last '
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
    raise errors.DatasetError(f'No chardata.mat and no {pattern} in {root} or {root / "omniglot"}, '
                              f'so {unavailable} is unavailable; {needs("omniglot")}.')
  pool = dataset_files.omniglot_zip_images(tuple(dataset_files.file_key(path) for path in zips))
  if split != 'test':
    is_valid = np.arange(len(pool)) % OMNIGLOT_ZIP_VALID_EVERY == OMNIGLOT_ZIP_VALID_EVERY - 1
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
      raise errors.DatasetError(f'{source} has no {dataset_files.CIFAR_TEST_BATCH}; '
                                f'{needs("cifar10")}.')
    return _from_arrays(batches[dataset_files.CIFAR_TEST_BATCH]), '8bit'
  present = [name for name in dataset_files.CIFAR_TRAIN_BATCHES if name in batches]
  missing = [name for name in dataset_files.CIFAR_TRAIN_BATCHES if name not in batches]
  if not present:
    raise errors.DatasetError(f'{source} has none of '
                              f'{", ".join(dataset_files.CIFAR_TRAIN_BATCHES)}; '
                              f'{needs("cifar10")}.')
  train = np.concatenate([batches[name] for name in present])
  if missing:
    if split == 'valid':
      raise errors.DatasetError(f'The CIFAR-10 valid split is the last {_CIFAR_VALID_SIZE} images '
                                f'of all 5 training batches, but {source} lacks '
                                f'{", ".join(missing)} (to train on these batches without it, '
                                'validate on another split, '
                                '--gin_param="train.eval_split=\'test\'", or not at all, '
                                f'--gin_param=train.eval_examples=0); {needs("cifar10")}.')
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
