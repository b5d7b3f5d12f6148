"""Tests of portable_8bit.py: exact round trips of real 8-bit images (CIFAR-10 test images)
through a tiny gin/cifar10_resnet_vlae.gin model (weights moved off their init), the code
length against what the coder spends, and words written in one process decoded in others under
other thread counts, oneDNN and XLA settings."""

import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import testdata_files
from vlae_tf import errors
from vlae_tf import gin_parsing
from vlae_tf.compression import codec
from vlae_tf.compression import portable_8bit
from vlae_tf.data import datasets
from vlae_tf.models import vlae as model_lib


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('cifar10', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(5)]).astype(np.uint8)


def _model(images, seed=0):
  gin.clear_config()
  gin_parsing.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'])
  keras.utils.set_random_seed(seed)
  model = model_lib.make_model()
  model.initialize(images[:4].astype(np.float32))
  rng = np.random.default_rng(seed + 1)  # Trained weights are not at their init.
  for weight in model.weights:
    if weight.dtype == tf.float32:
      weight.assign(weight + rng.normal(size=weight.shape).astype(np.float32) * 0.05)
  return model


def test_round_trip_is_exact_and_costs_the_ideal_code_length(images):
  coder = portable_8bit.PortableMixtureCoder(_model(images), first_batch=2, largest_batch=4,
                                             growth_percent=50)
  words, lengths, initial_bits = coder.encode(images)
  decoded, leftover = coder.decode(words, len(images))
  np.testing.assert_array_equal(decoded, images)
  np.testing.assert_array_equal(leftover, coder.initial_words())  # The chain ends where it began.
  spent = 32 * len(words) - initial_bits
  assert 0.98 * lengths.net < spent < 1.02 * lengths.net + 64, (spent, lengths)
  assert lengths.pixels > 0 and lengths.latent_pushed > 0 and lengths.latent_popped > 0
  again, _, _ = coder.encode(images)
  np.testing.assert_array_equal(again, words)


def test_binary_models_are_refused(images):
  del images
  gin.clear_config()
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'])
  with pytest.raises(errors.UnsupportedModelError, match='8-bit portable codec'):
    portable_8bit.PortableMixtureCoder(model_lib.make_model())


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CHILD = r'''
import os, sys
import numpy as np
import tensorflow as tf
threads = int(os.environ['VLAE_TEST_THREADS'])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
tf.config.optimizer.set_jit('autoclustering' if os.environ['VLAE_TEST_XLA'] == '1' else False)
from vlae_tf import gin_parsing
from vlae_tf.compression import portable_8bit
from vlae_tf.models import vlae as model_lib
mode, folder = sys.argv[1:3]
saved = np.load(os.path.join(folder, 'weights.npz'))
images = np.load(os.path.join(folder, 'images.npy'))
gin_parsing.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'])
model = model_lib.make_model()
model.initialize(images[:4].astype(np.float32))  # Builds; the weights are the parent's.
model.set_weights([saved[f'w{i}'] for i in range(len(saved.files))])
coder = portable_8bit.PortableMixtureCoder(model, first_batch=2, largest_batch=2)
if mode == 'compress':
  words, _, _ = coder.encode(images)
  np.save(os.path.join(folder, 'words.npy'), words)
else:
  decoded, leftover = coder.decode(np.load(os.path.join(folder, 'words.npy')), len(images))
  np.save(os.path.join(folder, mode + '.npy'), decoded)
  assert np.array_equal(leftover, coder.initial_words())
print('jit=' + str(tf.config.optimizer.get_jit()))
'''

# (threads for TensorFlow, OpenMP and OpenBLAS; TF_ENABLE_ONEDNN_OPTS; XLA auto-clustering).
COMPRESS_SETTING = (2, '1', '0')
DECOMPRESS_SETTINGS = [(1, '0', '1'), (2, '0', '0')]


def _child(mode, folder, setting):
  threads, onednn, xla = setting
  env = dict(os.environ, VLAE_TEST_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
             OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
             TF_ENABLE_ONEDNN_OPTS=onednn, VLAE_TEST_XLA=xla,
             TF_XLA_FLAGS='--tf_xla_cpu_global_jit' if xla == '1' else '',
             PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))
  completed = subprocess.run([sys.executable, '-c', _CHILD, mode, folder], env=env,
                             capture_output=True, text=True, timeout=600, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  return completed.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_words_decode_under_other_threads_onednn_and_xla(images, tmp_path):
  model = _model(images)
  np.savez(tmp_path / 'weights.npz', **{f'w{i}': w for i, w in enumerate(model.get_weights())})
  np.save(tmp_path / 'images.npy', images[:4])
  _child('compress', str(tmp_path), COMPRESS_SETTING)
  for index, setting in enumerate(DECOMPRESS_SETTINGS):
    jit = _child(f'back_{index}', str(tmp_path), setting)
    assert jit == 'jit=' + ('autoclustering' if setting[2] == '1' else ''), (jit, setting)
    np.testing.assert_array_equal(np.load(tmp_path / f'back_{index}.npy'), images[:4],
                                  err_msg=str(setting))


def test_the_committed_8bit_file_decodes_exactly_on_this_cpu(shared_data, tmp_path):
  """cifar10_tiny_portable.vlae was written once (make_cifar10_tiny_portable.py) with the slim
  run beside it; whatever CPU runs this test must give back the same 4 CIFAR-10 test images."""
  maker = testdata_files.maker('make_cifar10_tiny_portable')
  output = str(tmp_path / 'images.npy')
  report = codec.decompress(maker.RUN, maker.OUTPUT, output, progress=False)
  assert report['codec'] == codec.CODECS[codec.PORTABLE_8BIT_CODEC]
  np.testing.assert_array_equal(np.load(output), maker.images(str(shared_data)))
