"""Your own images as a dataset: a folder of images, a .npy/.npz array, or `tfds:NAME`.

A source is what `train.dataset` holds when it is not a catalogue name (catalogue.NAMES): the
absolute path of a folder or array file, or 'tfds:NAME'. `read(source)` reads it once per process
(cached while the files are unchanged) into a `UserImages`: every split as uint8 [N, H, W, C],
the pixel kind, labels when the folder has one subfolder per class. `datasets.load` and
`labels.load_labels` hand such names here, so every binary sees them like the catalogue's.

* A folder holds PNG, JPEG, BMP or GIF files (decoded by `tf.io.decode_image`, the first frame of a
  GIF): flat; or one subfolder per class (sorted folder names are the labels 0, 1, ...; a class's
  images may lie at any depth below it: the folder that holds an image is its class, named by its
  path, e.g. 'alphabet/character' for OMNIGLOT's alphabet/character/0108_01.png); or
  train/ and test/ subfolders (each flat or per class; an optional valid/ too), used as the
  splits. Hidden files and other files are ignored.
* An array file: a .npy of [N, H, W] or [N, H, W, C], or a .npz whose arrays are x_train/x_test
  (with y_train/y_test as labels, Keras' layout), train/test (valid optional), or a single
  array; uint8, bool, or any numeric dtype holding only 0 and 1.
* `tfds:NAME`: the 'image' feature (and 'label' when there is one) of a tensorflow-datasets
  dataset that tfds can load on the machine; its train/test (validation) splits.

Pixels: images whose values are all in {0, 255} (or {0, 1}) are binary (values 0/1, the Bernoulli
decoder); other images are 8-bit grey or RGB (0..255, the logistic mixture). An RGB image whose
three channels are equal everywhere is grey. `binarize='threshold'` turns grey images into 0/1
(>= 128 is 1), `'dynamic'` into Bernoulli samples of the grey level / 255 (afresh at every epoch for
training, once for evaluation, as dynamic MNIST). `image_size=(H, W)` resizes every image
(antialiased area / bilinear); binary images stay binary (the resized grey level is thresholded).

Splits without train/test folders (or without valid/): an image's split is a function of its name
alone, SHA-256 of the path relative to the folder (of the row index in an array) read as a
fraction u in [0, 1): test when u < 0.1, valid when u < 0.2, else train (from a train/ folder:
valid when u < 0.1), so adding images never moves the old ones.

Every problem is one `DatasetError` line naming the file or the shape and the fix.
"""

import dataclasses
import functools
import os
from typing import Mapping, Optional, Tuple

import gin
import numpy as np

from vlae_tf import errors
from vlae_tf.data import user_arrays
from vlae_tf.data.catalogue import NAMES

TFDS_PREFIX = 'tfds:'
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif')
TEST_FRACTION = user_arrays.TEST_FRACTION
VALID_FRACTION = user_arrays.VALID_FRACTION
# The binary encoder halves each side three times and the 8-bit one twice: below this, its
# feature maps are single pixels from the first stages on.
MIN_SIDE = 8
BINARIZE = ('threshold', 'dynamic')
SPLIT_FOLDERS = {'train': ('train',), 'valid': ('valid', 'validation'), 'test': ('test',)}


def is_user_source(name) -> bool:
  """Whether `train.dataset = name` names one's own images rather than a catalogue dataset."""
  return isinstance(name, str) and name not in NAMES


def resolve_source(name: str) -> str:
  """The source as `train.dataset` records it: a catalogue name or 'tfds:NAME' as it is, a path
  made absolute (so that the run's readers find it from any directory)."""
  if not is_user_source(name) or name.startswith(TFDS_PREFIX):
    return name
  return os.path.abspath(os.path.expanduser(name))


@gin.configurable('user_images', module='vlae_tf.user_images')
def options(image_size: Optional[Tuple[int, int]] = None,
            binarize: Optional[str] = None) -> Tuple[Optional[Tuple[int, int]], Optional[str]]:
  """How one's own images are read (bin/train's --image_size and --binarize, kept in config.gin).

  Args:
    image_size: (height, width) to resize every image to; None: the images' own size.
    binarize: None, 'threshold' or 'dynamic' (see the module docstring).
  """
  if binarize not in (None,) + BINARIZE:
    raise errors.DatasetError(f'--binarize={binarize}: one of {", ".join(BINARIZE)}.')
  if image_size is not None:
    image_size = tuple(int(side) for side in image_size)
  return image_size, binarize


