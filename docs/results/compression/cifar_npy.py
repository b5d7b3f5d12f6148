"""The CIFAR-10 images as .npy arrays for bin/train and the 8-bit codec (docs/RESULTS.md, "8-bit
images"): the first N images of data_batch_1 and the first M of test_batch, uint8 [N, 32, 32, 3],
read from the official Python pickle layout.

    python docs/results/compression/cifar_npy.py ../shared/data/cifar10/cifar-10-batches-py OUT_DIR [N] [M]
"""

import os
import pickle
import sys

import numpy as np


def _images(path):
  with open(path, 'rb') as stream:
    batch = pickle.load(stream, encoding='bytes')
  # Channel-major rows of 3,072 bytes: 1,024 red, then green, then blue, each row by row.
  return np.asarray(batch[b'data'], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def main(batches_dir, out_dir, train_count=4000, test_count=1000):
  os.makedirs(out_dir, exist_ok=True)
  np.save(os.path.join(out_dir, 'train.npy'),
          _images(os.path.join(batches_dir, 'data_batch_1'))[:train_count])
  np.save(os.path.join(out_dir, f'test{test_count}.npy'),
          _images(os.path.join(batches_dir, 'test_batch'))[:test_count])


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:5]))
