"""The packaged models: their names, their provenance, and a verified run directory for each.

A packaged model is a slim run directory in vlae_tf/pretrained/<name>/ (packaging.py makes it):

    config.gin             the config the run was trained with, as bin/train wrote it
    data_source.json       {"dataset": ..., "data_dir": null}: readers take --data_dir,
                           $VLAE_DATA_DIR or tensorflow-datasets, as for any run
    checkpoint, ckpt-N.*   the Polyak-averaged weights and the step, nothing else (no optimizer
                           slots, no raw weights: a quarter of a training checkpoint)
    provenance.json        how it was made (commit, command, data, steps, its NLL) and the sha256
                           of every other file

The binaries that read a run write into its directory (eval_<split>.json, samples/, export/,
inspect/), and an installed package may be read-only. So `run_directory(name)` checks the packaged
files against provenance.json and copies them once into a cache folder,

    <cache>/pretrained/<name>-<first 12 hex digits of provenance.json's sha256>

(a new version of a model gets a new folder), where <cache> is $VLAE_TF_CACHE, else
$XDG_CACHE_HOME/vlae_tf, else ~/.cache/vlae_tf. The copy is checked again on every use (sha256 of
~13 MB: tens of milliseconds); the files of a damaged copy are replaced from the package (the
binaries' outputs beside them are kept), a damaged package is a one-line `PretrainedError` naming
the file.

Imports nothing heavy: the binaries resolve --pretrained before TensorFlow loads.
"""

import hashlib
import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional

from vlae_tf import errors
from vlae_tf import files as files_lib


PROVENANCE_FILE = 'provenance.json'
ENV_CACHE = 'VLAE_TF_CACHE'
PACKAGE_ROOT = os.path.dirname(os.path.abspath(__file__))


def names(root: Optional[str] = None) -> List[str]:
  """The packaged models' names, sorted: the folders of `root` that hold a provenance.json (not
  the hidden folders that packaging.py writes before it renames one into place)."""
  root = root or PACKAGE_ROOT
  if not os.path.isdir(root):
    return []
  return sorted(entry for entry in os.listdir(root) if not entry.startswith('.')
                and os.path.isfile(os.path.join(root, entry, PROVENANCE_FILE)))


def names_text(root: Optional[str] = None) -> str:
  """The packaged models' names for a message: 'static_mnist', or 'none in this install'."""
  return ', '.join(names(root)) or 'none in this install'


def _folder(name: str, root: Optional[str]) -> str:
  """The packaged folder of `name`; PretrainedError listing the names for an unknown one."""
  if name not in names(root):
    raise errors.PretrainedError(f'Unknown pretrained model {name!r}; the pretrained models: '
                                 f'{names_text(root)}.')
  return os.path.join(root or PACKAGE_ROOT, name)


def provenance(name: str, root: Optional[str] = None) -> Dict:
  """The parsed provenance.json of packaged model `name`."""
  path = os.path.join(_folder(name, root), PROVENANCE_FILE)
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError) as error:
    raise errors.PretrainedError(f'The packaged model {name} is damaged: cannot read {path} '
                                 f'({error}); reinstall vlae_tf (pip install '
                                 '--force-reinstall).') from None
  if not isinstance(record, dict) or not isinstance(record.get('files'), dict):
    raise errors.PretrainedError(f'The packaged model {name} is damaged: {path} lists no files; '
                                 'reinstall vlae_tf (pip install --force-reinstall).')
  return record


def sha256(path: str) -> str:
  """The hex SHA-256 of the file at `path`, read in 1 MB blocks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def damage(folder: str, files: Dict[str, str]) -> Optional[str]:
  """Why `folder` does not hold `files` ({name: sha256}) as listed, in words; None if it does."""
  for file_name, expected in sorted(files.items()):
    path = os.path.join(folder, file_name)
    if not os.path.isfile(path):
      return f'{file_name} is missing'
    try:
      if sha256(path) != expected:
        return f'{file_name} does not match the sha256 in {PROVENANCE_FILE}'
    except OSError as error:
      return f'{file_name} cannot be read ({error.strerror or error})'
  return None


def _copy_into_place(source: str, target: str):
  """Copies a file through a temporary name beside `target` and os.replace: a process reading
  `target` meanwhile sees the old file or the new one, never half of one."""
  handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target),
                                       prefix='.' + os.path.basename(target) + '.')
  os.close(handle)
  try:
    shutil.copyfile(source, temporary)
    files_lib.apply_umask(temporary)
    os.replace(temporary, target)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def cache_root() -> str:
  """$VLAE_TF_CACHE, else $XDG_CACHE_HOME/vlae_tf, else ~/.cache/vlae_tf."""
  if os.environ.get(ENV_CACHE):
    return os.path.abspath(os.path.expanduser(os.environ[ENV_CACHE]))
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'vlae_tf')


def run_directory(name: str, root: Optional[str] = None, cache: Optional[str] = None) -> str:
  """A verified, writable run directory of packaged model `name` (the module docstring).

  Args:
    name: a packaged model's name (`names()`).
    root: where the packaged models are (default: this package).
    cache: the cache folder (default: `cache_root()`).

  Returns:
    The path of the cached copy, usable wherever a bin/train run directory is.

  Raises:
    PretrainedError: an unknown name (the message lists the known ones), or a packaged file that
      is missing or fails its checksum.
  """
  folder = _folder(name, root)
  record = provenance(name, root)
  files = record['files']
  digest = sha256(os.path.join(folder, PROVENANCE_FILE))[:12]
  target = os.path.join(cache or cache_root(), 'pretrained', f'{name}-{digest}')
  if os.path.isdir(target) and damage(target, files) is None:
    return target
  problem = damage(folder, files)
  if problem:
    raise errors.PretrainedError(f'The packaged model {name} is damaged: {problem} ({folder}); '
                                 'reinstall vlae_tf (pip install --force-reinstall).')
  parent = os.path.dirname(target)
  try:
    if os.path.isdir(target):
      # A damaged copy: its listed files are replaced one by one, atomically, so that a process
      # reading it meanwhile is not disturbed and the outputs of the binaries there are kept.
      for file_name in [*files, PROVENANCE_FILE]:
        _copy_into_place(os.path.join(folder, file_name), os.path.join(target, file_name))
    else:
      os.makedirs(parent, exist_ok=True)
      staging = tempfile.mkdtemp(dir=parent, prefix=f'.{name}-')
      try:
        files_lib.apply_umask(staging, directory=True)
        for file_name in [*files, PROVENANCE_FILE]:
          shutil.copyfile(os.path.join(folder, file_name), os.path.join(staging, file_name))
          files_lib.apply_umask(os.path.join(staging, file_name))
        try:
          os.rename(staging, target)
        except OSError:
          if not os.path.isdir(target):  # Not another process's copy, put there first.
            raise
      finally:
        shutil.rmtree(staging, ignore_errors=True)
  except OSError as error:
    raise errors.PretrainedError(f'Cannot copy the pretrained model {name} into the cache '
                                 f'{parent}: {error.strerror or error}; set ${ENV_CACHE} to a '
                                 'writable folder.') from None
  problem = damage(target, files)
  if problem:
    raise errors.PretrainedError(f'The cached copy of the pretrained model {name} is damaged: '
                                 f'{problem} ({target}); remove that folder and run again.')
  return target
