"""Where the shipped gin configs are, and how a `--gin_file` name is found.

The configs live in the checkout's gin/ folder (base.gin, datasets/, models/, testing/ and one file
per experiment). setup.py installs that folder as the package data `vlae_tf/gin_configs/`, so a
non-editable install finds them too. A name is looked up, in order, as a path (absolute or
relative to the working directory), then under the configs folder, with or without a leading
`gin/`: `--gin_file=mnist_vlae.gin`, `--gin_file=gin/mnist_vlae.gin` and
`--gin_file=/path/to/my.gin` all work from any directory.

This module imports nothing heavy: the binaries use it before TensorFlow is loaded.
"""

import os
from typing import List, Optional

BASE_GIN = 'base.gin'
INSTALLED_FOLDER = 'gin_configs'  # <site-packages>/vlae_tf/gin_configs, see setup.py


def search_path() -> str:
  """The folder holding base.gin: the checkout's gin/ if there is one, else the package data."""
  package = os.path.dirname(os.path.abspath(__file__))
  checkout = os.path.join(os.path.dirname(package), 'gin')
  installed = os.path.join(package, INSTALLED_FOLDER)
  for folder in (checkout, installed):
    if os.path.isfile(os.path.join(folder, BASE_GIN)):
      return folder
  raise FileNotFoundError(f'The gin configs are missing: no {BASE_GIN} in {checkout} or '
                          f'{installed}; reinstall vlae_tf (pip install .).')


def resolve(name: str) -> Optional[str]:
  """The file `name` refers to (see the module docstring), or None."""
  if os.path.isfile(name):
    return name
  folder = search_path()
  candidates = [name]
  if name.startswith('gin' + os.sep) or name.startswith('gin/'):
    candidates.append(name[len('gin/'):])
  for candidate in candidates:
    path = os.path.join(folder, candidate)
    if os.path.isfile(path):
      return path
  return None


def names() -> List[str]:
  """Every shipped .gin file, relative to the configs folder (`models/vlae_binary.gin`)."""
  folder = search_path()
  found = []
  for root, _, files in os.walk(folder):
    found += [os.path.relpath(os.path.join(root, name), folder)
              for name in files if name.endswith('.gin')]
  return sorted(found)
