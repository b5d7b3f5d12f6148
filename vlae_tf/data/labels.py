"""Class labels aligned with `datasets.load(name, split)`, for linear probes of the latent code.

`load_labels(name, split, data_dir)` returns int64 [N] labels, label i belonging to image i of
`datasets.load(name, split, data_dir)`:

* `dynamic_mnist`: MNIST's idx label files (`train-labels-idx1-ubyte`, `t10k-labels-idx1-ubyte`,
  plain or gzipped, beside the image files), split like the images (the last 10,000 training labels
  are `valid`).
* `static_mnist`: Larochelle's .amat files carry no labels, but their images are MNIST's, each
  binarized once by Bernoulli sampling of its grey levels: the test file is MNIST's t10k images in
  a stable sort by label, the train and valid files a permutation of MNIST's 60,000 training
  images. Every binarized image b is matched to the MNIST image g under which it is most likely,

      argmax_g  sum_j b_j log g_j + (1 - b_j) log(1 - g_j),   g clipped to [1e-3, 1 - 1e-3]

  with 100 nats charged instead for an impossible pixel (b_j = 1 where g_j = 0, or 0 where
  g_j = 1)
  (one matrix product per chunk of images) and takes its label. `match_binarized` also returns the
  number of impossible pixels of each match, 0 for a true match: a match with any is an error.
* `caltech101_silhouettes`: `train_labels`, `val_labels`, `test_labels` of Marlin's .mat file
  (classes 1..101 there, 0..100 here).
* `cifar10`: the `labels` of the pickled batches, split like the images.
* `omniglot`: no labels are read (LabelsUnavailableError).
* one's own images (user_images.py): the class subfolders of a folder (sorted names are 0, 1, ...),
  or y_train/y_test of a .npz, or a tfds dataset's 'label'.

Without a data directory, dynamic MNIST and CIFAR-10 labels come from tensorflow-datasets, and
static MNIST is matched against tensorflow-datasets' MNIST.
"""

import functools
import pathlib
from typing import Optional, Sequence, Tuple

import numpy as np

from vlae_tf import errors
from vlae_tf.data import dataset_files
from vlae_tf.data import datasets
from vlae_tf.data import user_images

_IDX_UBYTE_1D = 0x00000801  # idx magic: unsigned bytes, 1 dimension
_CALTECH_LABEL_KEYS = {'train': 'train_labels', 'valid': 'val_labels', 'test': 'test_labels'}
_MATCH_EPSILON = 1e-3
_IMPOSSIBLE = 100.0  # nats charged for a pixel that the grey level cannot produce


def load_labels(name: str, split: str, data_dir=None,
                indices: Optional[Sequence[int]] = None) -> np.ndarray:
  """int64 [N] class labels of `datasets.load(name, split, data_dir)`, in the same order.

  Args:
    name: a dataset name (`catalogue.NAMES`).
    split: 'train', 'valid', 'test' or 'train+valid'.
    data_dir: the raw files (default: VLAE_DATA_DIR, else tensorflow-datasets).
    indices: only these images of the split (static MNIST then matches only those).

  Raises:
    LabelsUnavailableError: the dataset has no labels (OMNIGLOT).
    DatasetError: a file is missing or malformed.
  """
  if split not in datasets.SPLITS:
    raise errors.DatasetError(f'Unknown split {split!r} of {name}; expected one of '
                                f'{", ".join(datasets.SPLITS)}.')
  if user_images.is_user_source(name):  # the class subfolders of one's own images
    labels = user_images.load_labels(name, split)
    return labels if indices is None else labels[np.asarray(indices, np.int64)]
  datasets.info(name)
  root = datasets._resolve_data_dir(name, data_dir)  # pylint: disable=protected-access
  if name == 'static_mnist':
    if indices is None:  # whole splits are matched once per process
      key = None if root is None else str(root.expanduser().resolve())
      return _whole_static_mnist_labels(key, split).copy()
    return _static_mnist_labels(root, split, data_dir, indices)
  if name == 'omniglot':
    raise errors.LabelsUnavailableError('omniglot has no class labels in vlae_tf (its alphabets '
                                        'and characters are not read): the linear probe needs '
                                        'static_mnist, dynamic_mnist, caltech101_silhouettes or '
                                        'cifar10.')
  if root is None:
    labels = _tfds_labels(name, split)
  else:
    labels = {'dynamic_mnist': _mnist_labels, 'caltech101_silhouettes': _caltech_labels,
              'cifar10': _cifar_labels}[name](root, split)
  return labels if indices is None else labels[np.asarray(indices, np.int64)]


# ---------------------------------------------------------------------------------------------
# MNIST (idx) and static MNIST (matched).


