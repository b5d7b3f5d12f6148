"""Unit tests of dataset_files.py: the readers of untrusted files, called directly.

The readers are exercised through `datasets.load` on real and malformed files in datasets_test.py;
these cases pin the contract of the pieces: one DatasetError naming the file and what was expected.
"""

import gzip
import pickle

import numpy as np
import pytest

from vlae_tf import errors
from vlae_tf.data import dataset_files


def test_read_gunzips_and_names_a_corrupt_file(tmp_path):
  plain = tmp_path / 'a.amat'
  plain.write_bytes(b'0 1\n')
  packed = tmp_path / 'a.amat.gz'
  packed.write_bytes(gzip.compress(b'0 1\n'))
  assert dataset_files.read(plain, 'x') == dataset_files.read(packed, 'x') == b'0 1\n'
  packed.write_bytes(gzip.compress(b'0 1\n')[:-5])
  with pytest.raises(errors.DatasetError, match=r'a\.amat\.gz is not a valid gzip file.*expected '
                     'the rows'):
    dataset_files.read(packed, 'the rows')


def test_unpickler_builds_arrays_and_refuses_code():
  data = {b'data': np.arange(6, dtype=np.uint8).reshape(2, 3)}
  loaded = dataset_files.unpickle(pickle.dumps(data), 'batch', 'a CIFAR batch')
  np.testing.assert_array_equal(loaded[b'data'], data[b'data'])

  class Evil:
    def __reduce__(self):
      return (print, ('pwned',))

  with pytest.raises(errors.DatasetError, match='batch'):
    dataset_files.unpickle(pickle.dumps(Evil()), 'batch', 'a CIFAR batch')


def test_binary_values_are_checked():
  check_binary = dataset_files._check_binary  # pylint: disable=protected-access
  check_binary(np.array([0, 1, 1]), 'f', 'binary pixels')
  with pytest.raises(errors.DatasetError, match=r'f holds values \[2\], not only 0 and 1'):
    check_binary(np.array([0, 2]), 'f', 'binary pixels')


def test_find_and_require_look_in_the_subfolder(tmp_path):
  (tmp_path / 'mnist').mkdir()
  (tmp_path / 'mnist' / 'b.gz').write_bytes(b'')
  assert dataset_files.find(tmp_path, 'mnist', ('a', 'b.gz')) == tmp_path / 'mnist' / 'b.gz'
  with pytest.raises(errors.DatasetError, match='None of c found in .*; dynamic_mnist needs'):
    dataset_files.require(tmp_path, 'mnist', ('c',), 'dynamic_mnist')
