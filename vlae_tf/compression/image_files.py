"""The images of bin/compress and bin/decompress: reading them, checking them against the model,
writing them back as they came.

Images: an .amat or .amat.gz file (one image per line, 0/1 separated by spaces: the static
binarized MNIST format), a .npy array ([N, H, W], [N, H, W, C] or [N, H*W*C], values 0/1, any
integer, bool or float dtype; written back with its dtype and shape), or a directory of PNG files
(black and white, read in name order; the header keeps their names and decompressing writes
them back, or 00000.png, 00001.png, ... for images that came from another kind).

8-bit models (`eight_bit=True`, a discretized logistic mixture): values are integers 0..255,
from a .npy array or a folder of grey (mode L) or RGB PNG files as the model's channels say;
.amat files are binary only.
"""

import gzip
import io
import os
import pathlib
import shutil
import tempfile

import numpy as np

from vlae_tf.data import dataset_files
from vlae_tf import errors
from vlae_tf import files

AMAT_PIXELS = 784  # The .amat format of static binarized MNIST: one 28x28 image a line.
_AMAT_EXPECTED = ('binary images for bin/compress, one a line (every line must hold 784 values '
                  '0 or 1)')


def _kind(path):
  name = os.path.basename(os.path.normpath(path)).lower()
  if name.endswith('.amat') or name.endswith('.amat.gz'):
    return 'amat'
  if name.endswith('.npy'):
    return 'npy'
  return 'png'


def model_takes(image_shape, eight_bit: bool = False) -> str:
  """'the model takes 28x28 binary images (1 channel)': the size and kind in error lines."""
  height, width, channels = image_shape
  kind = ('8-bit ' + ('grey' if channels == 1 else 'RGB' if channels == 3 else 'colour')
          if eight_bit else 'binary')
  return (f'the model takes {height}x{width} {kind} images ({channels} '
          f'channel{"s" if channels != 1 else ""})')


def _eight_bit(values, path, what='values'):
  values = np.asarray(values)
  bad = ~np.isin(values, np.arange(256))
  if np.any(bad):
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    raise errors.CodecError(f'{path}: images must be 8-bit (integers 0 to 255); found '
                            f'{values[index].item()} at index {list(index)} ({int(bad.sum())} '
                            f'{what} are not).')
  return values.astype(np.uint8)


def _binary(values, path, what='values'):
  values = np.asarray(values)
  if values.dtype == bool:
    return values.astype(np.uint8)
  bad = ~np.isin(values, (0, 1))
  if np.any(bad):
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    raise errors.CodecError(f'{path}: images must be binary (0 or 1); found {values[index].item()} '
                            f'at index {list(index)} ({int(bad.sum())} {what} are not 0 or 1).')
  return values.astype(np.uint8)


def read_images(path, image_shape, eight_bit: bool = False):
  """Reads binary images as uint8 [N, H, W, C] in {0, 1} (or 0..255 with `eight_bit`); returns
  (images, layout)."""
  image_shape = tuple(image_shape)
  takes = model_takes(image_shape, eight_bit)
  size = int(np.prod(image_shape))
  if not os.path.exists(path):
    raise errors.CodecError(f'{path}: no such file or directory.')
  kind = _kind(path)
  layout = {'kind': kind}
  if kind == 'amat':
    if eight_bit:
      raise errors.CodecError(f'{path}: .amat files hold binary images; {takes}: give a .npy '
                              'file or a folder of PNG files.')
    if size != AMAT_PIXELS:
      raise errors.CodecError(f'{path}: .amat files hold 28x28 images; '
                              f'{model_takes(image_shape)}.')
    text = dataset_files.read(pathlib.Path(path), _AMAT_EXPECTED, dataset_files.AMAT_MAX_BYTES)
    images = dataset_files.parse_amat(text, path, _AMAT_EXPECTED).reshape(-1, *image_shape)
  elif kind == 'npy':
    try:
      array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
      raise errors.CodecError(f'{path}: not a readable .npy array ({error}).') from None
    layout.update(dtype=array.dtype.str, shape=list(array.shape[1:]))
    if array.ndim < 2 or int(np.prod(array.shape[1:])) != size or (
        array.ndim > 2 and tuple(array.shape[1:3]) != image_shape[:2]):
      raise errors.CodecError(f'{path}: an array of shape {list(array.shape)}; expected [N, '
                              f'{", ".join(map(str, image_shape))}] (or [N, {image_shape[0]}, '
                              f'{image_shape[1]}] or [N, {size}]): {takes}.')
    images = array.reshape(-1, *image_shape)
  else:
    if not os.path.isdir(path):
      raise errors.CodecError(f'{path}: expected an .amat/.amat.gz file, a .npy file or a '
                              'directory of PNG files.')
    names = sorted(name for name in os.listdir(path) if name.lower().endswith('.png'))
    images = np.stack([_read_png(os.path.join(path, name), image_shape, eight_bit)
                       for name in names]
                      ) if names else np.zeros((0, *image_shape))
    layout['names'] = names  # Written back under the same names (`write_images`).
  if not len(images):
    raise errors.CodecError(f'{path} holds no images.')
  return (_eight_bit(images, path) if eight_bit else _binary(images, path)), layout