def parse_image_size(text: str) -> Tuple[int, int]:
  """'52x52' (or '52') -> (52, 52); DatasetError for anything else."""
  parts = str(text).lower().replace(',', 'x').split('x')
  try:
    size = tuple(int(part) for part in parts)
  except ValueError:
    size = ()
  size = size * 2 if len(size) == 1 else size
  if len(size) != 2 or min(size) < 1:
    raise errors.DatasetError(f'--image_size={text}: expected HEIGHTxWIDTH, e.g. '
                              '--image_size=52x52.')
  return size


@dataclasses.dataclass(frozen=True)
class UserImages:
  """One's own images, read and split.

  Attributes:
    source: the folder, array file or 'tfds:NAME'.
    shape: (height, width, channels).
    kind: 'binary' (values 0/1) or '8bit' (0..255): the model family that fits.
    binarization: None, or 'threshold' / 'dynamic' when grey images are binarized.
    splits: {'train', 'valid', 'test'}: uint8 [N, H, W, C] (grey levels for 'dynamic').
    labels: {split: int64 [N]}, or None without classes.
    class_names: the names of labels 0, 1, ..., or None.
    split_origin: how the splits were made ('folders', 'hash', 'arrays', 'tfds').
    pixels: what the files hold ('binary', 'grey' or 'rgb').
    names: {split: the name of every image}: its path in the folder, or its row in the array.
  """
  source: str
  shape: Tuple[int, int, int]
  kind: str
  binarization: Optional[str]
  splits: Mapping[str, np.ndarray]
  labels: Optional[Mapping[str, np.ndarray]]
  class_names: Optional[Tuple[str, ...]]
  split_origin: str
  pixels: str
  names: Mapping[str, Tuple[str, ...]]

  def sizes(self):
    return {split: int(len(images)) for split, images in self.splits.items()}

  def split(self, split: str) -> np.ndarray:
    if split == 'train+valid':
      return np.concatenate([self.splits['train'], self.splits['valid']])
    return self.splits[split]

  def summary(self) -> str:
    """One line: what was read, its kind and split sizes."""
    sizes = self.sizes()
    binarized = f', binarized ({self.binarization})' if self.binarization else ''
    classes = ''
    if self.class_names:
      groups = user_arrays.class_groups(self.class_names)
      example = self.class_names[0]
      classes = (f', {len(self.class_names)} classes (the folders that hold images, e.g. '
                 f'{example}' + (f'; in {len(groups)} groups, e.g. {next(iter(groups))})'
                                 if groups else ')'))
    return (f'{self.source}: {sum(sizes.values())} {self.pixels} images {_shape_text(self.shape)}'
            f'{binarized} -> {self.kind} data{classes}; train {sizes["train"]}, valid '
            f'{sizes["valid"]}, test {sizes["test"]} (split by {self.split_origin})')

  def record(self):
    """What data_source.json keeps about the data."""
    return {'image_shape': list(self.shape), 'pixel_kind': self.kind, 'pixels': self.pixels,
            'binarize': self.binarization, 'split_sizes': self.sizes(),
            'split_by': self.split_origin, 'classes': list(self.class_names or []) or None}


def _shape_text(shape):
  return 'x'.join(map(str, shape))


hash_fraction = user_arrays.hash_fraction  # Re-exported: the split is documented here.
hash_split = user_arrays.hash_split


def read(source: str, image_size=None, binarize=None) -> UserImages:
  """Reads, checks and splits one's own images (cached while the files are unchanged).

  Args:
    source: a folder, a .npy/.npz file or 'tfds:NAME'.
    image_size: (height, width) to resize to, or None.
    binarize: None, 'threshold' or 'dynamic'.

  Raises:
    errors.DatasetError: one line naming the file or shape and the fix.
  """
  image_size, binarize = options(image_size, binarize)
  if source.startswith(TFDS_PREFIX):
    return _read_cached(source, image_size, binarize, None)
  path = os.path.abspath(os.path.expanduser(source))
  if not os.path.exists(path):
    raise errors.DatasetError(f'Unknown dataset {source!r}: not a dataset name '
                              f'({", ".join(NAMES)}) nor an existing folder or file; give a folder '
                              'of images, a .npy/.npz file or tfds:NAME.')
  return _read_cached(path, image_size, binarize, user_arrays.fingerprint(path))


def read_configured(source: str) -> UserImages:
  """`read` with the options the parsed gin config binds (`user_images.image_size`, ...)."""
  image_size, binarize = options()
  return read(source, image_size, binarize)


