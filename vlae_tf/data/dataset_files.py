"""Readers of the published dataset files, which are untrusted input, and the local loaders.

Every parse error, wrong shape or value becomes a `errors.DatasetError` that names the file, the
problem, and the files the dataset needs with their download address. The CIFAR-10 pickles are
read by an unpickler that only builds plain data and numpy arrays (`_RestrictedUnpickler`). Parsed
files are cached by (path, mtime, size), so an edited file is read again.

datasets.py's local loaders put these readers together with the split protocols of
docs/datasets.md (which images are the validation split); labels.py reads the labels with them.
"""

import functools
import gzip
import io
import pathlib
import pickle
import struct
import tarfile
import types
import zipfile
import zlib
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from vlae_tf import errors
from vlae_tf.data.catalogue import info
from vlae_tf.data.catalogue import needs


################################################################################
# Reading untrusted files.


def file_key(path: pathlib.Path) -> Tuple[str, int, int]:
  """(path, mtime, size): the cache key of a parsed file, so an edited file is re-read."""
  stat = path.stat()
  return str(path), stat.st_mtime_ns, stat.st_size


def read(path: pathlib.Path, expected: str, limit: Optional[int] = None) -> bytes:
  """The bytes of `path`, gunzipped if its name ends in .gz.

  Only a regular file is read (a FIFO would block, /dev/zero never end). With `limit`, a file
  (or its gunzipped content: a gzip bomb) longer than `limit` bytes is refused before more than
  `limit` bytes are held in memory.
  """
  if path.exists() and not path.is_file():
    raise errors.DatasetError(f'{path} is not a regular file; expected {expected}.')
  gunzipped = ' once gunzipped' if path.suffix == '.gz' else ''
  too_long = (f'{path} holds more than {limit:,} bytes{gunzipped}, more than this reader takes; '
              f'expected {expected}.') if limit else None
  try:
    if limit is not None and path.stat().st_size > limit:
      raise errors.DatasetError(too_long)
    raw = path.read_bytes()
  except OSError as error:
    raise errors.DatasetError(f'Cannot read {path}: {error}; expected {expected}.') from error
  if path.suffix != '.gz':
    return raw
  try:
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
      text = stream.read(-1 if limit is None else limit + 1)
  except (OSError, EOFError, zlib.error) as error:
    raise errors.DatasetError(f'{path} is not a valid gzip file (truncated or corrupt: {error}); '
                              f'expected {expected}.') from error
  if limit is not None and len(text) > limit:
    raise errors.DatasetError(too_long)
  return text


def find(root: pathlib.Path, subdir: str, names: Sequence[str]) -> Optional[pathlib.Path]:
  """The first of root/name, root/subdir/name (for each name in order) that exists."""
  for name in names:
    for folder in (root, root / subdir):
      if (folder / name).exists():
        return folder / name
  return None


def require(root: pathlib.Path, subdir: str, names: Sequence[str],
             dataset: str) -> pathlib.Path:
  path = find(root, subdir, names)
  if path is None:
    raise errors.DatasetError(f'None of {", ".join(names)} found in {root} or {root / subdir}; '
                              f'{needs(dataset)}.')
  return path


def _check_binary(values: np.ndarray, where: str, expected: str) -> None:
  if not np.isin(values, (0, 1)).all():
    bad = np.unique(values[~np.isin(values, (0, 1))])[:5]
    raise errors.DatasetError(f'{where} holds values {bad.tolist()}, not only 0 and 1; expected '
                              f'{expected}.')


def warn_if_unpublished_size(name: str, split: str, count: int, path: pathlib.Path) -> None:
  published = info(name).split_sizes[split]
  if count != published:
    logging.warning('%s %s from %s has %d images, the published split has %d.', name, split, path,
                    count, published)


_AMAT_SEPARATORS = b' \t\r\x0b\x0c'  # deleted; lines are split at b'\n'
# The largest .amat text read (256 MiB: about 170,000 images, 2.4 times all of MNIST): a bigger
# file, or a .gz that inflates beyond it, is refused (parsing holds a few copies of the text).
AMAT_MAX_BYTES = 256 * 2**20


