"""Tests of codec.py (bin/compress, bin/decompress): files, round trips through every image kind,
and one-line errors that write nothing, on a tiny static MNIST VLAE run (gin/testing/tiny.gin);
and the same for 8-bit images (real CIFAR-10 test images) on a tiny
gin/cifar10_resnet_vlae.gin run (codec 3)."""

import gzip
import os
import struct
import zlib

import gin
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tf_keras as keras

import doubles

from vlae_tf import errors
from vlae_tf.cli import compress_binaries
from vlae_tf.compression import codec
from vlae_tf.compression import image_files
from vlae_tf.data import datasets
from vlae_tf import files
from vlae_tf import gin_parsing
from vlae_tf.models import vlae as model_lib
from vlae_tf.runs import run_config

STEP = 7


def _make_run(model_dir, images, seed, gin_files=('mnist_vlae.gin',)):
  gin.clear_config()
  gin_parsing.parse_gin(list(gin_files) + ['testing/tiny.gin'])
  files.atomic_write_text(str(model_dir / run_config.CONFIG_FILE), gin.config_str())
  keras.utils.set_random_seed(seed)
  model = model_lib.make_model()
  model.initialize(images[:4])
  step = tf.Variable(STEP, dtype=tf.int64)
  checkpoint = tf.train.Checkpoint(step=step, averaged_model=model)
  tf.train.CheckpointManager(checkpoint, str(model_dir), 1, step_counter=step).save(STEP)
  return model


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('static_mnist', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(7)]).astype(np.uint8)


@pytest.fixture(scope='module')
def run(images, tmp_path_factory):
  model_dir = tmp_path_factory.mktemp('run')
  return model_dir, _make_run(model_dir, images, seed=0)


@pytest.fixture(scope='module')
def compressed(run, images, tmp_path_factory):
  """(path of an .amat.gz of the images, path of their compressed file, report)."""
  model_dir, _ = run
  folder = tmp_path_factory.mktemp('data')
  amat = str(folder / 'images.amat.gz')
  image_files.write_images(amat, images, {'kind': 'amat'})
  output = str(folder / 'images.vlae')
  report = codec.compress(str(model_dir), amat, output, progress=False)
  return amat, output, report


def test_the_header_names_the_model_and_the_images(run, images, compressed):
  _, model = run
  _, output, report = compressed
  header, words = codec.unpack(output)
  assert header['codec'] == codec.PORTABLE_CODEC and report['portable']
  assert header['count'] == len(images) == report['images']
  assert header['image_shape'] == (28, 28, 1)
  assert header['step'] == STEP == report['step']
  assert header['digest'] == codec.weights_digest(model)
  assert header['crc'] == codec.images_crc(images)
  assert os.path.getsize(output) == report['bytes'] > 4 * len(words)
  with open(output, 'rb') as stream:
    assert stream.read(8) == codec.MAGIC


def test_decompress_gives_back_the_file_byte_for_byte(run, compressed, tmp_path):
  model_dir, _ = run
  amat, output, _ = compressed
  target = str(tmp_path / 'back.amat.gz')
  report = codec.decompress(str(model_dir), output, target, progress=False)
  assert report['images'] == 7
  with gzip.open(target, 'rb') as back, gzip.open(amat, 'rb') as original:
    assert back.read() == original.read()  # The static binarized MNIST text format, exactly.


@pytest.mark.parametrize('name', ['x.amat', 'x.amat.gz', 'x.npy', 'pngs'])
def test_every_image_kind_reads_back_what_was_written(images, tmp_path, name):
  path = str(tmp_path / name)
  image_files.write_images(path, images, {'kind': 'any'})
  restored, layout = image_files.read_images(path, (28, 28, 1))
  np.testing.assert_array_equal(restored, images)
  assert restored.dtype == np.uint8 and layout['kind'] == image_files._kind(path)  # pylint: disable=protected-access
  if name == 'pngs':
    assert sorted(os.listdir(path))[:2] == ['00000.png', '00001.png']


def test_an_npy_array_comes_back_with_its_dtype_and_shape(images, tmp_path):
  array = images.reshape(len(images), 784).astype(np.float32)
  np.save(tmp_path / 'in.npy', array)
  restored, layout = image_files.read_images(str(tmp_path / 'in.npy'), (28, 28, 1))
  image_files.write_images(str(tmp_path / 'out.npy'), restored, layout)
  back = np.load(tmp_path / 'out.npy')
  assert back.dtype == np.float32 and back.shape == (len(images), 784)
  np.testing.assert_array_equal(back, array)


