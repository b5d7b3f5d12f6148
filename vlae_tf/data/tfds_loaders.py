"""Datasets from tensorflow-datasets, when there is no data directory: split -> (dataset of raw
pixels, source kind: see `datasets._finish`).

`binarized_mnist` (static_mnist), `mnist` (dynamic_mnist), `omniglot` and `cifar10`, with the same
splits as the local files (the last 10,000 MNIST and 5,000 CIFAR-10 training images are 'valid';
every 10th OMNIGLOT background image is 'valid'). tensorflow-datasets downloads a dataset on first
use, which needs the network; offline, that is one DatasetError naming --data_dir. Caltech-101
Silhouettes is not in its catalogue.
"""

import socket
from typing import Callable, Dict, Tuple

import tensorflow as tf

from vlae_tf import errors
from vlae_tf.data.catalogue import ENV_DATA_DIR
from vlae_tf.data.catalogue import needs
from vlae_tf.data.catalogue import OMNIGLOT_ZIP_VALID_EVERY

_Loaded = Tuple[tf.data.Dataset, str]  # (raw pixels, source kind)
TFDS_PROBE_URL = 'https://storage.googleapis.com/'  # where tensorflow-datasets downloads from


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
    raise errors.DatasetError(f'tensorflow-datasets cannot be imported ({error}): reinstall '
                              'vlae_tf (pip install .), or pass --data_dir with the raw files of '
                              f'{name}.') from error
  def offline(error):
    reason = ' '.join(f'{type(error).__name__}: {error}'.split())
    reason = reason if len(reason) <= 160 else reason[:157] + '...'
    return errors.DatasetError(f'tensorflow-datasets could not download {name!r} ({reason}): '
                               'without --data_dir it needs the network the first time; offline, '
                               'pass --data_dir=DIR holding the raw files (or set '
                               f'{ENV_DATA_DIR}), see docs/datasets.md.')

  try:
    if not tfds.builder(name).is_prepared():
      # tensorflow-datasets retries a failed download ten times with back-off (minutes offline):
      # one quick request first, through the same proxies, says whether the network is there.
      import requests  # pylint: disable=g-import-not-at-top
      requests.head(TFDS_PROBE_URL, timeout=15)
    dataset = tfds.load(name, split=split, shuffle_files=False)
  except Exception as error:  # pylint: disable=broad-except
    if not _is_network_error(error):
      raise
    raise offline(error) from None
  return dataset.map(lambda example: example['image'], num_parallel_calls=tf.data.AUTOTUNE)


def _static_mnist(split: str) -> _Loaded:
  tfds_split = {'train': 'train', 'valid': 'validation', 'test': 'test',
                'train+valid': 'train+validation'}[split]
  return _tfds_images('binarized_mnist', tfds_split), 'binary'


def _dynamic_mnist(split: str) -> _Loaded:
  tfds_split = {'train': 'train[:50000]', 'valid': 'train[50000:]', 'test': 'test',
                'train+valid': 'train'}[split]
  return _tfds_images('mnist', tfds_split), 'grey255'


def _omniglot(split: str) -> _Loaded:
  """Lake's background alphabets ('train') and evaluation alphabets ('test'), as for the zips."""
  images = _tfds_images('omniglot', 'test' if split == 'test' else 'train')

  def stroke_intensity(image):  # [105, 105, 3] uint8, black strokes on white
    grey = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))  # [105, 105, 1]
    small = tf.image.resize(grey, [28, 28], method='lanczos3', antialias=True)  # [28, 28, 1]
    small = tf.round(tf.clip_by_value(small, 0.0, 255.0))  # 8-bit grey levels, as PIL's
    return tf.cast(255.0 - small, tf.uint8)  # 255 = stroke

  images = images.map(stroke_intensity, num_parallel_calls=tf.data.AUTOTUNE)
  if split in ('train', 'valid'):
    every = OMNIGLOT_ZIP_VALID_EVERY

    def in_split(index, unused_image):
      is_valid = tf.equal(index % every, every - 1)
      return is_valid if split == 'valid' else tf.logical_not(is_valid)

    images = images.enumerate().filter(in_split).map(lambda unused_index, image: image)
  return images, 'grey255'


def _caltech(split: str) -> _Loaded:
  raise errors.DatasetError(f'caltech101_silhouettes ({split}) is not in tensorflow-datasets: pass '
                            f'data_dir or set {ENV_DATA_DIR}; {needs("caltech101_silhouettes")}.')


def _cifar10(split: str) -> _Loaded:
  tfds_split = {'train': 'train[:45000]', 'valid': 'train[45000:]', 'test': 'test',
                'train+valid': 'train'}[split]
  return _tfds_images('cifar10', tfds_split), '8bit'


LOADERS: Dict[str, Callable[[str], _Loaded]] = {
    'static_mnist': _static_mnist,
    'dynamic_mnist': _dynamic_mnist,
    'omniglot': _omniglot,
    'caltech101_silhouettes': _caltech,
    'cifar10': _cifar10,
}