def parse_amat(text: bytes, where: str, expected: str) -> np.ndarray:
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
    raise errors.DatasetError(f'{where} line {line}: value {text[start:].split()[0][:20]!r} is not '
                              f'0 or 1; expected {expected}.')
  lines = text.translate(None, _AMAT_SEPARATORS).split(b'\n')
  rows = [(number, line) for number, line in enumerate(lines, 1) if line]
  for number, line in rows:
    if len(line) != 784:
      raise errors.DatasetError(f'{where} line {number} has {len(line)} values; expected 784 per '
                                f'line (one 28x28 image), {expected}.')
  if not rows:
    raise errors.DatasetError(f'{where} holds no images; expected {expected}.')
  digits = np.frombuffer(b''.join(line for _, line in rows), np.uint8).reshape(len(rows), 784)
  values = digits - np.uint8(ord('0'))  # other characters wrap around to values > 1
  if (values > 1).any():
    row, col = np.argwhere(values > 1)[0]
    raise errors.DatasetError(f'{where} line {rows[row][0]}, value {col + 1}: '
                              f'{chr(digits[row, col])!r} is not 0 or 1; expected {expected}.')
  return values


@functools.lru_cache(maxsize=8)
def amat_images(key: Tuple[str, int, int]) -> np.ndarray:
  """uint8 [N, 28, 28, 1] in {0, 1} from an .amat(.gz), cached per (path, mtime, size)."""
  path = pathlib.Path(key[0])
  expected = f"Larochelle's binarized MNIST ({needs('static_mnist')})"
  images = parse_amat(read(path, expected, AMAT_MAX_BYTES), str(path), expected).reshape(
      -1, 28, 28, 1)
  images.flags.writeable = False
  return images


_IDX_UBYTE_3D = 0x00000803  # idx magic: unsigned bytes, 3 dimensions


@functools.lru_cache(maxsize=8)
def idx_images(key: Tuple[str, int, int]) -> np.ndarray:
  """uint8 [N, 28, 28, 1] grey levels from an idx3-ubyte(.gz) file, cached per (path, mtime)."""
  path = pathlib.Path(key[0])
  expected = f'an MNIST idx3-ubyte image file ({needs("dynamic_mnist")})'
  raw = read(path, expected)
  if len(raw) < 16:
    raise errors.DatasetError(f'{path} is {len(raw)} bytes, shorter than the 16-byte idx header; '
                              f'expected {expected}.')
  magic, count, height, width = struct.unpack('>IIII', raw[:16])
  if magic != _IDX_UBYTE_3D:
    raise errors.DatasetError(f'{path} has idx magic number {magic:#010x}, not '
                              f'{_IDX_UBYTE_3D:#010x} (unsigned bytes, 3 dimensions); expected '
                              f'{expected}.')
  if (height, width) != (28, 28):
    raise errors.DatasetError(f'{path} holds {height}x{width} images, not 28x28; expected '
                              f'{expected}.')
  if len(raw) != 16 + count * height * width:
    raise errors.DatasetError(f'{path} is {len(raw)} bytes, but its header announces {count} '
                              f'images ({16 + count * height * width} bytes): truncated or '
                              f'corrupt; expected {expected}.')
  images = np.frombuffer(raw, np.uint8, offset=16).reshape(count, height, width, 1)
  return images


def load_mat(path: pathlib.Path, variables: Sequence[str], expected: str) -> Dict[str, np.ndarray]:
  """Reads the named variables of a MATLAB file; every one must be there."""
  import scipy.io  # pylint: disable=g-import-not-at-top  (only the .mat datasets need scipy)
  try:
    contents = scipy.io.loadmat(str(path), variable_names=list(variables))
  except Exception as error:  # pylint: disable=broad-except
    # scipy raises IndexError, OSError, ValueError, MatReadError, ... on corrupt files.
    raise errors.DatasetError(f'Cannot read MATLAB file {path} ({type(error).__name__}: {error}); '
                              f'expected {expected}.') from error
  missing = [name for name in variables if name not in contents]
  if missing:
    raise errors.DatasetError(f'{path} has no variable(s) {", ".join(missing)}; expected '
                              f'{expected} with variables {", ".join(variables)}.')
  return {name: contents[name] for name in variables}


