"""The catalogue of datasets: names, splits, shapes, published sizes, files and where to get them.

`info(name)` describes a dataset independently of where it is loaded from; `needs(name)` says what
its files are and where they come from, for error messages. `DatasetError` is the one error of
every dataset module (datasets.py, dataset_files.py, labels.py). No TensorFlow here.
"""

import dataclasses
import os
import types
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np

from vlae_tf import errors

SPLITS = ('train', 'valid', 'test', 'train+valid')

ENV_DATA_DIR = 'VLAE_DATA_DIR'

# Lake's OMNIGLOT zips (and tensorflow-datasets' omniglot): every 10th background image is 'valid'.
OMNIGLOT_ZIP_VALID_EVERY = 10

PathLike = Union[str, os.PathLike]


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
    raise errors.DatasetError(f'Unknown dataset {name!r}; expected one of '
                              f'{", ".join(NAMES)}.') from None


def needs(name: str) -> str:
  """What dataset `name` needs, for error messages."""
  dataset = _INFOS[name]
  return f'{name} needs {dataset.files} (from {dataset.url})'