def _damaged(compressed, tmp_path, change):
  _, output, _ = compressed
  with open(output, 'rb') as stream:
    data = bytearray(stream.read())
  data = change(data)
  path = tmp_path / 'damaged.vlae'
  path.write_bytes(bytes(data))
  return str(path)


def _flip(index):
  def change(data):
    data[index] ^= 0x10
    return data
  return change


@pytest.mark.parametrize('change, message', [
    (_flip(-5), 'is damaged: its payload fails its checksum'),
    (_flip(20), 'is damaged: its header fails its checksum'),
    (lambda data: data[:-8], 'is truncated or has extra bytes'),
    (lambda data: data[:30], 'is truncated'),
    (lambda data: b'PK' + data[2:], 'is not a file of bin/compress'),
])
def test_a_damaged_file_is_one_line_and_writes_nothing(run, compressed, tmp_path, change,
                                                        message):
  model_dir, _ = run
  damaged = _damaged(compressed, tmp_path, change)
  target = tmp_path / 'out.npy'
  error = doubles.one_line_error(
      lambda: compress_binaries.run_decompress(str(model_dir), damaged, str(target)))
  assert message in error
  assert not target.exists() and os.listdir(tmp_path) == ['damaged.vlae']


def test_another_model_is_refused_before_decoding(images, compressed, tmp_path):
  other_dir = tmp_path / 'other'
  other_dir.mkdir()
  _make_run(other_dir, images, seed=1)
  _, output, _ = compressed
  target = tmp_path / 'out.npy'
  error = doubles.one_line_error(
      lambda: compress_binaries.run_decompress(str(other_dir), output, str(target)))
  assert 'was compressed with another model' in error and '--checkpoint' in error
  assert not target.exists()


@pytest.mark.parametrize('write, message', [
    (lambda path, images: np.save(path / 'x.npy', images * 3), 'images must be binary'),
    (lambda path, images: np.save(path / 'x.npy', images[:0]), 'holds no images'),
    (lambda path, images: np.save(path / 'x.npy', images[:, :27]), 'expected [N, 28, 28, 1]'),
    (lambda path, images: (path / 'x.amat').write_text('0 1 1\n'), 'every line must hold 784'),
])
def test_bad_images_are_one_line_and_write_nothing(run, images, tmp_path, write, message):
  model_dir, _ = run
  write(tmp_path, images)
  source = str(tmp_path / sorted(os.listdir(tmp_path))[0])
  target = tmp_path / 'c.vlae'
  error = doubles.one_line_error(
      lambda: compress_binaries.run_compress(str(model_dir), source, str(target)))
  assert message in error
  assert not target.exists()


def test_an_existing_png_directory_is_left_alone(images, tmp_path):
  image_files.write_images(str(tmp_path / 'pngs'), images, {'kind': 'png'})
  with pytest.raises(errors.CodecError, match='exists and is not an empty directory'):
    image_files.write_images(str(tmp_path / 'pngs'), images[:2], {'kind': 'png'})
  assert len(os.listdir(tmp_path / 'pngs')) == len(images)


def test_a_png_folder_comes_back_under_its_file_names(run, images, tmp_path):
  model_dir, _ = run
  folder = tmp_path / 'digits'
  folder.mkdir()
  names = [f'digit_{index}_{"abcdefg"[index]}.png' for index in range(len(images))]
  for name, image in zip(names, images):
    Image.fromarray(image[..., 0] * 255).save(folder / name)
  codec.compress(str(model_dir), str(folder), str(tmp_path / 'c.vlae'), progress=False)
  codec.decompress(str(model_dir), str(tmp_path / 'c.vlae'), str(tmp_path / 'back'),
                   progress=False)
  assert sorted(os.listdir(tmp_path / 'back')) == sorted(names)
  for name, image in zip(names, images):
    back = np.asarray(Image.open(tmp_path / 'back' / name).convert('L')) // 255
    np.testing.assert_array_equal(back, image[..., 0])


