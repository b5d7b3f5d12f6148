"""Tests of portable.py: exact round trips that cost the fixed-point model's -ELBO, a coder that
notices one changed table entry, files compressed in one process decompressed in others under
other thread counts, oneDNN and XLA settings, and a committed file written once with the shipped
model (tests/testdata/static_mnist_portable.vlae) that must decode exactly on any CPU."""

import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import tf_keras as keras

import testdata_files
from vlae_tf import errors
from vlae_tf import gin_parsing
from vlae_tf.compression import codec
from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import portable
from vlae_tf.data import datasets
from vlae_tf.models import vlae as model_lib
from vlae_tf.pretrained import catalogue

REPO = os.path.dirname(os.path.dirname(testdata_files.TESTDATA))


def _fixture_maker():
  return testdata_files.maker('make_static_mnist_portable')


@pytest.fixture(scope='module')
def images(shared_data):
  test = datasets.load('static_mnist', 'test', data_dir=str(shared_data))
  return np.stack([x.numpy() for x in test.take(9)])


@pytest.fixture(scope='module')
def model(images):
  gin.clear_config()
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'])
  keras.utils.set_random_seed(0)
  model = model_lib.make_model()
  model.initialize(images[:4])
  return model


def test_round_trip_is_exact_and_costs_the_ideal_code_length(model, images):
  coder = portable.PortableBitsBackCoder(model, first_batch=2, largest_batch=4, growth_percent=50)
  words, lengths, initial_bits = coder.encode(images)
  decoded, leftover = coder.decode(words, len(images))
  np.testing.assert_array_equal(decoded, images)
  np.testing.assert_array_equal(leftover, coder.initial_words())
  spent = 32 * len(words) - initial_bits
  assert 0.85 * lengths.net < spent < 1.02 * lengths.net + 64, (spent, lengths)
  again, _, _ = portable.PortableBitsBackCoder(model, 2, 4, 50).encode(images)
  np.testing.assert_array_equal(again, words)


def test_one_changed_table_entry_is_noticed(model, images, monkeypatch):
  """A decoder whose arithmetic differs by one unit in one place does not give the images back:
  what a non-portable coder would do on another machine, caught by the checks."""
  coder = portable.PortableBitsBackCoder(model, first_batch=2, largest_batch=4, growth_percent=50)
  words, _, _ = coder.encode(images)
  table = fxp.elu_table().copy()
  table[ONE_HALF] += 1  # elu(-1/2), one unit of 2^-12 off: an entry the networks reach.
  monkeypatch.setattr(fxp, 'elu_table', lambda: table)
  other = portable.PortableBitsBackCoder(model, first_batch=2, largest_batch=4, growth_percent=50)
  try:
    decoded, leftover = other.decode(words, len(images))
  except (ValueError, errors.CodecError):
    return
  assert not (np.array_equal(decoded, images) and
              np.array_equal(leftover, other.initial_words()))


ONE_HALF = fxp.ONE // 2


def test_the_committed_file_decodes_exactly_on_this_cpu(shared_data, tmp_path):
  """static_mnist_portable.vlae was written once (make_static_mnist_portable.py); whatever CPU
  runs this test must give back the same 24 test images bit for bit."""
  output = str(tmp_path / 'images.npy')
  report = codec.decompress(catalogue.run_directory('static_mnist'),
                            os.path.join(testdata_files.TESTDATA, 'static_mnist_portable.vlae'),
                            output, progress=False)
  assert report['codec'] == codec.CODECS[codec.PORTABLE_CODEC]
  np.testing.assert_array_equal(np.load(output), _fixture_maker().images(str(shared_data)))


_CHILD = r'''
import json, os, sys
import tensorflow as tf
threads = int(os.environ['VLAE_TEST_THREADS'])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
tf.config.optimizer.set_jit('autoclustering' if os.environ['VLAE_TEST_XLA'] == '1' else False)
from vlae_tf.compression import codec
from vlae_tf.pretrained import catalogue
mode, source, target = sys.argv[1:4]
run = catalogue.run_directory('static_mnist')
if mode == 'compress':
  report = codec.compress(run, source, target, progress=False,
                          coder_settings=dict(first_batch=4, largest_batch=4, growth_percent=0))
else:
  report = codec.decompress(run, source, target, progress=False)
print(json.dumps(dict(codec=report['codec'], jit=str(tf.config.optimizer.get_jit()))))
'''

# (threads for TensorFlow, OpenMP and OpenBLAS; TF_ENABLE_ONEDNN_OPTS; XLA auto-clustering).
COMPRESS_SETTING = (2, '1', '0')
DECOMPRESS_SETTINGS = [(1, '1', '0'), (2, '0', '0'), (1, '0', '1')]


def _child(mode, source, target, setting):
  threads, onednn, xla = setting
  env = dict(os.environ, VLAE_TEST_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
             OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
             TF_ENABLE_ONEDNN_OPTS=onednn, VLAE_TEST_XLA=xla,
             TF_XLA_FLAGS='--tf_xla_cpu_global_jit' if xla == '1' else '',
             PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))
  completed = subprocess.run([sys.executable, '-c', _CHILD, mode, source, target], env=env,
                             capture_output=True, text=True, timeout=600, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_file_decodes_under_other_threads_onednn_and_xla(shared_data, tmp_path):
  source = str(tmp_path / 'images.npy')
  np.save(source, _fixture_maker().images(str(shared_data))[:8])
  compressed = str(tmp_path / 'images.vlae')
  assert _child('compress', source, compressed, COMPRESS_SETTING)['codec'] == (
      codec.CODECS[codec.PORTABLE_CODEC])
  for index, setting in enumerate(DECOMPRESS_SETTINGS):
    target = str(tmp_path / f'back_{index}.npy')
    result = _child('decompress', compressed, target, setting)
    assert result['jit'] == ('autoclustering' if setting[2] == '1' else ''), result
    np.testing.assert_array_equal(np.load(target), np.load(source), err_msg=str(setting))