@functools.lru_cache(maxsize=4)
def _idx_labels(key: Tuple[str, int, int]) -> np.ndarray:
  path = pathlib.Path(key[0])
  expected = 'an MNIST idx1-ubyte label file (train-labels-idx1-ubyte / t10k-labels-idx1-ubyte)'
  raw = dataset_files.read(path, expected)
  if len(raw) < 8:
    raise errors.DatasetError(f'{path} is {len(raw)} bytes, shorter than the 8-byte idx '
                                f'header; expected {expected}.')
  magic, count = np.frombuffer(raw[:8], '>u4')
  if magic != _IDX_UBYTE_1D or len(raw) != 8 + count:
    raise errors.DatasetError(f'{path} is not an idx1-ubyte file of {count} labels (magic '
                                f'{magic:#010x}, {len(raw)} bytes); expected {expected}.')
  labels = np.frombuffer(raw, np.uint8, offset=8).astype(np.int64)
  if labels.max(initial=0) > 9:
    raise errors.DatasetError(f'{path} holds labels above 9; expected {expected}.')
  return labels


def _mnist_file(root: pathlib.Path, stem: str) -> pathlib.Path:
  return dataset_files.require(root, 'mnist', (stem, stem + '.gz'), 'dynamic_mnist')


def _mnist_split_labels(root: pathlib.Path, part: str) -> np.ndarray:
  """'train' (60,000) or 'test' labels of the idx files."""
  stem = 't10k-labels-idx1-ubyte' if part == 'test' else 'train-labels-idx1-ubyte'
  return _idx_labels(dataset_files.file_key(_mnist_file(root, stem)))


def _mnist_split_images(root: pathlib.Path, part: str) -> np.ndarray:
  stem = 't10k-images-idx3-ubyte' if part == 'test' else 'train-images-idx3-ubyte'
  return dataset_files.idx_images(dataset_files.file_key(_mnist_file(root, stem)))


def _mnist_labels(root: pathlib.Path, split: str) -> np.ndarray:
  if split == 'test':
    return _mnist_split_labels(root, 'test')
  return datasets._carve_validation(  # pylint: disable=protected-access
      _mnist_split_labels(root, 'train'), split, 10_000, root, 'dynamic_mnist', what='labels')


def match_binarized(binary: np.ndarray, grey: np.ndarray,
                    chunk_size: int = 1024) -> Tuple[np.ndarray, np.ndarray]:
  """For each binarized image, the grey image under which it is most likely.

  Args:
    binary: [N, ...] images in {0, 1}.
    grey: [M, ...] grey levels 0..255 (uint8), the same pixels per image.
    chunk_size: binarized images per matrix product.

  Returns:
    (indices int64 [N] into `grey`, impossible int64 [N]: pixels of each match that a Bernoulli
    binarization of its grey levels cannot produce; 0 for a true match).
  """
  binary = np.asarray(binary, np.float32).reshape(len(binary), -1)
  grey = np.asarray(grey).reshape(len(grey), -1)
  never_on = (grey == 0).astype(np.float32)
  always_on = (grey == 255).astype(np.float32)
  levels = np.clip(grey.astype(np.float32) / 255.0, _MATCH_EPSILON, 1.0 - _MATCH_EPSILON)
  log_on = np.where(never_on > 0, -_IMPOSSIBLE, np.log(levels))  # log p(b_j = 1 | g_j)
  log_off = np.where(always_on > 0, -_IMPOSSIBLE, np.log1p(-levels))  # log p(b_j = 0 | g_j)
  log_odds = log_on - log_off  # [M, D]
  offset = log_off.sum(axis=1)  # [M]
  indices = np.empty(len(binary), np.int64)
  for start in range(0, len(binary), chunk_size):
    scores = binary[start:start + chunk_size] @ log_odds.T + offset  # [chunk, M]
    indices[start:start + chunk_size] = scores.argmax(axis=1)
  matched_never, matched_always = never_on[indices], always_on[indices]
  impossible = (binary * matched_never).sum(1) + ((1.0 - binary) * matched_always).sum(1)
  return indices, impossible.astype(np.int64)


@functools.lru_cache(maxsize=4)
def _whole_static_mnist_labels(data_dir: Optional[str], split: str) -> np.ndarray:
  root = datasets._resolve_data_dir('static_mnist', data_dir)  # pylint: disable=protected-access
  return _static_mnist_labels(root, split, data_dir, None)


