"""Real images written as one's own data for the --dataset tests: the shared MNIST test images, read
with the package's own readers, saved as PNG folders (flat and one subfolder per class) and as a
.npy array, and a 40x32 variant (each digit padded with 6 blank rows and 2 blank columns a side).
"""

import pathlib

import numpy as np
from PIL import Image

from vlae_tf.data import dataset_files
from vlae_tf.data import labels as labels_lib


def mnist_test_images(shared_data, count):
  """(uint8 grey [count, 28, 28], int64 labels [count]): the first MNIST test images."""
  grey = dataset_files.idx_images(dataset_files.file_key(
      pathlib.Path(shared_data) / 'mnist' / 't10k-images-idx3-ubyte.gz'))[:count, ..., 0]
  labels = labels_lib._mnist_split_labels(pathlib.Path(shared_data), 'test')[:count]  # pylint: disable=protected-access
  return np.array(grey), np.array(labels)


def black_and_white(grey):
  """0/255 images: MNIST's grey levels thresholded at 128."""
  return np.where(grey >= 128, 255, 0).astype(np.uint8)


def pad_to_40x32(images):
  return np.pad(images, [(0, 0), (6, 6), (2, 2)])


def write_pngs(folder, images, labels=None):
  """images [N, H, W] uint8 as folder/00000.png ..., or folder/<label>/00000.png with labels."""
  folder = pathlib.Path(folder)
  for index, image in enumerate(images):
    target = folder if labels is None else folder / str(labels[index])
    target.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(target / f'{index:05d}.png')
  return str(folder)
