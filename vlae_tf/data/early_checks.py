"""One's own images checked before TensorFlow loads: a bad folder or array is one line in a moment.

bin/train --dataset=FOLDER or FILE.npy/.npz calls `check_source` from its preflight
(cli/preflight.py), before TensorFlow's start-up of many seconds. It reads what is cheap: the
folder's listing (user_arrays.folder_entries), every image file's header and chunk checksums through
Pillow (`Image.verify`: about 0.1 ms for a 105x105 PNG), and an array's dtype, shape and values
(user_arrays.array_parts). What it finds is the same `DatasetError` line that reading the images
later would give: an empty folder, a file that is not a readable image, mixed sizes without
--image_size, an array of the wrong rank or dtype, a bad --image_size. What needs the decoder
(transparency, channel counts of odd files) is still checked when the images are read. Neither
this module nor user_images.py and user_arrays.py import TensorFlow (they do so inside the
functions that decode, resize or read tensorflow-datasets).
"""

import os
from typing import Optional

from vlae_tf.data import user_arrays
from vlae_tf.data import user_images


def _header(path):
  """(height, width) of an image file from its header, its data checked; DatasetError if it is
  not a readable image."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as image:
      size = image.size
      image.verify()  # PNG: every chunk's CRC; others: the header and structure.
  except Exception as error:  # pylint: disable=broad-except  (Pillow raises many kinds)
    raise user_arrays.not_an_image(path, error) from None
  return size[1], size[0]


def check_folder(root, image_size=None):
  """Raises the DatasetError that reading folder `root` would raise for its listing or a file."""
  entries, _, _, _ = user_arrays.folder_entries(root, user_images.IMAGE_EXTENSIONS,
                                                 user_images.SPLIT_FOLDERS)
  first = None
  for relative, _ in entries:
    shape = _header(os.path.join(root, relative))
    if first is None:
      first = (relative, shape)
    elif image_size is None and shape != first[1]:
      raise user_arrays.mixed_sizes_error(root, relative, shape, first)


def check_source(source, image_size: Optional[str] = None):
  """Raises the DatasetError of a bad --dataset (a folder or a .npy/.npz file) or --image_size.

  Args:
    source: bin/train's --dataset: a folder, an array file (tfds:NAME and catalogue names are
      not checked here).
    image_size: bin/train's --image_size text ('28x28'), or None.
  """
  size = None if image_size is None else user_images.parse_image_size(image_size)
  path = os.path.abspath(os.path.expanduser(source))
  if os.path.isdir(path):
    check_folder(path, size)
  elif os.path.isfile(path):
    user_arrays.array_parts(path, size)