_CALTECH_KEYS = {'train': 'train_data', 'valid': 'val_data', 'test': 'test_data'}


@functools.lru_cache(maxsize=4)
def caltech_images(key: Tuple[str, int, int]) -> Mapping[str, np.ndarray]:
  """{'train', 'valid', 'test'}: uint8 [N, 28, 28, 1] in {0, 1}, upright, silhouette = 1.

  Each row of Marlin's matrices is a 28x28 image flattened column-major (MATLAB order), so the
  upright image is `row.reshape((28, 28), order='F')`. The file stores the silhouette as 0 on a
  background of 1; like the VampPrior and Sylvester-flow loaders (`1. - data`), the images are
  inverted so that the object is 1, as the strokes of MNIST and OMNIGLOT.
  """
  path = pathlib.Path(key[0])
  expected = needs('caltech101_silhouettes')
  contents = load_mat(path, list(_CALTECH_KEYS.values()), expected)
  splits = {}
  for split, variable in _CALTECH_KEYS.items():
    rows = contents[variable]
    if rows.ndim != 2 or rows.shape[1] != 784:
      raise errors.DatasetError(f'{path} variable {variable} has shape {rows.shape}, not [N, 784]; '
                                f'expected {expected}.')
    _check_binary(rows, f'{path} variable {variable}', expected)
    images = 1 - rows.astype(np.uint8).reshape((-1, 28, 28), order='F')[..., np.newaxis]
    images = np.ascontiguousarray(images)
    images.flags.writeable = False
    splits[split] = images
  return types.MappingProxyType(splits)