@functools.lru_cache(maxsize=4)
def _read_cached(source, image_size, binarize, unused_fingerprint):
  if source.startswith(TFDS_PREFIX):
    raw = user_arrays.tfds_splits(source[len(TFDS_PREFIX):])
  elif os.path.isdir(source):
    raw = user_arrays.folder_splits(source, IMAGE_EXTENSIONS, SPLIT_FOLDERS, image_size)
  else:
    raw = user_arrays.array_splits(source, image_size)
  return _finish(source, raw, image_size, binarize)


def _finish(source, raw, image_size, binarize) -> UserImages:
  """Split, size, channels, pixel kind and binarization of `user_arrays.Raw` images."""
  pool = raw.images  # uint8 [N, H, W, C], every image of every split
  if image_size is not None and tuple(pool.shape[1:3]) != image_size:
    pool = user_arrays.resize(pool, image_size)
  height, width, channels = pool.shape[1:]
  if min(height, width) < MIN_SIDE:
    raise errors.DatasetError(f'{source}: images of {height}x{width} are too small for the '
                              'encoder, which halves each side 2-3 times: at least '
                              f'{MIN_SIDE}x{MIN_SIDE}; enlarge them with '
                              f'--image_size={max(height, MIN_SIDE)}x{max(width, MIN_SIDE)}.')
  if channels == 3 and (pool[..., :1] == pool).all():
    pool, channels = np.ascontiguousarray(pool[..., :1]), 1
  values = np.flatnonzero(np.bincount(pool.reshape(-1), minlength=256))
  if np.isin(values, (0, 255)).all():
    pool, pixels = pool // 255, 'binary'
  elif np.isin(values, (0, 1)).all():
    pixels = 'binary'
  else:
    pixels = 'grey' if channels == 1 else 'rgb'
  if binarize and pixels != 'binary':
    if channels != 1:
      raise errors.DatasetError(f'{source}: --binarize needs grey images; these are RGB '
                                f'({channels} channels): convert them to grey, or drop --binarize '
                                'for the 8-bit model.')
    if binarize == 'threshold':
      pool = (pool >= 128).astype(np.uint8)
  kind = 'binary' if pixels == 'binary' or binarize else '8bit'
  binarization = binarize if (binarize and pixels != 'binary') else None
  splits = raw.split_indices
  if splits is None:
    splits = hash_split(raw.keys)
  images = {split: pool[indices] for split, indices in splits.items()}
  for split, part in images.items():
    part.flags.writeable = False
    if not len(part):
      raise errors.DatasetError(f'{source}: its {split} split is empty ({len(pool)} images in all, '
                                f'split by {raw.origin}): add images (a few hundred at least), or '
                                'give train/ and test/ subfolders.')
  labels = None
  if raw.labels is not None:
    labels = {split: raw.labels[indices] for split, indices in splits.items()}
  return UserImages(source=source, shape=(int(height), int(width), int(channels)), kind=kind,
                    binarization=binarization, splits=images, labels=labels,
                    class_names=raw.class_names, split_origin=raw.origin, pixels=pixels,
                    names={split: tuple(raw.keys[i] for i in indices)
                           for split, indices in splits.items()})


def check_batch_size(images: UserImages, batch_size: int, split: str = 'train') -> None:
  """DatasetError when the training split holds fewer images than one batch."""
  count = len(images.split(split))
  if count < batch_size:
    raise errors.DatasetError(f'{images.source}: {count} {split} images, fewer than one batch of '
                              f'{batch_size}: add images, or lower the batch, e.g. '
                              f'--gin_param=BATCH_SIZE={max(1, 2 ** int(np.log2(max(count, 1))))}.')


def load(source: str, split: str):
  """(dataset of raw pixels, source kind) of one split, for `datasets._finish`; and the shape."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  images = read_configured(source)
  pixels = tf.data.Dataset.from_tensor_slices(images.split(split))
  source_kind = {'threshold': 'binary', 'dynamic': 'grey255', None: None}[images.binarization]
  return pixels, source_kind or ('binary' if images.kind == 'binary' else '8bit'), images.shape


def load_labels(source: str, split: str) -> np.ndarray:
  """int64 [N] labels of `load(source, split)` (LabelsUnavailableError without classes)."""
  from vlae_tf import errors  # pylint: disable=g-import-not-at-top
  images = read_configured(source)
  if images.labels is None:
    raise errors.LabelsUnavailableError(
        f'{source} has no class labels: put its images in one subfolder per class (or give a '
        '.npz with y_train/y_test) for the probe.')
  if split == 'train+valid':
    return np.concatenate([images.labels['train'], images.labels['valid']])
  return images.labels[split]
