"""Writing files so that a reader, or a kill, never sees half of one, with the usual modes.

Every file of a run directory and of an export is written to a temporary name beside its target
and renamed into place (os.replace is atomic on POSIX), after an fsync, so a crash leaves either
the old file or the new one. Temporary files and directories (mkstemp, mkdtemp) are created 0600 /
0700; they get the mode a plain open() / mkdir() would give (0644 / 0755 under the usual umask
022) before they are renamed, so results can be read by others.
"""

import json
import os
import tempfile


def apply_umask(path, directory=False):
  """Gives `path` the mode open() or mkdir() would have: mkstemp / mkdtemp make 0600 / 0700."""
  mask = os.umask(0)
  os.umask(mask)
  os.chmod(path, (0o777 if directory else 0o666) & ~mask)


def atomic_write_text(path, text):
  """Writes `text` (UTF-8) to `path` atomically: `atomic_write_bytes`."""
  atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_json(path, data):
  """Writes `data` as indented JSON with sorted keys (and a final newline) to `path` atomically."""
  atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + '\n')


def atomic_write_bytes(path, data):
  """Writes `data` to `path` through a temporary file in the same directory, fsync, os.replace.

  The file gets the usual mode (0644 under the common umask 022), not mkstemp's 0600.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  handle, temporary = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.')
  try:
    apply_umask(temporary)
    with os.fdopen(handle, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise
