"""bin/compress and bin/decompress: binary images to one file and back, through a trained VLAE.

The file (little-endian):

    header  magic b'VLAEBBAN', format version, the codec (`CODECS`: the portable fixed-point
            codec of `vlae_tf.compression.portable`, or the float codec, machine-bound), image
            shape, image count, the model's step and the SHA-256 of its averaged weights, the
            coder's settings (grid precision, batch schedule), the CRC32 of the images, the payload's length and CRC32, the input's layout
            (JSON: how to write a .npy back), and the header's own CRC32
    payload the ANS words of `vlae_tf.bitsback` (uint32)

Which codec: the portable one whenever it supports the model's architecture
(`integer_networks.supports`: gin/mnist_vlae.gin, the shipped static_mnist model); its files
decode exactly on any machine. Other architectures use the float codec of `bitsback`, whose
files decode only on a machine that computes the model's float32 numbers identically (the same
CPU type and TensorFlow build); bin/compress says so in one line.

Decompressing checks everything it can before it writes anything: the magic, version and
checksums (a damaged or truncated file), the model's step and weights (another model would decode
garbage), and after decoding the images' CRC32 and that the stream ends at its seeded initial
words (a machine whose kernels compute different floats). Outputs are written atomically.

Images: an .amat or .amat.gz file (one image per line, 0/1 separated by spaces: the static
binarized MNIST format), a .npy array ([N, H, W], [N, H, W, C] or [N, H*W*C], values 0/1, any
integer, bool or float dtype; written back with its dtype and shape), or a directory of PNG files
(black and white, read in name order; the header keeps their names and decompressing writes
them back, or 00000.png, 00001.png, ... for images that came from another kind).
"""

import gzip
import hashlib
import io
import json
import math
import os
import pathlib
import shutil
import struct
import tempfile
import time
import zlib

import numpy as np

from vlae_tf.data import dataset_files
from vlae_tf import errors
from vlae_tf import files
from vlae_tf import progress as progress_lib
from vlae_tf import signals

MAGIC = b'VLAEBBAN'
VERSION = 2
# The codecs a file can name: the float codec (bitsback.py, machine-bound) and version 1 of the
# fixed-point codec (portable.py; its arithmetic and tables are part of the format: a change to
# them is a new codec number).
FLOAT_CODEC, PORTABLE_CODEC = 1, 2
CODECS = {FLOAT_CODEC: 'float (machine-bound)', PORTABLE_CODEC: 'portable fixed-point v1'}
MACHINE_BOUND_NOTE = ('this model\'s architecture has no portable codec: the file decodes only on '
                      'a machine of the same CPU type and TensorFlow build')
# magic, version, codec, height, width, channels, count, step, weights sha256, precision, first batch,
# largest batch, growth percent, images crc32, payload words, payload crc32, layout length.
_FIXED = struct.Struct('<8sHBHHHIQ32sBHHBIIII')
_CRC = struct.Struct('<I')


AMAT_PIXELS = 784  # The .amat format of static binarized MNIST: one 28x28 image a line.
_AMAT_EXPECTED = ('binary images for bin/compress, one a line (every line must hold 784 values '
                  '0 or 1)')


def weights_digest(model) -> bytes:
  """SHA-256 of the model's weights (values and shapes, in the model's order)."""
  digest = hashlib.sha256()
  for weight in model.weights:
    value = np.asarray(weight.numpy())
    digest.update(str(value.shape).encode())
    digest.update(np.ascontiguousarray(value).tobytes())
  return digest.digest()


def images_crc(images) -> int:
  return zlib.crc32(np.ascontiguousarray(np.asarray(images, np.uint8)).tobytes())


# -- Images ----------------------------------------------------------------------------------------


def _kind(path):
  name = os.path.basename(os.path.normpath(path)).lower()
  if name.endswith('.amat') or name.endswith('.amat.gz'):
    return 'amat'
  if name.endswith('.npy'):
    return 'npy'
  return 'png'


def model_takes(image_shape) -> str:
  """'the model takes 28x28 binary images (1 channel)': the size and kind in error lines."""
  height, width, channels = image_shape
  return (f'the model takes {height}x{width} binary images ({channels} '
          f'channel{"s" if channels != 1 else ""})')


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


