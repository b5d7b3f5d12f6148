"""The readers of user_images.py: folders of image files, .npy/.npz arrays and tensorflow-datasets,
each to a `Raw` pool of uint8 images [N, H, W, C] with their split, names and labels.

Image files are decoded by `tf.io.decode_image` one at a time, so that a corrupt file is named;
arrays by `numpy.load` (no pickles); every problem is one `DatasetError` line with the fix. The
module imports TensorFlow only to decode, resize and read tensorflow-datasets, so that
early_checks.py can list a folder and check an array before TensorFlow loads.
"""

import dataclasses
import hashlib
import os
import posixpath
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from vlae_tf import errors

TEST_FRACTION = 0.1
VALID_FRACTION = 0.1


@dataclasses.dataclass
class Raw:
  """Every image of a source, before the pixel kind is decided.

  Attributes:
    images: uint8 [N, H, W, C], 0..255 (0/1 only for arrays that hold 0/1).
    keys: the name of every image (its path in the folder, or its row): what the hash split reads.
    split_indices: {'train', 'valid', 'test'}: indices into `images`, or None (split by hash).
    labels: int64 [N] or None.
    class_names: the names of the labels, or None.
    origin: how the splits are made ('folders', 'hash', 'arrays', 'tfds').
  """
  images: np.ndarray
  keys: List[str]
  split_indices: Optional[Dict[str, np.ndarray]]
  labels: Optional[np.ndarray]
  class_names: Optional[Tuple[str, ...]]
  origin: str


def hash_fraction(key: str) -> float:
  """SHA-256 of `key` as a fraction in [0, 1): where an image falls in the split."""
  return int.from_bytes(hashlib.sha256(key.encode('utf-8')).digest()[:8], 'big') / 2.0**64


def hash_split(keys, test=True):
  """{'train', 'valid'[, 'test']}: indices of `keys` by `hash_fraction` (see user_images.py)."""
  fractions = np.array([hash_fraction(key) for key in keys], np.float64).reshape(-1)
  if not test:
    return {'train': np.flatnonzero(fractions >= VALID_FRACTION),
            'valid': np.flatnonzero(fractions < VALID_FRACTION)}
  return {'test': np.flatnonzero(fractions < TEST_FRACTION),
          'valid': np.flatnonzero((fractions >= TEST_FRACTION) &
                                  (fractions < TEST_FRACTION + VALID_FRACTION)),
          'train': np.flatnonzero(fractions >= TEST_FRACTION + VALID_FRACTION)}


def fingerprint(path: str) -> str:
  """A digest of the names, sizes and times of the files a source reads (the cache key)."""
  digest = hashlib.sha256()
  if os.path.isfile(path):
    stat = os.stat(path)
    digest.update(f'{stat.st_mtime_ns} {stat.st_size}'.encode())
    return digest.hexdigest()
  for folder, subfolders, names in os.walk(path):
    subfolders[:] = sorted(name for name in subfolders if not name.startswith('.'))
    for name in sorted(names):
      stat = os.stat(os.path.join(folder, name))
      digest.update(f'{os.path.join(folder, name)} {stat.st_mtime_ns} {stat.st_size}\n'.encode())
  return digest.hexdigest()


