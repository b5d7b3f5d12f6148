"""MNIST's grey levels as .npy arrays for bin/train and the 8-bit codec (docs/RESULTS.md, "8-bit
images"): the first N training images and the first M test images, uint8 [N, 28, 28, 1].

    python docs/results/compression/mnist_grey_npy.py ../shared/data/mnist OUT_DIR [N] [M]
"""

import gzip
import os
import sys

import numpy as np


def _images(path):
  with gzip.open(path) as stream:
    data = stream.read()
  return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28, 1)


def main(mnist_dir, out_dir, train_count=20000, test_count=1000):
  os.makedirs(out_dir, exist_ok=True)
  np.save(os.path.join(out_dir, 'train.npy'),
          _images(os.path.join(mnist_dir, 'train-images-idx3-ubyte.gz'))[:train_count])
  np.save(os.path.join(out_dir, f'test{test_count}.npy'),
          _images(os.path.join(mnist_dir, 't10k-images-idx3-ubyte.gz'))[:test_count])


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:5]))
