"""Image folders as people have them, for trying `bin/train --dataset=FOLDER` on real images.

    python examples/make_image_folders.py --data_dir=../shared/data --output=/tmp/own_images

writes three folders under --output (nothing is written inside the checkout):

    images_background_small1/
                  Lake's images_background_small1.zip unzipped as it is: alphabet/character/
                  xxxx_yy.png, 105x105 black and white (one class per character)
    digits/       scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels, shipped with
                  scikit-learn) as 8-bit grey PNGs, one folder per digit
    cifar_photos/ the CIFAR-10 images of --data_dir (the official pickles) as 32x32 RGB PNGs,
                  one folder per class name

These are the folders of the "Your own images" measurements in docs/RESULTS.md.
"""

import argparse
import pathlib
import zipfile

import numpy as np
from PIL import Image

from vlae_tf.data import dataset_files


def omniglot(data_dir: pathlib.Path, output: pathlib.Path) -> pathlib.Path:
  with zipfile.ZipFile(data_dir / 'omniglot' / 'images_background_small1.zip') as archive:
    archive.extractall(output)
  return output / 'images_background_small1'


def digits(output: pathlib.Path) -> pathlib.Path:
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  bunch = datasets.load_digits()
  folder = output / 'digits'
  for index, (image, label) in enumerate(zip(bunch.images, bunch.target)):
    target = folder / str(label)
    target.mkdir(parents=True, exist_ok=True)
    grey = np.rint(image * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
    Image.fromarray(grey).save(target / f'{index:04d}.png')
  return folder


def cifar_photos(data_dir: pathlib.Path, output: pathlib.Path) -> pathlib.Path:
  root = data_dir / 'cifar10' / 'cifar-10-batches-py'
  def unpickle(path):  # The package's reader: plain data and numpy arrays only.
    return dataset_files.unpickle(path.read_bytes(), str(path), 'a CIFAR-10 pickle')

  names = [name.decode() for name in unpickle(root / 'batches.meta')[b'label_names']]
  folder = output / 'cifar_photos'
  for batch in sorted(root.glob('*_batch*')):
    content = unpickle(batch)
    images = content[b'data'].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    for index, (image, label) in enumerate(zip(images, content[b'labels'])):
      target = folder / names[label]
      target.mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).save(target / f'{batch.name}_{index:05d}.png')
  return folder


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data_dir', required=True, type=pathlib.Path)
  parser.add_argument('--output', required=True, type=pathlib.Path)
  args = parser.parse_args()
  args.output.mkdir(parents=True, exist_ok=True)
  for folder in (omniglot(args.data_dir, args.output), digits(args.output),
                 cifar_photos(args.data_dir, args.output)):
    count = sum(1 for _ in folder.rglob('*.png'))
    print(f'{folder}: {count:,} PNG files')


if __name__ == '__main__':
  main()