def resize(images: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
  """uint8 [N, h, w, C] -> uint8 [N, H, W, C]: antialiased area (shrinking) or bilinear.

  Binary images (only 0 and 255, or only 0 and 1) stay binary: the resized grey level is
  thresholded at half, as 0/255.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  values = np.flatnonzero(np.bincount(images.reshape(-1), minlength=256))
  binary = np.isin(values, (0, 255)).all() or np.isin(values, (0, 1)).all()
  scale = 255 if binary and values.max(initial=0) <= 1 else 1
  resized = []
  for start in range(0, len(images), 1024):
    chunk = tf.constant(images[start:start + 1024] * scale, tf.float32)
    resized.append(tf.image.resize(chunk, size, method='area' if size[0] < chunk.shape[1]
                                   else 'bilinear', antialias=True).numpy())
  grey = np.concatenate(resized)
  if binary:
    return np.where(grey >= 127.5, 255, 0).astype(np.uint8)
  return np.clip(np.round(grey), 0, 255).astype(np.uint8)


# -- Folders ------------------------------------------------------------------------------------


def _visible(folder):
  return sorted(name for name in os.listdir(folder) if not name.startswith('.'))


def _images_in(folder, extensions):
  return [name for name in _visible(folder) if name.lower().endswith(extensions)
          and os.path.isfile(os.path.join(folder, name))]


def _images_below(folder, extensions):
  """Paths relative to `folder` of the images in it and in its subfolders, at any depth, sorted."""
  found = []
  for current, subfolders, _ in os.walk(folder):
    subfolders[:] = sorted(name for name in subfolders if not name.startswith('.'))
    relative = os.path.relpath(current, folder)
    found += [name if relative == '.' else f'{relative}/{name}'
              for name in _images_in(current, extensions)]
  return sorted(found)


def _collect(root, folder, extensions):
  """[(path relative to root, class name or None)] of a flat or per-class folder.

  A class is a folder that holds images itself (a leaf of the tree, at any depth), named by its
  path below `folder`: OMNIGLOT as it unzips (alphabet/character/xxxx_yy.png) gives one class per
  character, 'alphabet/character', so the alphabet stays in the name (`class_groups`).
  """
  direct = _images_in(folder, extensions)
  classes = {name: _images_below(os.path.join(folder, name), extensions)
             for name in _visible(folder) if os.path.isdir(os.path.join(folder, name))}
  classes = {name: images for name, images in classes.items() if images}
  if direct and classes:
    first = next(iter(classes))
    raise errors.DatasetError(f'{folder} holds images both directly ({direct[0]}, ...) and in '
                              f'subfolders ({first}/, ...): put them all in one subfolder per '
                              'class, or all directly in the folder.')
  relative = os.path.relpath(folder, root)
  prefix = '' if relative == '.' else relative + '/'
  if direct:
    return [(prefix + name, None) for name in direct]
  return [(f'{prefix}{name}/{file}', posixpath.dirname(f'{name}/{file}'))
          for name, files in classes.items() for file in files]


def class_groups(class_names):
  """{group: number of classes} of nested class folders ('alphabet/character' -> 'alphabet'), or
  {} when every class is a folder of its own at the top."""
  groups = {}
  for name in class_names or ():
    if '/' in name:
      group = posixpath.dirname(name)
      groups[group] = groups.get(group, 0) + 1
  return groups


def not_an_image(path, error):
  """The one line for an image file that does not decode; TensorFlow's node names left out."""
  reason = ' '.join(re.sub(r'\{\{[^}]*\}\}', ' ', str(error)).split())[:120]
  return errors.DatasetError(f'{path}: not a readable image ({reason}): replace or remove the '
                             'file.')


def _decode(path):
  """uint8 [H, W, C] of one image file, its alpha dropped when opaque."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    image = tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
  except (tf.errors.OpError, ValueError) as error:
    raise not_an_image(path, getattr(error, 'message', error)) from None
  if image.dtype != np.uint8:
    image = (image.astype(np.float64) * 255 / np.iinfo(image.dtype).max).round().astype(np.uint8)
  if image.shape[-1] in (2, 4):
    if (image[..., -1] != 255).any():
      raise errors.DatasetError(f'{path}: has transparent pixels (an alpha channel): save it '
                                'without transparency (flattened on a background).')
    image = image[..., :-1]
  return image


def folder_entries(root: str, extensions: Sequence[str], split_folders):
  """What a folder holds, before any image is decoded: (entries, owners, found, origin).

  entries: [(path relative to root, class name or None)]; owners: the split of every entry from
  train/, valid/ and test/ folders, or None (split by hash); found: {split: its folder or None};
  origin: 'folders' or 'hash'. DatasetError when it holds no image or mixes layouts.
  """
  extensions = tuple(extensions)
  found = {split: next((name for name in names if os.path.isdir(os.path.join(root, name))), None)
           for split, names in split_folders.items()}
  if found['train'] and found['test']:
    entries, owners = [], []
    for split in ('train', 'valid', 'test'):
      if found[split]:
        part = _collect(root, os.path.join(root, found[split]), extensions)
        entries += part
        owners += [split] * len(part)
    origin = 'folders'
  else:
    entries = _collect(root, root, extensions)
    owners, origin = None, 'hash'
  if not entries:
    raise errors.DatasetError(f'{root} holds no images ({", ".join(extensions)}), nor do its '
                              'subfolders: give a folder of image files.')
  if {name is None for _, name in entries} == {True, False}:
    raise errors.DatasetError(f'{root}: some splits have one subfolder per class and some do not: '
                              'give every split the same layout.')
  return entries, owners, found, origin


def mixed_sizes_error(root, relative, shape, first):
  return errors.DatasetError(f'{root}: mixed sizes: {relative} is {shape[0]}x{shape[1]}, '
                             f'{first[0]} is {first[1][0]}x{first[1][1]}: pass '
                             f'--image_size={first[1][0]}x{first[1][1]} to resize them all.')


def folder_splits(root: str, extensions: Sequence[str], split_folders, image_size) -> Raw:
  """The images of a folder: flat, per class, or train/ and test/ (see user_images.py)."""
  entries, owners, found, origin = folder_entries(root, extensions, split_folders)
  classes = sorted({name for _, name in entries if name is not None})
  images, first = [], None
  for relative, _ in entries:
    path = os.path.join(root, relative)
    image = _decode(path)
    if first is None:
      first = (relative, image.shape)
    if image.shape[-1] != first[1][-1]:
      raise errors.DatasetError(f'{root}: mixed channel counts: {relative} has {image.shape[-1]}, '
                                f'{first[0]} has {first[1][-1]}: save them all as grey or all as '
                                'RGB.')
    if image_size is not None and image.shape[:2] != tuple(image_size):
      image = resize(image[np.newaxis], image_size)[0]
    elif image_size is None and image.shape[:2] != first[1][:2]:
      raise mixed_sizes_error(root, relative, image.shape, first)
    images.append(image)
  keys = [relative for relative, _ in entries]
  split_indices = None
  if owners is not None:
    owners = np.array(owners)
    split_indices = {split: np.flatnonzero(owners == split) for split in ('train', 'valid', 'test')}
    if not found['valid']:
      train = split_indices['train']
      carved = hash_split([keys[i] for i in train], test=False)
      split_indices.update(train=train[carved['train']], valid=train[carved['valid']])
  labels = (np.array([classes.index(name) for _, name in entries], np.int64) if classes
            else None)
  return Raw(np.stack(images), keys, split_indices, labels, tuple(classes) or None, origin)


# -- Arrays -------------------------------------------------------------------------------------


_NPZ_LAYOUTS = (({'train': 'x_train', 'valid': 'x_valid', 'test': 'x_test'},
                 {'train': 'y_train', 'valid': 'y_valid', 'test': 'y_test'}),
                ({'train': 'train', 'valid': 'valid', 'test': 'test'}, {}))


def _checked_array(array, where):
  """uint8 [N, H, W, C] of an array of images, or the one-line error."""
  if array.ndim == 3:
    array = array[..., np.newaxis]
  if array.ndim != 4 or array.shape[-1] not in (1, 3) or min(array.shape) == 0:
    raise errors.DatasetError(f'{where}: an array of shape {list(array.shape)}: expected images '
                              '[N, H, W] or [N, H, W, C] with C = 1 (grey) or 3 (RGB), N > 0.')
  if array.dtype == bool or array.dtype == np.uint8:
    return array.astype(np.uint8)
  if not np.issubdtype(array.dtype, np.number):
    raise errors.DatasetError(f'{where}: an array of dtype {array.dtype}: expected uint8, bool or '
                              'numbers 0 and 1.')
  if not np.isin(array, (0, 1)).all():
    finite = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
    low, high = (finite.min(), finite.max()) if finite.size else (np.nan, np.nan)
    raise errors.DatasetError(f'{where}: {array.dtype} values from {low} to {high}: expected uint8 '
                              '(0..255), bool, or only 0 and 1; e.g. np.round(x * '
                              '255).astype(np.uint8) for grey levels in [0, 1].')
  return array.astype(np.uint8)


def _load(path):
  try:
    return np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as error:
    reason = ' '.join(str(error).split())[:120]
    raise errors.DatasetError(f'{path}: not a readable .npy/.npz array ({reason}): give a folder '
                              'of images or an array saved with numpy.save / '
                              'numpy.savez.') from None


def array_parts(path: str, image_size):
  """({split or 'all': uint8 [N, H, W, C]}, {split: labels}) of a .npy or .npz file, checked
  (no TensorFlow: the arrays are not resized here)."""
  if not path.lower().endswith(('.npy', '.npz')):
    raise errors.DatasetError(f'{path}: not a folder, a .npy or a .npz file: give a folder of '
                              'images or an array of images.')
  loaded = _load(path)
  if isinstance(loaded, np.ndarray):
    arrays, label_arrays = {'all': loaded}, {}
  else:
    with loaded:
      contents = {key: loaded[key] for key in loaded.files}
    arrays, label_arrays = None, {}
    for images_keys, labels_keys in _NPZ_LAYOUTS:
      if images_keys['train'] in contents and images_keys['test'] in contents:
        arrays = {split: contents[key] for split, key in images_keys.items() if key in contents}
        label_arrays = {split: contents[key] for split, key in labels_keys.items()
                        if key in contents and split in arrays}
        break
    if arrays is None and len(contents) == 1:
      arrays = {'all': next(iter(contents.values()))}
    if arrays is None:
      raise errors.DatasetError(f'{path} holds arrays {", ".join(sorted(contents)) or "(none)"}: '
                                'expected x_train and x_test (y_train, y_test as labels), train '
                                'and test, or a single array of images.')
  parts = {split: _checked_array(array, f'{path}' if split == 'all' else f'{path}[{split}]')
           for split, array in arrays.items()}
  shapes = {array.shape[1:] for array in parts.values()}
  if len(shapes) > 1 and image_size is None:
    raise errors.DatasetError(f'{path}: its arrays hold images of different shapes '
                              f'{sorted(shapes)}: pass --image_size=HxW to resize them all.')
  return parts, label_arrays


def array_splits(path: str, image_size) -> Raw:
  """The images of a .npy or .npz file (see user_images.py)."""
  parts, label_arrays = array_parts(path, image_size)
  if image_size is not None:
    parts = {split: resize(array, image_size) for split, array in parts.items()}
  order = [split for split in ('all', 'train', 'valid', 'test') if split in parts]
  images = np.concatenate([parts[split] for split in order])
  keys = [f'{split}/{row}' if split != 'all' else str(row) for split in order
          for row in range(len(parts[split]))]
  labels = None
  if label_arrays and set(label_arrays) == set(parts):
    labels = np.concatenate([np.asarray(label_arrays[split]).reshape(-1).astype(np.int64)
                             for split in order])
    if len(labels) != len(images):
      raise errors.DatasetError(f'{path}: {len(labels)} labels for {len(images)} images: give one '
                                'label per image.')
  if 'all' in parts:
    return Raw(images, keys, None, labels, None, 'hash')
  starts = np.cumsum([0] + [len(parts[split]) for split in order])
  split_indices = {split: np.arange(starts[i], starts[i + 1]) for i, split in enumerate(order)}
  if 'valid' not in split_indices:
    train = split_indices['train']
    carved = hash_split([keys[i] for i in train], test=False)
    split_indices.update(train=train[carved['train']], valid=train[carved['valid']])
  classes = None if labels is None else tuple(str(i) for i in range(int(labels.max()) + 1))
  return Raw(images, keys, split_indices, labels, classes, 'arrays')


# -- tensorflow-datasets ------------------------------------------------------------------------


def tfds_splits(name: str) -> Raw:
  """The 'image' (and 'label') features of tensorflow-datasets `name`, its train/test splits."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import)
    builder = tfds.builder(name)
    if not builder.is_prepared():
      # tfds retries a failed download for minutes: one quick request first says whether the
      # network is there (as tfds_loaders.py does).
      import requests  # pylint: disable=g-import-not-at-top
      from vlae_tf.data import tfds_loaders  # pylint: disable=g-import-not-at-top  (TensorFlow)
      requests.head(tfds_loaders.TFDS_PROBE_URL, timeout=15)
      builder.download_and_prepare()
    available = set(builder.info.splits)
  except Exception as error:  # pylint: disable=broad-except  (tfds raises many kinds)
    reason = ' '.join(f'{type(error).__name__}: {error}'.split())[:160]
    raise errors.DatasetError(f'tfds:{name}: tensorflow-datasets cannot load it ({reason}): check '
                              'the name (tfds.list_builders()) and the network, or give a folder '
                              'of images.') from None
  if 'image' not in builder.info.features:
    raise errors.DatasetError(f'tfds:{name} has no \'image\' feature: give an image dataset.')
  wanted = {'train': 'train', 'valid': 'validation', 'test': 'test'}
  parts, label_parts = {}, {}
  for split, tfds_split in wanted.items():
    if tfds_split not in available:
      continue
    examples = list(tfds.as_numpy(builder.as_dataset(split=tfds_split, shuffle_files=False)))
    parts[split] = _checked_array(np.stack([example['image'] for example in examples]),
                                  f'tfds:{name}[{tfds_split}]')
    if 'label' in builder.info.features:
      label_parts[split] = np.array([example['label'] for example in examples], np.int64)
  if 'train' not in parts:
    raise errors.DatasetError(f'tfds:{name} has no train split (it has '
                              f'{", ".join(sorted(available))}).')
  order = [split for split in ('train', 'valid', 'test') if split in parts]
  images = np.concatenate([parts[split] for split in order])
  keys = [f'{split}/{row}' for split in order for row in range(len(parts[split]))]
  starts = np.cumsum([0] + [len(parts[split]) for split in order])
  split_indices = {split: np.arange(starts[i], starts[i + 1]) for i, split in enumerate(order)}
  labels = np.concatenate([label_parts[split] for split in order]) if label_parts else None
  carve = [split for split in ('valid', 'test') if split not in split_indices]
  if carve:  # carved from train by hash
    train = split_indices['train']
    carved = hash_split([keys[i] for i in train], test='test' in carve)
    split_indices.update({split: train[carved[split]] for split in carve + ['train']})
  classes = None if labels is None else tuple(str(i) for i in range(int(labels.max()) + 1))
  return Raw(images, keys, split_indices, labels, classes, 'tfds')
