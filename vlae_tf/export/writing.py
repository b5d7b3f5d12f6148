"""Writing a SavedModel atomically: a reader never sees half an export, a kill leaves none behind.

`save_atomically` writes to a hidden `.<step>.tmp-<host>-<pid>-*` directory beside the target and
renames it into place when complete (an existing export is first moved aside to `.<step>.old-...`);
`remove_leftovers` deletes what killed exports left. It traces the module's signatures once, in the
save context `tf.saved_model.save` will look them up in (`_traced_for_saving`).
"""

import contextlib
import os
import re
import shutil
import socket
import tempfile

from absl import logging
import tensorflow as tf
try:  # Not public API: see _traced_for_saving.
  from tensorflow.python.saved_model import save_context  # pylint: disable=g-direct-tensorflow-import
except ImportError:  # pragma: no cover (a TensorFlow that moved it: exports trace twice).
  save_context = None

from vlae_tf import files
from vlae_tf import signals


def _owner_tag():
  """<host>-<pid>: names a temporary directory after the process that writes it."""
  return f'{socket.gethostname()}-{os.getpid()}'


_LEFTOVER = re.compile(r'\.(?P<name>.+)\.(?:tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+')


def _process_is_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Someone else's process.
    return True
  return True


def remove_leftovers(parent):
  """Deletes the temporary directories of exports killed midway (SIGKILL, power loss) in `parent`.

  They are `.<name>.tmp-<host>-<pid>-*` (a SavedModel being written) and `.<name>.old-...` (an
  export being replaced), hidden beside the exports; only those of this host whose process is
  gone are deleted, so a concurrent export of the same run is left alone.

  Returns:
    The deleted paths.
  """
  removed = []
  if not os.path.isdir(parent):
    return removed
  host = socket.gethostname()
  for entry in sorted(os.listdir(parent)):
    match = _LEFTOVER.fullmatch(entry)
    if not match or match.group('host') != host or _process_is_alive(int(match.group('pid'))):
      continue
    path = os.path.join(parent, entry)
    logging.info('Removing %s, left by an interrupted export.', path)
    shutil.rmtree(path, ignore_errors=True)
    removed.append(path)
  return removed


def _traced_for_saving(module, options):
  """`module.signatures()`, traced as `tf.saved_model.save(..., options=options)` will look them up.

  tf.saved_model.save traces every tf.function of the module again unless it was traced inside a
  save context with the same options: the options' variable policy is part of tf.function's cache
  key (tensorflow/python/eager/polymorphic_function/function_context.py, make_function_context),
  and outside a save context that policy is None. Tracing the signatures inside one makes the save
  reuse them: each function is traced once, which halves the export of the first author's decoder,
  whose samplers take most of the tracing (tests/export/saved_model_test.py counts the traces).
  """
  context = (save_context.save_context(options) if save_context is not None
             else contextlib.nullcontext())
  with context:
    return module.signatures()


def save_atomically(module, path):
  """tf.saved_model.save to a temporary directory beside `path`, then rename it into place.

  A kill at any moment leaves `path` either as it was or complete: the SavedModel is written to a
  hidden `.<name>.tmp-<host>-<pid>-*` directory, renamed into place when complete; an existing
  export is first moved aside to `.<name>.old-...`. Leftovers of killed exports are deleted by the
  next export into the same directory (`remove_leftovers`).
  """
  path = os.path.abspath(path)
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  remove_leftovers(parent)
  name = os.path.basename(path)
  temporary = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.tmp-{_owner_tag()}-')
  existed = os.path.exists(path)

  def stop(signum):  # In signals.py's watcher thread, while TensorFlow may be writing.
    shutil.rmtree(temporary, ignore_errors=True)
    return (f'interrupted by {signals.signal_name(signum)} during the export to {path}: '
            + ('the export there was left as it was' if existed else 'nothing written')
            + ' (no half-written export)')

  try:
    with signals.when_signalled(stop):
      files.apply_umask(temporary, directory=True)
      options = tf.saved_model.SaveOptions()
      tf.saved_model.save(module, temporary, signatures=_traced_for_saving(module, options),
                          options=options)
      with files.WRITING:  # The renames are never cut in half by a signal's exit.
        if os.path.exists(path):
          old = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.old-{_owner_tag()}-')
          os.rename(path, os.path.join(old, 'export'))
          os.rename(temporary, path)
          shutil.rmtree(old, ignore_errors=True)
        else:
          os.rename(temporary, path)
  except BaseException as error:
    shutil.rmtree(temporary, ignore_errors=True)
    disk_full = _disk_full(error, path)
    if disk_full is not None:
      raise disk_full from None
    raise
  return path


def _disk_full(error, path):
  """An `errors.DiskFullError` naming the export `path` when writing it failed for lack of space
  or a file-size limit (an OSError, or TensorFlow's error saying so in words), else None."""
  found = files.disk_full_from(error)
  if found is None:
    return None
  reason = files.disk_full_text(str(error)) or error
  return files.disk_full_error(path, None, reason, 'nothing was renamed into place: the exports '
                               'before are intact')