@pytest.mark.parametrize('save, message', [
    (lambda path, image: Image.fromarray(image[:20, :20, 0] * 255).save(path),
     '20x20 pixels; the model takes 28x28 binary images (1 channel).'),
    (lambda path, image: Image.fromarray(np.repeat(image * 255, 3, -1)).save(path),
     'a RGB PNG; the model takes 28x28 binary images (1 channel)'),
    (lambda path, image: Image.fromarray(image[..., 0] * 100).save(path),
     'images must be binary (0 or 1); found 100 at index'),
])
def test_a_png_of_another_size_or_kind_is_one_line_naming_the_models(run, images, tmp_path,
                                                                     save, message):
  model_dir, _ = run
  folder = tmp_path / 'in'
  folder.mkdir()
  save(folder / 'x.png', images[0])
  error = doubles.one_line_error(lambda: compress_binaries.run_compress(
      str(model_dir), str(folder), str(tmp_path / 'c.vlae')))
  assert message in error and 'np.' not in error and 'array(' not in error, error
  assert not (tmp_path / 'c.vlae').exists()


def test_another_architecture_uses_the_float_codec_and_says_its_files_are_machine_bound(
    images, tmp_path):
  model_dir = tmp_path / 'gaussian_prior'
  model_dir.mkdir()
  _make_run(model_dir, images, seed=0, gin_files=('mnist_vlae.gin', 'models/gaussian_prior.gin'))
  source, output = str(tmp_path / 'x.npy'), str(tmp_path / 'x.vlae')
  np.save(source, images)
  report = codec.compress(str(model_dir), source, output, progress=False)
  assert not report['portable'] and report['codec'] == codec.CODECS[codec.FLOAT_CODEC]
  assert codec.unpack(output)[0]['codec'] == codec.FLOAT_CODEC
  assert 'decodes only on a machine of the same CPU type' in compress_binaries.codec_note()
  back = codec.decompress(str(model_dir), output, str(tmp_path / 'back.npy'), progress=False)
  assert back['codec'] == codec.CODECS[codec.FLOAT_CODEC]
  np.testing.assert_array_equal(np.load(tmp_path / 'back.npy'), images)


def test_a_version_1_file_of_the_float_codec_still_decodes(images, tmp_path):
  """Files written before the format named its codec (version 1, commit 277b32d and earlier) are
  float-codec files: they decode as before (on a machine of the type that wrote them)."""
  model_dir = tmp_path / 'run'
  model_dir.mkdir()
  model = _make_run(model_dir, images, seed=0)
  coder = codec.make_coder(model, codec.FLOAT_CODEC)
  words, _, _ = coder.encode(images)
  words = np.asarray(words, '<u4')
  layout = b'{"kind": "amat"}'
  header = codec._FIXED_V1.pack(  # pylint: disable=protected-access
      codec.MAGIC, 1, 28, 28, 1, len(images), STEP, codec.weights_digest(model), coder.precision,
      coder.first_batch, coder.largest_batch, coder.growth_percent, codec.images_crc(images),
      len(words), zlib.crc32(words.tobytes()), len(layout)) + layout
  path = tmp_path / 'old.vlae'
  path.write_bytes(header + struct.pack('<I', zlib.crc32(header)) + words.tobytes())
  report = codec.decompress(str(model_dir), str(path), str(tmp_path / 'back.npy'), progress=False)
  assert report['codec'] == codec.CODECS[codec.FLOAT_CODEC]
  np.testing.assert_array_equal(np.load(tmp_path / 'back.npy'), images.astype(np.uint8))


# -- 8-bit models -----------------------------------------------------------------------------


@pytest.fixture(scope='module')
def cifar_images(shared_data):
  test = datasets.load('cifar10', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(4)]).astype(np.uint8)


@pytest.fixture(scope='module')
def cifar_run(cifar_images, tmp_path_factory):
  model_dir = tmp_path_factory.mktemp('cifar_run')
  gin.clear_config()
  gin_parsing.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'])
  files.atomic_write_text(str(model_dir / run_config.CONFIG_FILE), gin.config_str())
  keras.utils.set_random_seed(0)
  model = model_lib.make_model()
  model.initialize(cifar_images.astype(np.float32))
  step = tf.Variable(STEP, dtype=tf.int64)
  checkpoint = tf.train.Checkpoint(step=step, averaged_model=model)
  tf.train.CheckpointManager(checkpoint, str(model_dir), 1, step_counter=step).save(STEP)
  return str(model_dir)


