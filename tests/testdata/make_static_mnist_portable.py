"""How tests/testdata/static_mnist_portable.vlae was made: 24 real static-MNIST test images,
compressed once with the shipped pretrained model by the portable codec (codec 2, fixed-point
v1). tests/compression/portable_test.py decompresses it on whatever CPU runs the tests and checks
the images against the test split: a file must decode exactly on any machine.

    PYTHONPATH=. python tests/testdata/make_static_mnist_portable.py ../shared/data
"""

import os
import sys
import tempfile

import numpy as np

from vlae_tf.compression import codec
from vlae_tf.data import datasets
from vlae_tf.pretrained import catalogue

COUNT = 24
SETTINGS = dict(first_batch=8, largest_batch=8, growth_percent=0)  # Three batches: fast to decode.
HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, 'static_mnist_portable.vlae')


def indices(total, count=COUNT):
  """floor((i + 1/2) total / count): evenly spread over the split (sorted by class)."""
  return [int((2 * i + 1) * total // (2 * count)) for i in range(count)]


def images(data_dir):
  test = np.stack([x.numpy() for x in datasets.load('static_mnist', 'test', data_dir=data_dir)])
  return test[indices(len(test))].astype(np.uint8)


def main(data_dir):
  with tempfile.TemporaryDirectory() as folder:
    source = os.path.join(folder, 'images.npy')
    np.save(source, images(data_dir))
    report = codec.compress(catalogue.run_directory('static_mnist'), source, OUTPUT,
                            progress=False, coder_settings=SETTINGS)
  print(report)


if __name__ == '__main__':
  main(sys.argv[1])
