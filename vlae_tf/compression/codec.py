"""bin/compress and bin/decompress: binary or 8-bit images to one file and back, through a
trained VLAE.

The file (little-endian):

    header  magic b'VLAEBBAN', format version, the codec (`CODECS`: the portable fixed-point
            codec of `vlae_tf.compression.portable`, or the float codec, machine-bound), image
            shape, image count, the model's step and the SHA-256 of its averaged weights, the
            coder's settings (grid precision, batch schedule), the CRC32 of the images, the payload's length and CRC32, the input's layout
            (JSON: how to write a .npy back), and the header's own CRC32
    payload the ANS words of `vlae_tf.bitsback` (uint32)

Version 1 files (written before the header named its codec) are read as float-codec files.

Which codec: the portable one whenever it supports the model's architecture
(`integer_networks.supports`: gin/mnist_vlae.gin, the shipped static_mnist model;
`portable_8bit.supports`: gin/models/cifar10_vlae_resnet.gin, the 8-bit family); its files
decode exactly on any machine. Other architectures use the float codec of `bitsback`, whose
files decode only on a machine that computes the model's float32 numbers identically (the same
CPU type and TensorFlow build); bin/compress says so in one line.

Decompressing checks everything it can before it writes anything: the magic, version and
checksums (a damaged or truncated file), the model's step and weights (another model would decode
garbage), and after decoding the images' CRC32 and that the stream ends at its seeded initial
words (a machine whose kernels compute different floats). Outputs are written atomically.

Images: the kinds of `image_files` (.amat/.amat.gz, .npy, a folder of PNG files).
"""

import hashlib
import json
import math
import os
import struct
import time
import zlib

import numpy as np

from vlae_tf import errors
from vlae_tf import files
from vlae_tf import progress as progress_lib
from vlae_tf import signals
from vlae_tf.compression import image_files

MAGIC = b'VLAEBBAN'
VERSION = 2
# The codecs a file can name: the float codec (bitsback.py, machine-bound) and version 1 of the
# fixed-point codec (portable.py; its arithmetic and tables are part of the format: a change to
# them is a new codec number).
# Codec 3 is the 8-bit fixed-point codec (portable_8bit.py, with mixture_masses.py's tables).
FLOAT_CODEC, PORTABLE_CODEC, PORTABLE_8BIT_CODEC = 1, 2, 3
CODECS = {FLOAT_CODEC: 'float (machine-bound)', PORTABLE_CODEC: 'portable fixed-point v1',
          PORTABLE_8BIT_CODEC: 'portable fixed-point 8-bit v1'}
MACHINE_BOUND_NOTE = ('this model\'s architecture has no portable codec: the file decodes only on '
                      'a machine of the same CPU type and TensorFlow build')
# magic, version, codec, height, width, channels, count, step, weights sha256, precision, first batch,
# largest batch, growth percent, images crc32, payload words, payload crc32, layout length.
_FIXED = struct.Struct('<8sHBHHHIQ32sBHHBIIII')
# Version 1 (read, never written): no codec field (the float codec), a 16-bit layout length.
_FIXED_V1 = struct.Struct('<8sHHHHIQ32sBHHBIIIH')
_CRC = struct.Struct('<I')


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


# -- The file ---------------------------------------------------------------------------------------


def codec_of(coder) -> int:
  """The codec number a coder writes (`CODECS`)."""
  if getattr(coder, 'eight_bit', False):
    return PORTABLE_8BIT_CODEC
  return PORTABLE_CODEC if getattr(coder, 'portable', False) else FLOAT_CODEC


def eight_bit(model) -> bool:
  """Whether the model's pixels are 8-bit (a discretized logistic mixture), not binary."""
  return type(model.likelihood).__name__ == 'DiscretizedLogisticMixture'