def read_images(path, image_shape):
  """Reads binary images as uint8 [N, H, W, C] in {0, 1}; returns (images, layout)."""
  image_shape = tuple(image_shape)
  size = int(np.prod(image_shape))
  if not os.path.exists(path):
    raise errors.CodecError(f'{path}: no such file or directory.')
  kind = _kind(path)
  layout = {'kind': kind}
  if kind == 'amat':
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
                              f'{image_shape[1]}] or [N, {size}]): {model_takes(image_shape)}.')
    images = array.reshape(-1, *image_shape)
  else:
    if not os.path.isdir(path):
      raise errors.CodecError(f'{path}: expected an .amat/.amat.gz file, a .npy file or a '
                              'directory of PNG files.')
    names = sorted(name for name in os.listdir(path) if name.lower().endswith('.png'))
    images = np.stack([_read_png(os.path.join(path, name), image_shape) for name in names]
                      ) if names else np.zeros((0, *image_shape))
    layout['names'] = names  # Written back under the same names (`write_images`).
  if not len(images):
    raise errors.CodecError(f'{path} holds no images.')
  return _binary(images, path), layout


def _read_png(path, image_shape):
  from PIL import Image  # pylint: disable=g-import-not-at-top
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


def write_images(path, images, layout):
  """Writes uint8 {0, 1} images [N, H, W, C] as the kind of `path`, atomically."""
  images = np.asarray(images, np.uint8)
  kind = _kind(path)
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
                         else None)


def _write_png_directory(path, images, names=None):
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
      Image.fromarray(image[..., 0] * 255).convert('1').save(os.path.join(temporary, name))
    files.apply_umask(temporary, directory=True)
    if os.path.isdir(path):
      os.rmdir(path)
    os.rename(temporary, path)
  except BaseException:
    shutil.rmtree(temporary, ignore_errors=True)
    raise


# -- The file ---------------------------------------------------------------------------------------


def pack(words, *, image_shape, count, step, digest, coder, crc, layout) -> bytes:
  """The file's bytes: header, its CRC32, then the payload words."""
  words = np.asarray(words, '<u4')
  layout_bytes = json.dumps(layout, sort_keys=True).encode()
  codec = PORTABLE_CODEC if getattr(coder, 'portable', False) else FLOAT_CODEC
  header = _FIXED.pack(MAGIC, VERSION, codec, *image_shape, count, step, digest, coder.precision,
                       coder.first_batch, coder.largest_batch, coder.growth_percent, crc,
                       len(words), zlib.crc32(words.tobytes()), len(layout_bytes)) + layout_bytes
  return header + _CRC.pack(zlib.crc32(header)) + words.tobytes()


def unpack(path):
  """Reads and checks a compressed file: (header dict, uint32 words); CodecError if damaged.

  Hostile files too: only the fixed header is read before the magic, the version and the file's
  size are checked, then the header's checksum before any field is trusted, and the payload is
  read only when the file holds exactly the bytes the header says (memory is bounded by the file).
  With a valid checksum, every field must still make sense (`_check_fields`).
  """
  if os.path.exists(path) and not os.path.isfile(path):  # A FIFO would block, /dev/zero not end.
    raise errors.CodecError(f'{path} is not a file of bin/compress (not a regular file).')
  try:
    stream = open(path, 'rb')
  except OSError as error:
    raise errors.CodecError(f'{path}: cannot read it ({error.strerror}).') from None
  with stream:
    size = os.fstat(stream.fileno()).st_size
    head = stream.read(_FIXED.size)
    if len(head) < len(MAGIC) or head[:len(MAGIC)] != MAGIC:
      raise errors.CodecError(f'{path} is not a file of bin/compress (no {MAGIC.decode()} header).')
    if len(head) < _FIXED.size:
      raise errors.CodecError(f'{path} is truncated: {size} bytes, shorter than its header.')
    fields = _FIXED.unpack(head)
    (_, version, codec, height, width, channels, count, step, digest, precision, first_batch,
     largest_batch, growth_percent, crc, num_words, payload_crc, layout_length) = fields
    if version != VERSION:
      raise errors.CodecError(f'{path} has format version {version}; this vlae_tf reads version '
                              f'{VERSION} (or the file is damaged).')
    if codec not in CODECS:
      raise errors.CodecError(f'{path} names codec {codec}, which this vlae_tf does not have '
                              f'(it has {", ".join(map(str, CODECS))}): decompress it with the '
                              'vlae_tf that wrote it (or the file is damaged).')
    header_end = _FIXED.size + layout_length
    if size < header_end + _CRC.size:
      raise errors.CodecError(f'{path} is truncated: {size} bytes, shorter than its header.')
    rest = stream.read(layout_length + _CRC.size)
    if _CRC.unpack_from(rest, layout_length)[0] != zlib.crc32(head + rest[:layout_length]):
      raise errors.CodecError(f'{path} is damaged: its header fails its checksum.')
    expected = header_end + _CRC.size + 4 * num_words
    if size != expected:
      raise errors.CodecError(f'{path} is truncated or has extra bytes: {size} bytes, the header '
                              f'says {expected}.')
    payload = stream.read(4 * num_words)
  if len(payload) != 4 * num_words:
    raise errors.CodecError(f'{path} changed while it was read.')
  if zlib.crc32(payload) != payload_crc:
    raise errors.CodecError(f'{path} is damaged: its payload fails its checksum.')
  header = dict(codec=codec, image_shape=(height, width, channels), count=count, step=step, digest=digest,
                precision=precision, first_batch=first_batch, largest_batch=largest_batch,
                growth_percent=growth_percent, crc=crc,
                layout=_layout(path, rest[:layout_length], (height, width, channels)))
  _check_fields(path, header, num_words)
  return header, np.frombuffer(payload, '<u4').astype(np.uint32)