@functools.lru_cache(maxsize=4)
def chardata_images(key: Tuple[str, int, int]) -> Mapping[str, np.ndarray]:
  """{'train+valid', 'test'}: float32 [N, 28, 28, 1] grey levels in [0, 1] from IWAE's chardata.

  `data` and `testdata` are [784, N] and each column is a 28x28 image flattened column-major
  (MATLAB order): the IWAE code's `reshape_data` turns them upright with
  `data.T.reshape((-1, 28, 28), order='fortran')`, which is `column.reshape((28, 28), order='F')`
  for every column.
  """
  path = pathlib.Path(key[0])
  expected = f'the IWAE chardata.mat ({needs("omniglot")})'
  contents = load_mat(path, ('data', 'testdata'), expected)
  splits = {}
  for split, variable in (('train+valid', 'data'), ('test', 'testdata')):
    columns = contents[variable]
    if columns.ndim != 2 or columns.shape[0] != 784 or columns.shape[1] == 0:
      raise errors.DatasetError(f'{path} variable {variable} has shape {columns.shape}, not [784, '
                                f'N > 0]; expected {expected}.')
    if not np.issubdtype(columns.dtype, np.number) or not (
        np.isfinite(columns).all() and columns.min() >= 0 and columns.max() <= 1):
      raise errors.DatasetError(f'{path} variable {variable} holds values outside [0, 1]; expected '
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
    expected = f"Lake's OMNIGLOT zip of alphabet/character/xxxx_yy.png ({needs('omniglot')})"
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
      raise errors.DatasetError(f'Cannot read zip file {path} ({error}); expected '
                                f'{expected}.') from error
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
    raise errors.DatasetError(f'Cannot decode PNG {where} ({error}); '
                              f'{needs("omniglot")}.') from error
  if size != (_OMNIGLOT_SIZE, _OMNIGLOT_SIZE):
    raise errors.DatasetError(f'{where} is {size[0]}x{size[1]}, not '
                              f'{_OMNIGLOT_SIZE}x{_OMNIGLOT_SIZE}; {needs("omniglot")}.')
  return 255 - np.asarray(small, np.uint8)


@functools.lru_cache(maxsize=4)
def omniglot_zip_images(keys: Tuple[Tuple[str, int, int], ...]) -> np.ndarray:
  """uint8 [N, 28, 28, 1] stroke intensities of Lake's zips, sorted by alphabet/character/file."""
  paths = [pathlib.Path(key[0]) for key in keys]
  entries = _omniglot_entries(paths)
  if not entries:
    raise errors.DatasetError(f'No PNG images in {", ".join(map(str, paths))}; '
                              f'{needs("omniglot")}.')
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


def unpickle(raw: bytes, where: str, expected: str):
  try:
    return _RestrictedUnpickler(io.BytesIO(raw), encoding='bytes').load()
  except Exception as error:  # pylint: disable=broad-except
    # Malformed pickles raise UnpicklingError, EOFError, ValueError, TypeError, KeyError, ...
    raise errors.DatasetError(f'Cannot unpickle {where} ({type(error).__name__}: {error}); '
                              f'expected {expected}.') from error


CIFAR_TRAIN_BATCHES = tuple(f'data_batch_{i}' for i in range(1, 6))
CIFAR_TEST_BATCH = 'test_batch'
CIFAR_DIR = 'cifar-10-batches-py'
CIFAR_TARBALL = 'cifar-10-python.tar.gz'


def _cifar_batch_images(raw: bytes, where: str) -> np.ndarray:
  """uint8 [N, 32, 32, 3] of one pickled batch ({b'data': uint8 [N, 3072], b'labels': [N]})."""
  expected = f'a CIFAR-10 python batch: a dict with uint8 data [N, 3072] ({needs("cifar10")})'
  batch = unpickle(raw, where, expected)
  if not isinstance(batch, dict):
    raise errors.DatasetError(f'{where} holds a {type(batch).__name__}, not a dict; expected '
                              f'{expected}.')
  data = batch.get(b'data', batch.get('data'))
  if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or (
      data.shape[1] != 3072):
    description = (f'{data.dtype} {list(data.shape)}' if isinstance(data, np.ndarray)
                   else type(data).__name__)
    raise errors.DatasetError(f'{where}: data is {description}; expected {expected}.')
  labels = batch.get(b'labels', batch.get('labels'))
  if labels is not None and len(labels) != len(data):
    raise errors.DatasetError(f'{where} has {len(labels)} labels for {len(data)} images; expected '
                              f'{expected}.')
  # Each row holds the red, green then blue 32x32 planes, each row-major.
  return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


@functools.lru_cache(maxsize=16)
def cifar_file_batch(key: Tuple[str, int, int]) -> np.ndarray:
  path = pathlib.Path(key[0])
  images = _cifar_batch_images(read(path, needs('cifar10')), str(path))
  images.flags.writeable = False
  return images


@functools.lru_cache(maxsize=4)
def cifar_tarball_batches(key: Tuple[str, int, int]) -> Mapping[str, np.ndarray]:
  """{batch name: uint8 [N, 32, 32, 3]} of the batches present in cifar-10-python.tar.gz."""
  path = pathlib.Path(key[0])
  batches = {}
  try:
    with tarfile.open(path, 'r:gz') as archive:
      for member in archive.getmembers():
        name = pathlib.PurePosixPath(member.name).name
        if member.isfile() and name in CIFAR_TRAIN_BATCHES + (CIFAR_TEST_BATCH,):
          raw = archive.extractfile(member).read()
          batches[name] = _cifar_batch_images(raw, f'{path}:{member.name}')
  except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
    raise errors.DatasetError(f'Cannot read {path} (truncated or corrupt: {error}); '
                              f'{needs("cifar10")}.') from error
  for images in batches.values():
    images.flags.writeable = False
  return types.MappingProxyType(batches)