def pack(words, *, image_shape, count, step, digest, coder, crc, layout) -> bytes:
  """The file's bytes: header, its CRC32, then the payload words."""
  words = np.asarray(words, '<u4')
  layout_bytes = json.dumps(layout, sort_keys=True).encode()
  codec = codec_of(coder)
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
    head = stream.read(max(_FIXED.size, _FIXED_V1.size))
    if len(head) < len(MAGIC) or head[:len(MAGIC)] != MAGIC:
      raise errors.CodecError(f'{path} is not a file of bin/compress (no {MAGIC.decode()} header).')
    if len(head) < len(MAGIC) + 2:
      raise errors.CodecError(f'{path} is truncated: {size} bytes, shorter than its header.')
    version = struct.unpack_from('<H', head, len(MAGIC))[0]
    if version not in (1, VERSION):
      raise errors.CodecError(f'{path} has format version {version}; this vlae_tf reads versions '
                              f'1 and {VERSION} (or the file is damaged).')
    fixed = _FIXED if version == VERSION else _FIXED_V1
    if len(head) < fixed.size:
      raise errors.CodecError(f'{path} is truncated: {size} bytes, shorter than its header.')
    head = head[:fixed.size]
    stream.seek(fixed.size)
    fields = list(fixed.unpack(head))
    if version == 1:  # Version 1 files were all written by the float codec.
      fields.insert(2, FLOAT_CODEC)
    (_, version, codec, height, width, channels, count, step, digest, precision, first_batch,
     largest_batch, growth_percent, crc, num_words, payload_crc, layout_length) = fields
    if codec not in CODECS:
      raise errors.CodecError(f'{path} names codec {codec}, which this vlae_tf does not have '
                              f'(it has {", ".join(map(str, CODECS))}): decompress it with the '
                              'vlae_tf that wrote it (or the file is damaged).')
    header_end = fixed.size + layout_length
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

  `coder_settings`: the batch schedule (first_batch, largest_batch, growth_percent); a first
  batch larger than the images is cut to their number (its initial bits would be spent for none).
  """
  model, step = _restore(model_dir, checkpoint)
  images, layout = image_files.read_images(input_path, model.image_shape, eight_bit(model))
  coder_settings = dict(coder_settings or {})
  if 'first_batch' in coder_settings:
    coder_settings['first_batch'] = max(1, min(int(coder_settings['first_batch']), len(images)))
  coder = make_coder(model, **coder_settings)
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
              codec=CODECS[codec_of(coder)], first_batch=coder.first_batch,
              portable=bool(getattr(coder, 'portable', False)))


def make_coder(model, codec=None, **settings):
  """The portable coder when it supports the model (or `codec` says so), else the float one."""
  # pylint: disable=g-import-not-at-top
  from vlae_tf.compression import bitsback
  from vlae_tf.compression import integer_networks
  from vlae_tf.compression import portable
  from vlae_tf.compression import portable_8bit
  # pylint: enable=g-import-not-at-top
  if codec is None:
    codec = (PORTABLE_CODEC if integer_networks.supports(model) else
             PORTABLE_8BIT_CODEC if portable_8bit.supports(model) else FLOAT_CODEC)
  if codec == PORTABLE_CODEC:
    settings.pop('precision', None)
    return portable.PortableBitsBackCoder(model, **settings)
  if codec == PORTABLE_8BIT_CODEC:
    settings.pop('precision', None)
    return portable_8bit.PortableMixtureCoder(model, **settings)
  return bitsback.BitsBackCoder(model, **settings)


def decompress(model_dir, input_path, output_path, checkpoint=None, progress=True):
  """Decompresses `input_path` into `output_path` (a kind chosen by its name); returns a report."""
  header, words = unpack(input_path)
  image_files.check_output(output_path, header['codec'] == PORTABLE_8BIT_CODEC)
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
      image_files.write_images(output_path, images, header['layout'],
                               header['codec'] == PORTABLE_8BIT_CODEC)
      written.append(output_path)
  return dict(images=len(images), seconds=seconds, step=step, codec=CODECS[header['codec']])


def _stopped(signum, doing, input_path, output_path, written):
  """The `stopped:` line of a signal during compress or decompress (signals.py)."""
  return (f'interrupted by {signals.signal_name(signum)} while {doing} {input_path}: '
          + (f'{output_path} was written completely' if written else
             f'{output_path} was not written (nothing half-written)'))