# What a header may claim: bin/compress never writes more (the largest image of the paper's
# datasets is 105x105; a batch schedule of vlae_tf.bitsback; at least one payload bit per image:
# a binary image costs tens of bits under any trained model, 80 and more on MNIST).
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_IMAGES_PER_PAYLOAD_BIT = 1
_NPY_KINDS = 'biuf'  # bool, signed and unsigned integers, floats: what read_images takes.


def _layout(path, data, image_shape):
  """The header's layout (how to write a .npy back), checked: CodecError if it makes no sense."""
  try:
    layout = json.loads(data.decode('utf-8'))
  except (UnicodeDecodeError, ValueError):
    layout = None
  if not isinstance(layout, dict) or layout.get('kind') not in ('amat', 'npy', 'png'):
    raise errors.CodecError(f'{path} is damaged: its header\'s layout is not one this vlae_tf '
                            'writes.')
  if layout['kind'] == 'png' and 'names' in layout:
    names = layout['names']
    if not isinstance(names, list) or len(set(map(str, names))) != len(names) or any(
        not isinstance(name, str) or not name.lower().endswith('.png') or name.startswith('.')
        or os.path.basename(name) != name or '\\' in name or '\0' in name for name in names):
      raise errors.CodecError(f'{path} is damaged: its header\'s PNG file names are not plain, '
                              'distinct .png names.')
  if layout['kind'] == 'npy':
    try:
      dtype = np.dtype(layout['dtype'])
      shape = [int(size) for size in layout['shape']]
    except (KeyError, TypeError, ValueError):
      dtype, shape = None, None
    if (dtype is None or dtype.kind not in _NPY_KINDS or not isinstance(layout['shape'], list)
        or any(size < 1 for size in shape) or
        math.prod(shape) != math.prod(image_shape)):
      raise errors.CodecError(f'{path} is damaged: its header\'s .npy layout ({data[:80]!r}) does '
                              'not fit its images.')
  return layout


def _check_fields(path, header, num_words):
  """Fields that passed the checksum but would make decoding fail, hang or allocate without
  bound (a file made by hand): CodecError naming the field."""
  height, width, channels = header['image_shape']
  problems = []
  if min(height, width, channels) < 1 or height * width * channels > MAX_IMAGE_PIXELS:
    problems.append(f'image shape {height}x{width}x{channels}')
  if not 1 <= header['count'] <= MAX_IMAGES_PER_PAYLOAD_BIT * 32 * num_words:
    problems.append(f'{header["count"]} images in {32 * num_words} payload bits')
  if not 8 <= header['precision'] <= 16:
    problems.append(f'grid precision {header["precision"]} (8..16)')
  if not 1 <= header['first_batch'] <= header['largest_batch']:
    problems.append(f'batch schedule {header["first_batch"]}..{header["largest_batch"]}')
  names = header['layout'].get('names')
  if names is not None and len(names) != header['count']:
    problems.append(f'{len(names)} PNG file names for {header["count"]} images')
  if problems:
    raise errors.CodecError(f'{path} is damaged or was not written by bin/compress: its header '
                            f'claims {", ".join(problems)}.')


# -- compress / decompress ----------------------------------------------------------------------------


def _restore(model_dir, checkpoint):
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from vlae_tf.runs import opening
  # pylint: enable=g-import-not-at-top
  run = opening.open_run(model_dir, checkpoint)
  model, step = run.model, run.step
  # Both sides must compute the same floats (after the model is built: its initializers are
  # unseeded random ops, which determinism refuses).
  tf.config.experimental.enable_op_determinism()
  return model, step


def _progress(total, description):
  return progress_lib.ProgressBar(total, description)