def _read_png(path, image_shape, eight_bit=False):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if eight_bit:
    return _read_8bit_png(path, image_shape)
  try:
    with Image.open(path) as image:
      if image.mode not in ('1', 'L', 'P'):
        raise errors.CodecError(f'{path}: a {image.mode} PNG; {model_takes(image_shape)} (black '
                                'and white: PNG mode 1 or L).')
      pixels = np.asarray(image.convert('L'))
  except OSError as error:
    raise errors.CodecError(f'{path}: not a readable PNG ({error}).') from None
  if pixels.shape != tuple(image_shape[:2]):
    raise errors.CodecError(f'{path}: {pixels.shape[0]}x{pixels.shape[1]} pixels; '
                            f'{model_takes(image_shape)}.')
  if np.isin(pixels, (0, 255)).all():
    pixels = pixels // 255
  return _binary(pixels, path, 'pixels').reshape(image_shape)


def _read_8bit_png(path, image_shape):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  channels = image_shape[-1]
  mode = {1: 'L', 3: 'RGB'}.get(channels)
  try:
    with Image.open(path) as image:
      if mode is None or image.mode not in ('1', 'L', 'P', 'RGB', 'RGBA', 'LA') or (
          mode == 'L' and image.mode in ('RGB', 'RGBA')):
        raise errors.CodecError(f'{path}: a {image.mode} PNG; {model_takes(image_shape, True)} '
                                f'(PNG mode {mode or "L or RGB"}).')
      pixels = np.asarray(image.convert(mode))
  except OSError as error:
    raise errors.CodecError(f'{path}: not a readable PNG ({error}).') from None
  if pixels.shape[:2] != tuple(image_shape[:2]):
    raise errors.CodecError(f'{path}: {pixels.shape[0]}x{pixels.shape[1]} pixels; '
                            f'{model_takes(image_shape, True)}.')
  return pixels.reshape(image_shape)


def check_output(path, eight_bit: bool):
  """A CodecError before decoding when `path`'s kind cannot hold the images."""
  if eight_bit and _kind(path) == 'amat':
    raise errors.CodecError(f'{path}: .amat files hold binary images and these are 8-bit: write '
                            'a .npy file or a folder of PNG files.')


def write_images(path, images, layout, eight_bit: bool = False):
  """Writes uint8 {0, 1} images [N, H, W, C] (0..255 with `eight_bit`) as the kind of `path`,
  atomically."""
  images = np.asarray(images, np.uint8)
  kind = _kind(path)
  check_output(path, eight_bit)
  if kind == 'amat':
    # "0 1 ... 0\n" per image: digits at the even places, single spaces between, a newline last.
    flat = images.reshape(len(images), -1)
    chars = np.full((len(images), 2 * flat.shape[1]), ord(' '), np.uint8)
    chars[:, 0::2] = flat + ord('0')
    chars[:, -1] = ord('\n')
    data = chars.tobytes()
    if path.lower().endswith('.gz'):
      data = gzip.compress(data, mtime=0)
    files.atomic_write_bytes(path, data)
  elif kind == 'npy':
    array = images
    if layout.get('kind') == 'npy':
      array = images.astype(np.dtype(layout['dtype'])).reshape(-1, *layout['shape'])
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    files.atomic_write_bytes(path, buffer.getvalue())
  else:
    _write_png_directory(path, images, layout.get('names') if layout.get('kind') == 'png'
                         else None, eight_bit)


def _write_png_directory(path, images, names=None, eight_bit=False):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = os.path.normpath(path)
  if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
    raise errors.CodecError(f'{path} exists and is not an empty directory: choose a new output '
                            'directory (PNGs are written as 00000.png, 00001.png, ...).')
  parent = os.path.dirname(os.path.abspath(path))
  temporary = tempfile.mkdtemp(prefix='.' + os.path.basename(path) + '.', dir=parent)
  try:
    digits = max(5, len(str(len(images) - 1)))
    if names is None or len(names) != len(images):
      names = [f'{index:0{digits}d}.png' for index in range(len(images))]
    for name, image in zip(names, images):
      if eight_bit:
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            os.path.join(temporary, name))
      else:
        Image.fromarray(image[..., 0] * 255).convert('1').save(os.path.join(temporary, name))
    files.apply_umask(temporary, directory=True)
    if os.path.isdir(path):
      os.rmdir(path)
    os.rename(temporary, path)
  except BaseException:
    shutil.rmtree(temporary, ignore_errors=True)
    raise
