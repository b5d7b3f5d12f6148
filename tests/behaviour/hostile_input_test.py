"""Hostile input: files from elsewhere, damaged or made by hand, and bad requests to a
SavedModel are refused in one line, never with a traceback, a hang or memory beyond what the file
holds. A fuzz test with a fixed seed per reader: bin/decompress's header (codec.unpack), the
.amat and .mat readers, and the serving functions' input checks; then bin/decompress itself on a
few of the files (one line, exit status 1, nothing written).
"""

import gzip
import io
import json
import os
import pathlib
import random
import struct
import subprocess
import sys
import tracemalloc
import types
import zlib

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
import tensorflow_probability as tfp

import doubles

from vlae_tf import errors
from vlae_tf.compression import codec
from vlae_tf.data import dataset_files
from vlae_tf.export import saved_model as export

REPO = str(pathlib.Path(__file__).resolve().parents[2])
SEED = 26
_CODER = types.SimpleNamespace(precision=14, first_batch=1, largest_batch=500, growth_percent=5)
_FIELDS = ('magic', 'version', 'codec', 'height', 'width', 'channels', 'count', 'step', 'digest',
           'precision', 'first_batch', 'largest_batch', 'growth_percent', 'crc', 'num_words',
           'payload_crc', 'layout_length')


def _compressed_file(layout=None, count=3, words=40):
  """A well-formed file of bin/compress (random payload words: unpack checks no model)."""
  rng = np.random.default_rng(SEED)
  return codec.pack(rng.integers(0, 2**32, size=words, dtype=np.uint32), image_shape=(28, 28, 1),
                    count=count, step=7, digest=bytes(range(32)), coder=_CODER, crc=1234,
                    layout=layout or {'kind': 'npy', 'dtype': '<f4', 'shape': [28, 28]})


def _resealed(data, **changes):
  """`data` with header fields changed and the header's checksum recomputed (a valid file to
  every check but the meaning of its fields), the layout bytes replaced if given."""
  fixed = codec._FIXED  # pylint: disable=protected-access
  fields = dict(zip(_FIELDS, fixed.unpack_from(data)))
  layout = data[fixed.size:fixed.size + fields['layout_length']]
  payload = data[fixed.size + fields['layout_length'] + 4:]
  layout = changes.pop('layout', layout)
  fields['layout_length'] = len(layout)
  fields.update(changes)
  header = fixed.pack(*(fields[name] for name in _FIELDS)) + layout
  return header + struct.pack('<I', zlib.crc32(header)) + payload