def compress(model_dir, input_path, output_path, checkpoint=None, progress=True,
             coder_settings=None):
  """Compresses the images of `input_path` into `output_path`; returns a report dict.

  `coder_settings`: the batch schedule (first_batch, largest_batch, growth_percent), for tests.
  """
  model, step = _restore(model_dir, checkpoint)
  images, layout = read_images(input_path, model.image_shape)
  coder = make_coder(model, **(coder_settings or {}))
  began = time.time()
  written = []
  with signals.when_signalled(lambda signum: _stopped(signum, 'compressing', input_path,
                                                      output_path, written)):
    try:
      words, lengths, initial_bits = coder.encode(
          images, progress=_progress(len(images), 'compress') if progress else None)
    except ValueError as error:  # A latent beyond every coded window (latent_codes.Windowed).
      raise errors.CodecError(f'{input_path}: this model cannot code these images '
                              f'({error}).') from None
    except errors.CodecError as error:  # The portable codec's window (portable.py).
      raise errors.CodecError(f'{input_path}: {error}') from None
    seconds = time.time() - began
    data = pack(words, image_shape=model.image_shape, count=len(images), step=step,
                digest=weights_digest(model), coder=coder, crc=images_crc(images),
                layout=layout)
    with files.WRITING:  # A signal waits for the file (signals.py).
      files.atomic_write_bytes(output_path, data)
      written.append(output_path)
  pixels = int(np.prod(model.image_shape))
  payload_bits = 32 * len(words)
  return dict(images=len(images), bytes=len(data), step=step, seconds=seconds,
              bits_per_image=8 * len(data) / len(images),
              bits_per_pixel=8 * len(data) / len(images) / pixels,
              payload_bits_per_image=(payload_bits - initial_bits) / len(images),
              initial_bits=initial_bits, ideal_bits_per_image=lengths.net / len(images),
              codec=CODECS[PORTABLE_CODEC if getattr(coder, 'portable', False) else FLOAT_CODEC],
              portable=bool(getattr(coder, 'portable', False)))


def make_coder(model, codec=None, **settings):
  """The portable coder when it supports the model (or `codec` says so), else the float one."""
  # pylint: disable=g-import-not-at-top
  from vlae_tf.compression import bitsback
  from vlae_tf.compression import integer_networks
  from vlae_tf.compression import portable
  # pylint: enable=g-import-not-at-top
  if codec is None:
    codec = PORTABLE_CODEC if integer_networks.supports(model) else FLOAT_CODEC
  if codec == PORTABLE_CODEC:
    settings.pop('precision', None)
    return portable.PortableBitsBackCoder(model, **settings)
  return bitsback.BitsBackCoder(model, **settings)


def decompress(model_dir, input_path, output_path, checkpoint=None, progress=True):
  """Decompresses `input_path` into `output_path` (a kind chosen by its name); returns a report."""
  header, words = unpack(input_path)
  model, step = _restore(model_dir, checkpoint)
  digest = weights_digest(model)
  if tuple(model.image_shape) != header['image_shape'] or step != header['step'] or (
      digest != header['digest']):
    raise errors.CodecError(f'{input_path} was compressed with another model (step '
                            f'{header["step"]}, weights {header["digest"].hex()[:12]}, images '
                            f'{"x".join(map(str, header["image_shape"]))}); {model_dir} gives step '
                            f'{step}, weights {digest.hex()[:12]}: decompress with the model and '
                            'checkpoint that compressed it (--checkpoint).')
  coder = make_coder(model, header['codec'], precision=header['precision'],
                     first_batch=header['first_batch'], largest_batch=header['largest_batch'],
                     growth_percent=header['growth_percent'])
  if header['codec'] == FLOAT_CODEC:
    failure = (f'{input_path} decoded to images that fail their checksum although the file and '
               f'the model are intact: it was written by the float codec ({MACHINE_BOUND_NOTE}), '
               'and this machine computes the model\'s numbers differently; nothing was written.')
  else:
    failure = (f'{input_path} decoded to images that fail their checksum although the file and '
               'the model pass their checks: the portable codec\'s arithmetic differs from the '
               'one that wrote it (another vlae_tf?); nothing was written.')
  began = time.time()
  written = []
  with signals.when_signalled(lambda signum: _stopped(signum, 'decompressing', input_path,
                                                      output_path, written)):
    try:
      images, leftover = coder.decode(
          words, header['count'], progress=_progress(header['count'], 'decompress') if progress
          else None)
    except (ValueError, errors.CodecError):  # A value outside a coded window: the same, early.
      raise errors.CodecError(failure) from None
    seconds = time.time() - began
    images = images.astype(np.uint8)
    if images_crc(images) != header['crc'] or not np.array_equal(leftover,
                                                                 coder.initial_words()):
      raise errors.CodecError(failure)
    with files.WRITING:  # A signal waits for the images (signals.py).
      write_images(output_path, images, header['layout'])
      written.append(output_path)
  return dict(images=len(images), seconds=seconds, step=step, codec=CODECS[header['codec']])


def _stopped(signum, doing, input_path, output_path, written):
  """The `stopped:` line of a signal during compress or decompress (signals.py)."""
  return (f'interrupted by {signals.signal_name(signum)} while {doing} {input_path}: '
          + (f'{output_path} was written completely' if written else
             f'{output_path} was not written (nothing half-written)'))
