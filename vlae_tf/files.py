"""Writing files so that a reader, a kill or a full disk never leaves half of one, with the usual
modes.

Every file of a run directory and of an export is written to a temporary name beside its target
and renamed into place (os.replace is atomic on POSIX), after an fsync, so a crash leaves either
the old file or the new one. Temporary files and directories (mkstemp, mkdtemp) are created 0600 /
0700; they get the mode a plain open() / mkdir() would give (0644 / 0755 under the usual umask
022) before they are renamed, so results can be read by others.

A full disk, a quota or a file-size limit (ENOSPC, EDQUOT, EFBIG) during a write is an
`errors.DiskFullError`: one line naming the file, the bytes to write and the bytes free, after the
temporary file is removed (`disk_full_from` also reads TensorFlow's errors, which name the file
and the reason in words, for checkpoints, summaries and exports).
"""

import errno
import json
import os
import re
import tempfile
import threading

from vlae_tf import errors

# Held while a file is written and renamed into place: a signal's exit at once (signals.py) waits
# for it, so that no temporary file is left behind and a rename is never cut in half.
WRITING = threading.RLock()

# What a full disk (or a file-size limit: RLIMIT_FSIZE, a quota) raises from write() or close().
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def disk_full_text(message):
  """An OSError for the errno that a message (TensorFlow's, which has no errno) names in words:
  'No space left on device', 'File too large', 'Disk quota exceeded'; else None."""
  for number in DISK_FULL_ERRNOS:
    if os.strerror(number) in message:
      return OSError(number, os.strerror(number))
  return None


_FAILED_PATH = re.compile(r'(/[^;\s]+); (?:' + '|'.join(
    os.strerror(number) for number in DISK_FULL_ERRNOS) + ')')
_CHECKPOINT_TEMPORARY = re.compile(r'^(.*)/(ckpt)-\d+_temp/')


def disk_full_from(error):
  """The `errors.DiskFullError` of an exception raised by a write that failed for lack of space
  or a file-size limit (an OSError with its errno, or TensorFlow's error, which names the file
  and the reason in words: '<path>; File too large'), else None.

  For a checkpoint (TensorFlow writes it to ckpt-N_temp/ first), the size to write is about the
  size of the run's newest checkpoint.
  """
  if isinstance(error, errors.DiskFullError):
    return error
  if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
    return disk_full_error(error.filename or '(unknown file)', None, error)
  reason = disk_full_text(str(error))
  if reason is None:
    return None
  match = _FAILED_PATH.search(str(error))
  path = match.group(1) if match else '(a file TensorFlow was writing)'
  checkpoint = _CHECKPOINT_TEMPORARY.match(path)
  if checkpoint:
    return disk_full_error(
        path[:path.index('_temp/')], _newest_checkpoint_bytes(checkpoint.group(1)), reason,
        'the checkpoints before it are intact (a rerun resumes from the newest)', about=True)
  if '.tfevents.' in os.path.basename(path):
    return disk_full_error(path, None, reason, 'the events written before are intact')
  if re.search(r'/\.[^/]*\.tmp-[^/]*/', path):  # an export being written (export/saved_model.py)
    return disk_full_error(path.split('.tmp-')[0].rstrip('.'), None, reason,
                           'nothing was renamed into place: the exports before are intact')
  return disk_full_error(path, None, reason)


def _newest_checkpoint_bytes(directory):
  """The bytes of the newest ckpt-N.* files in `directory` (None without any)."""
  sizes = {}
  for name in os.listdir(directory):
    match = re.match(r'ckpt-(\d+)\.(index|data-\d+-of-\d+)$', name)
    if match:
      step = int(match.group(1))
      sizes[step] = sizes.get(step, 0) + os.path.getsize(os.path.join(directory, name))
  return sizes[max(sizes)] if sizes else None


def free_bytes(path):
  """Bytes free for this user on the filesystem of `path` (its nearest existing parent)."""
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  stat = os.statvfs(path)
  return stat.f_bavail * stat.f_frsize


def disk_full_error(path, needed, error,
                    kept='the previous version of the file, if any, is intact', about=False):
  """The one-line `errors.DiskFullError` of a write of `needed` bytes (None: unknown; `about`: an
  estimate) to `path` that failed with `error` (an OSError); `kept` says what is left intact."""
  reason = os.strerror(error.errno) if getattr(error, 'errno', None) else str(error)
  try:
    free = f'{free_bytes(path):,} bytes free there'
  except OSError:
    free = 'free space unknown'
  size = '' if needed is None else f'{"about " if about else ""}{needed:,} bytes to write, '
  return errors.DiskFullError(
      f'Cannot write {path}: {reason} (disk full or a file-size limit: {size}{free}); {kept}. '
      'Free some space (or raise the limit: ulimit -f) and run the same command again.',
      path=path, needed=needed)


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
  A full disk (or a file-size limit) raises `errors.DiskFullError` naming `path` and the size,
  after removing the temporary file: the previous file is left as it was.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with WRITING:
    handle, temporary = tempfile.mkstemp(dir=directory,
                                         prefix='.' + os.path.basename(path) + '.')
    try:
      apply_umask(temporary)
      with os.fdopen(handle, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      os.replace(temporary, path)
    except BaseException as error:
      if os.path.exists(temporary):
        os.remove(temporary)
      if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        raise disk_full_error(path, len(data), error) from None
      raise


def append_line(path, line):
  """Appends `line` (text ending with a newline) to `path` in one write, then fsync.

  A reader sees whole lines. On a full disk, `errors.DiskFullError`, and the bytes of a partial
  write are cut off again (the file keeps its previous lines only).
  """
  data = line.encode('utf-8')
  with WRITING:
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
      size = os.fstat(handle).st_size
      try:
        done = 0
        while done < len(data):  # A short write on a nearly full disk, then the error.
          done += os.write(handle, data[done:])
        os.fsync(handle)
      except OSError as error:
        if error.errno not in DISK_FULL_ERRNOS:
          raise
        try:
          os.ftruncate(handle, size)
        except OSError:
          pass
        raise disk_full_error(path, len(data), error,
                              'its lines before are intact (the partial line was cut off)'
                              ) from None
    finally:
      os.close(handle)