def _header_cases(good, rng):
  """(name, bytes) of damaged and hand-made files, from `good`."""
  size = len(good)
  cases = [('empty', b''), ('magic only', codec.MAGIC), ('random 1 MB', rng.bytes(2**20))]
  for _ in range(40):
    cut = int(rng.integers(0, size))
    cases.append((f'truncated at {cut}', good[:cut]))
  for _ in range(120):
    bit = int(rng.integers(0, 8 * size))
    flipped = bytearray(good)
    flipped[bit // 8] ^= 1 << (bit % 8)
    cases.append((f'bit {bit} flipped', bytes(flipped)))
  for extra in (1, 3, 4, 4096):
    cases.append((f'{extra} bytes appended', good + rng.bytes(extra)))
  for _ in range(40):
    cases.append(('random bytes after the magic', codec.MAGIC + rng.bytes(int(rng.integers(
        0, 400)))))
  huge = 2**32 - 1
  for field, value in [('count', huge), ('count', 0), ('count', 40 * 32 + 1),
                       ('num_words', huge), ('num_words', 0), ('height', 65535),
                       ('height', 0), ('channels', 0), ('precision', 255), ('precision', 0),
                       ('first_batch', 0), ('largest_batch', 0), ('version', 65535),
                       ('growth_percent', 255), ('codec', 0), ('codec', 255)]:
    cases.append((f'{field} = {value} (valid checksum)', _resealed(good, **{field: value})))
  for layout in (b'', b'\xff\xfe', b'[]', b'{"kind": "exe"}', b'{"kind": "npy"}',
                 b'{"kind": "npy", "dtype": "O", "shape": [28, 28]}',
                 b'{"kind": "npy", "dtype": "<f4", "shape": [4294967296, 28]}',
                 b'{"kind": "npy", "dtype": "<f4", "shape": [-28, -28]}',
                 b'{"kind": "npy", "dtype": "V99999999", "shape": [784]}',
                 b'{"kind": "npy", "dtype": "<f4", "shape": "abc"}', b'9' * 65535):
    cases.append((f'layout {layout[:40]!r} (valid checksum)', _resealed(good, layout=layout)))
  return cases


def test_fuzzed_compressed_files_are_refused_in_one_line_with_bounded_memory(tmp_path):
  good = _compressed_file()
  path = tmp_path / 'good.vlae'
  path.write_bytes(good)
  header, words = codec.unpack(str(path))  # The untouched file reads back.
  assert header['count'] == 3 and len(words) == 40
  # A grown growth_percent is still a valid schedule: that file must read back too.
  refused, accepted = 0, []
  cases = _header_cases(good, np.random.default_rng(SEED))
  assert len(cases) >= 200
  for index, (name, data) in enumerate(cases):
    path = tmp_path / f'case{index}.vlae'
    path.write_bytes(data)
    tracemalloc.start()
    try:
      codec.unpack(str(path))
      accepted.append(name)
    except errors.CodecError as error:
      message = str(error)
      assert '\n' not in message and str(path) in message, (name, message)
      refused += 1
    finally:
      peak = tracemalloc.get_traced_memory()[1]
      tracemalloc.stop()
    assert peak <= 2 * len(data) + 2**20, (name, peak)  # Bounded by the file, not the header.
  # Only changes that a checksum cannot see and that leave a file that makes sense pass: the
  # batch growth (any percentage is a valid schedule).
  assert accepted == ['growth_percent = 255 (valid checksum)'], accepted
  assert refused == len(cases) - 1


def test_special_files_are_refused_without_blocking(tmp_path):
  fifo = tmp_path / 'pipe.vlae'
  os.mkfifo(fifo)
  for path in (str(fifo), '/dev/zero', str(tmp_path)):
    with pytest.raises(errors.CodecError, match='not a regular file'):
      codec.unpack(path)
  with pytest.raises(errors.CodecError, match='cannot read it'):
    codec.unpack(str(tmp_path / 'missing.vlae'))
  fifo_amat = tmp_path / 'pipe.amat'
  os.mkfifo(fifo_amat)
  with pytest.raises(errors.DatasetError, match='not a regular file'):
    dataset_files.read(fifo_amat, 'images')


def _amat_text(rng, rows=3):
  return b''.join(b' '.join(b'01'[v:v + 1] for v in rng.integers(0, 2, 784)) + b'\n'
                  for _ in range(rows))


def test_fuzzed_amat_files_are_refused_in_one_line(tmp_path):
  rng = np.random.default_rng(SEED)
  text = _amat_text(rng)
  good = tmp_path / 'good.amat.gz'
  good.write_bytes(gzip.compress(text))
  images = dataset_files.parse_amat(dataset_files.read(good, 'x'), str(good), 'x')
  assert images.shape == (3, 784)
  compressed = good.read_bytes()
  cases = [rng.bytes(int(rng.integers(1, 5000))) for _ in range(20)]
  cases += [compressed[:int(rng.integers(0, len(compressed)))] for _ in range(20)]
  for _ in range(40):
    flipped = bytearray(compressed)
    flipped[int(rng.integers(0, len(flipped)))] ^= 1 << int(rng.integers(0, 8))
    cases.append(bytes(flipped))
  plain = [text[:int(rng.integers(1, len(text)))] for _ in range(20)]
  for _ in range(20):
    noisy = bytearray(text)
    noisy[int(rng.integers(0, len(noisy)))] = int(rng.integers(0, 256))
    plain.append(bytes(noisy))
  outcomes = {'refused': 0, 'read': 0}
  for index, data in enumerate(cases + [gzip.compress(p) for p in plain]):
    path = tmp_path / f'case{index}.amat.gz'
    path.write_bytes(data)
    try:
      values = dataset_files.parse_amat(dataset_files.read(path, 'x'), str(path), 'x')
      assert values.shape[1] == 784 and values.max() <= 1  # A change that kept a valid file.
      outcomes['read'] += 1
    except errors.DatasetError as error:
      assert '\n' not in str(error) and str(path) in str(error), str(error)
      outcomes['refused'] += 1
  assert outcomes['refused'] >= 100, outcomes


def test_a_gzip_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
  monkeypatch.setattr(dataset_files, 'AMAT_MAX_BYTES', 2**20)
  bomb = tmp_path / 'bomb.amat.gz'
  bomb.write_bytes(gzip.compress(b'0 ' * 2**22))  # 8 MiB of text in a few KB.
  assert bomb.stat().st_size < 64 * 1024
  tracemalloc.start()
  try:
    with pytest.raises(errors.DatasetError, match=r'more than 1,048,576 bytes once gunzipped'):
      dataset_files.amat_images(dataset_files.file_key(bomb))
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < 4 * 2**20, peak


def test_fuzzed_mat_files_are_refused_in_one_line(tmp_path):
  rng = np.random.default_rng(SEED)
  good = tmp_path / 'good.mat'
  splits = {name: rng.integers(0, 2, (n, 784)).astype(np.float64)
            for name, n in (('train_data', 4), ('val_data', 2), ('test_data', 3))}
  scipy.io.savemat(str(good), splits, do_compression=True)
  assert dataset_files.caltech_images(dataset_files.file_key(good))['test'].shape == (3, 28, 28,
                                                                                      1)
  data = good.read_bytes()
  cases = [data[:int(rng.integers(0, len(data)))] for _ in range(25)]
  for _ in range(60):
    flipped = bytearray(data)
    flipped[int(rng.integers(0, len(flipped)))] ^= 1 << int(rng.integers(0, 8))
    cases.append(bytes(flipped))
  cases += [rng.bytes(int(rng.integers(1, 3000))) for _ in range(10)]
  refused = 0
  for index, case in enumerate(cases):
    path = tmp_path / f'case{index}.mat'
    path.write_bytes(case)
    try:
      dataset_files.caltech_images(dataset_files.file_key(path))
    except errors.DatasetError as error:
      assert '\n' not in str(error) and str(path) in str(error), str(error)
      refused += 1
  assert refused >= 50, refused


class _Sampling(doubles.SamplesAsTheVLAE, doubles.ConstantWeights):
  """Samples as the export draws them: z from the prior, then decoded."""

  def prior_distribution(self):
    return tfp.distributions.Sample(tfp.distributions.Normal(0.0, 1.0), self.latent_shape)

  def decode(self, z, seed):
    del seed
    return tf.zeros([tf.shape(z)[0], *self.image_shape])


def test_fuzzed_serving_inputs_are_refused_with_our_line():
  """Wrong shapes, dtypes and values to the serving functions (the checks saved in an export):
  each is an InvalidArgumentError holding our line, or TensorFlow's refusal of a dtype or rank
  that no saved function takes; never an array printed, never a hang or a huge allocation."""
  module = export.ServingModule(_Sampling(), log_prob_chunk_size=4, decode_chunk_size=2)
  good = tf.zeros([2, 2, 3, 1])
  assert module.log_prob(good, 2)['log_prob'].shape == [2]
  rng = random.Random(SEED)
  shapes = [[2, 3, 2, 1], [2, 2, 3], [2, 2, 3, 1, 1], [0, 2, 3, 1], [2, 2, 3, 2], [1]]
  values = [0.5, -1.0, 2.0, float('nan'), float('inf'), 1e30]
  refused = 0
  for _ in range(60):
    kind = rng.choice(['shape', 'value', 'dtype', 'num_samples', 'num_images'])
    try:
      if kind == 'shape':
        module.log_prob(tf.zeros(rng.choice(shapes)), 2)
      elif kind == 'value':
        bad = np.zeros([2, 2, 3, 1], np.float32)
        bad[rng.randrange(2), rng.randrange(2), rng.randrange(3), 0] = rng.choice(values)
        module.log_prob(bad, 2)
      elif kind == 'dtype':
        module.log_prob(tf.zeros([2, 2, 3, 1], rng.choice([tf.int8, tf.uint16, tf.complex64,
                                                             tf.string])), 2)
      elif kind == 'num_samples':
        module.log_prob(good, tf.constant(rng.choice([0, -5, 2**20 + 1, 2**31 - 1])))
      else:
        module.sample(tf.constant(rng.choice([-1, 2**16 + 1, 2**31 - 1])))
    except tf.errors.InvalidArgumentError as error:
      # In-process TensorFlow adds where the check was defined; a loaded SavedModel does not
      # (export_test's fresh-process test). Our line is one line, without the array.
      text = str(error)
      [line] = [line for line in text.splitlines() if 'assertion failed: [' in line]
      assert '(model: ' in line and len(line) < 400, (kind, line)
      assert 'numpy=' not in text, (kind, text)
      refused += 1
    except (TypeError, ValueError) as error:  # No saved function takes this dtype or rank.
      assert kind in ('dtype', 'shape'), (kind, error)
      assert len(str(error)) < 2000 and 'numpy=' not in str(error)
      refused += 1
    else:
      if kind == 'shape':  # A zero-image batch is a valid request.
        continue
      raise AssertionError(f'{kind}: accepted')
  assert refused >= 50, refused


def _decompress(tmp_path, name, data):
  path = tmp_path / name
  path.write_bytes(data)
  output = tmp_path / (name + '.npy')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=REPO)
  completed = subprocess.run(
      [sys.executable, os.path.join(REPO, 'bin', 'decompress'),
       f'--model_dir={os.path.join(REPO, "tests", "testdata", "run_e06a543")}',
       f'--input={path}', f'--output={output}'],
      env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  return completed, output


@pytest.mark.parametrize('name, change, message', [
    ('random.vlae', lambda good: np.random.default_rng(SEED).bytes(4096),
     'is not a file of bin/compress'),
    ('huge_count.vlae', lambda good: _resealed(good, count=2**32 - 1),
     'its header claims 4294967295 images in 1280 payload bits'),
])
def test_bin_decompress_refuses_a_hostile_file_in_one_line(tmp_path, name, change, message):
  completed, output = _decompress(tmp_path, name, change(_compressed_file()))
  assert completed.returncode == 1, completed.stderr[-2000:]
  assert 'Traceback' not in completed.stderr
  last = completed.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and message in last, completed.stderr[-2000:]
  assert not output.exists() and completed.stdout == ''