def _static_mnist_labels(root, split, data_dir, indices):
  parts = {'train': ['train'], 'valid': ['valid'], 'test': ['test'],
           'train+valid': ['train', 'valid']}[split]
  binary = np.concatenate([_static_images(part, data_dir) for part in parts])
  if indices is not None:
    binary = binary[np.asarray(indices, np.int64)]
  part = 'test' if split == 'test' else 'train'
  if root is None:
    grey, grey_labels = _tfds_mnist(part)
  else:
    grey, grey_labels = _mnist_split_images(root, part), _mnist_split_labels(root, part)
  matched, impossible = match_binarized(binary, grey)
  bad = int((impossible > 0).sum())
  if bad:
    raise errors.DatasetError(
        f'{bad} of {len(binary)} static_mnist {split} images match no MNIST {part} image (pixels '
        'on where MNIST is blank or off where it is black): the .amat files and the MNIST idx '
        'files do not belong together.')
  return grey_labels[matched]


def _static_images(part: str, data_dir) -> np.ndarray:
  """uint8 [N, 784] binary images of one static MNIST file."""
  images = datasets.load('static_mnist', part, data_dir=data_dir)
  return np.concatenate([batch.reshape(len(batch), -1) for batch in
                         images.batch(8192).as_numpy_iterator()]).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Caltech-101 Silhouettes and CIFAR-10.


def _caltech_labels(root: pathlib.Path, split: str) -> np.ndarray:
  path = dataset_files.require(root, 'caltech101_silhouettes',
                           ('caltech101_silhouettes_28_split1.mat',), 'caltech101_silhouettes')
  parts = ['train', 'valid'] if split == 'train+valid' else [split]
  contents = dataset_files.load_mat(
      path, [_CALTECH_LABEL_KEYS[part] for part in parts],
      datasets.needs('caltech101_silhouettes'))
  labels = np.concatenate([np.asarray(contents[_CALTECH_LABEL_KEYS[part]]).reshape(-1)
                           for part in parts]).astype(np.int64)
  return labels - labels.min(initial=1) if labels.min(initial=1) == 1 else labels


def _cifar_labels(root: pathlib.Path, split: str) -> np.ndarray:
  """Labels of the batches present, split like `datasets._local_cifar10` splits the images."""
  folder = dataset_files.find(root, 'cifar10', (dataset_files.CIFAR_DIR,))
  if folder is None or not folder.is_dir():
    raise errors.LabelsUnavailableError('CIFAR-10 labels are read from the '
                                        f'{dataset_files.CIFAR_DIR}/ folder; none in {root}: '
                                        'extract cifar-10-python.tar.gz there.')
  names = ([dataset_files.CIFAR_TEST_BATCH] if split == 'test'
           else [n for n in dataset_files.CIFAR_TRAIN_BATCHES if (folder / n).is_file()])
  labels = []
  for batch_name in names:
    path = folder / batch_name
    expected = 'a CIFAR-10 python batch with labels'
    batch = dataset_files.unpickle(dataset_files.read(path, expected), str(path), expected)
    values = batch.get(b'labels', batch.get('labels')) if isinstance(batch, dict) else None
    if values is None:
      raise errors.DatasetError(f'{path} has no labels; expected {expected}.')
    labels.append(np.asarray(values, np.int64))
  labels = np.concatenate(labels)
  if split == 'test' or len(names) < len(dataset_files.CIFAR_TRAIN_BATCHES):
    return labels  # the images: every training image present, no validation carved
  return datasets._carve_validation(labels, split, 5_000, folder, 'cifar10', what='labels')  # pylint: disable=protected-access


# ---------------------------------------------------------------------------------------------
# tensorflow-datasets.


def _tfds_numpy(name: str, split: str, feature: str) -> np.ndarray:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import)
  dataset = tfds.load(name, split=split, shuffle_files=False)
  return np.concatenate([batch[feature] for batch in
                         tfds.as_numpy(dataset.batch(8192))])


def _tfds_labels(name: str, split: str) -> np.ndarray:
  tfds_name, tfds_split = {
      'dynamic_mnist': ('mnist', {'train': 'train[:50000]', 'valid': 'train[50000:]',
                                  'test': 'test', 'train+valid': 'train'}),
      'cifar10': ('cifar10', {'train': 'train[:45000]', 'valid': 'train[45000:]', 'test': 'test',
                              'train+valid': 'train'}),
  }.get(name, (None, None))
  if tfds_name is None:
    raise errors.LabelsUnavailableError(f'{name} labels need --data_dir (it is not in '
                                        'tensorflow-datasets).')
  return _tfds_numpy(tfds_name, tfds_split[split], 'label').astype(np.int64)


def _tfds_mnist(part: str) -> Tuple[np.ndarray, np.ndarray]:
  return (_tfds_numpy('mnist', part, 'image'),
          _tfds_numpy('mnist', part, 'label').astype(np.int64))