def test_8bit_png_folder_round_trips_with_its_names(cifar_run, cifar_images, tmp_path):
  folder = tmp_path / 'photos'
  folder.mkdir()
  names = [f'photo_{letter}.png' for letter in 'dcba']
  for name, image in zip(names, cifar_images):
    Image.fromarray(image).save(folder / name)
  report = codec.compress(cifar_run, str(folder), str(tmp_path / 'photos.vlae'), progress=False)
  assert report['codec'] == codec.CODECS[codec.PORTABLE_8BIT_CODEC] and report['portable']
  header, _ = codec.unpack(str(tmp_path / 'photos.vlae'))
  assert header['codec'] == codec.PORTABLE_8BIT_CODEC and header['image_shape'] == (32, 32, 3)
  back = tmp_path / 'back'
  codec.decompress(cifar_run, str(tmp_path / 'photos.vlae'), str(back), progress=False)
  assert sorted(os.listdir(back)) == sorted(names)
  for name in names:
    np.testing.assert_array_equal(np.asarray(Image.open(back / name)),
                                  np.asarray(Image.open(folder / name)))


def test_8bit_npy_round_trips_with_its_dtype_and_shape(cifar_run, cifar_images, tmp_path):
  source = tmp_path / 'cifar_images.npy'
  np.save(source, cifar_images.astype(np.float32))
  codec.compress(cifar_run, str(source), str(tmp_path / 'cifar_images.vlae'), progress=False)
  codec.decompress(cifar_run, str(tmp_path / 'cifar_images.vlae'), str(tmp_path / 'back.npy'),
                   progress=False)
  back = np.load(tmp_path / 'back.npy')
  assert back.dtype == np.float32
  np.testing.assert_array_equal(back, cifar_images)


def test_8bit_bad_inputs_are_one_line_naming_the_model(cifar_run, cifar_images, tmp_path):
  source = tmp_path / 'wrong.npy'
  np.save(source, cifar_images[:, :28, :28])
  with pytest.raises(errors.CodecError, match=r'the model takes 32x32 8-bit RGB images \(3 '):
    codec.compress(cifar_run, str(source), str(tmp_path / 'wrong.vlae'), progress=False)
  halves = tmp_path / 'halves.npy'
  np.save(halves, cifar_images.astype(np.float32) + 0.5)
  with pytest.raises(errors.CodecError, match=r'images must be 8-bit \(integers 0 to 255\)'):
    codec.compress(cifar_run, str(halves), str(tmp_path / 'halves.vlae'), progress=False)
  good = tmp_path / 'good.npy'
  np.save(good, cifar_images[:1])
  codec.compress(cifar_run, str(good), str(tmp_path / 'good.vlae'), progress=False)
  with pytest.raises(errors.CodecError, match=r'\.amat files hold binary images'):
    codec.decompress(cifar_run, str(tmp_path / 'good.vlae'), str(tmp_path / 'back.amat'),
                     progress=False)
  assert not os.path.exists(tmp_path / 'back.amat') and not os.path.exists(tmp_path / 'wrong.vlae')


def test_first_batch_is_recorded_cut_to_the_images_and_decodes(run, compressed, tmp_path):
  model_dir, _ = run
  amat, default_output, default_report = compressed
  output = str(tmp_path / 'first3.vlae')
  report = compress_binaries.run_compress(str(model_dir), amat, output, first_batch=3)
  header, _ = codec.unpack(output)
  assert header['first_batch'] == report['first_batch'] == 3
  assert codec.unpack(default_output)[0]['first_batch'] == default_report['first_batch'] == 1
  # Three images' latents start the chain: more one-off initial bits than one image's.
  assert report['initial_bits'] > default_report['initial_bits']
  target = str(tmp_path / 'back.amat.gz')
  codec.decompress(str(model_dir), output, target, progress=False)
  with gzip.open(target, 'rb') as back, gzip.open(amat, 'rb') as original:
    assert back.read() == original.read()
  # More than the 7 images: cut to 7.
  report = compress_binaries.run_compress(str(model_dir), amat, output, first_batch=50)
  assert codec.unpack(output)[0]['first_batch'] == report['first_batch'] == 7
