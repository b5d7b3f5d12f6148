"""A quiet TensorFlow start-up for the binaries: TensorFlow's C++ start-up chatter (its INFO lines,
the failed CUDA probe on machines without a GPU) and a few INFO records that say nothing
actionable are hidden unless `--verbosity=1` or more asks for everything.
"""

import logging as python_logging
import os
import re
import sys
import tempfile

from absl import flags
from absl import logging as absl_logging


# What TensorFlow's C++ side prints while it loads and probes for GPUs, on every CPU-only machine:
# its INFO lines are written before its logging is initialized (so TF_CPP_MIN_LOG_LEVEL does not
# reach them), and the CUDA probe of the GPU-enabled wheel fails at ERROR level when there is no
# driver. None of it is actionable here; `--verbosity=1` shows it all.
_STARTUP_NOISE = re.compile(
    r'All log messages before absl::InitializeLog|oneDNN custom operations are on|'
    r'Could not find cuda drivers|failed call to cuInit|cpu_feature_guard\.cc|'
    r'To enable the following instructions|rebuild TensorFlow with the appropriate compiler')


def _verbose():
  return flags.FLAGS.is_parsed() and flags.FLAGS['verbosity'].value >= 1


class _DropQuietRecords(python_logging.Filter):
  """Drops records that say nothing actionable to a user: gin's file lookups
  ("system_path_file_exists:base.gin"), TensorFlow's "Sharding callback duration" at every
  checkpoint, its renaming of the SavedModel's internal input names ("contains input name(s)
  ... with unsupported characters"), the temporary paths of a SavedModel being written ("Assets
  written to", "Writing fingerprint to": bin/export prints the final path), the strategy's
  "Using MirroredStrategy with devices" (every binary said it, even before a one-line error) and
  tf.function's retracing warnings (shapes that differ by design, e.g. the last batch)."""

  _QUIET = (('resource_reader.py', ''), ('functional_saver.py', 'Sharding callback duration'),
            ('signature_serialization.py', 'unsupported characters'),
            ('', 'Assets written to:'), ('', 'Writing fingerprint to'),
            ('mirrored_strategy.py', 'Using MirroredStrategy with devices'))
  _QUIET_WARNINGS = ('triggered tf.function retracing',)

  def filter(self, record):
    if record.levelno >= python_logging.WARNING:
      return not any(text in str(record.msg) for text in self._QUIET_WARNINGS)
    return not any(record.pathname.endswith(path) and text in str(record.msg)
                   for path, text in self._QUIET)


class _PlainOnStderr(absl_logging.PythonFormatter):
  """absl's format, without its prefix on stderr at default verbosity: INFO lines are the
  message, WARNING and ERROR lines start with `warning:` / `error:`. A log file (--log_dir) and
  --showprefixforinfo keep the prefix (`start_tensorflow` installs this only below
  --verbosity=1)."""

  def __init__(self, handler):
    super().__init__()
    self._handler = handler

  def format(self, record):
    if self._handler.stream is not sys.stderr or flags.FLAGS['showprefixforinfo'].value:
      return super().format(record)
    message = python_logging.Formatter.format(self, record)
    if record.levelno >= python_logging.ERROR:
      return 'error: ' + message
    if record.levelno >= python_logging.WARNING:
      return 'warning: ' + message
    return message


def start_tensorflow():
  """Imports TensorFlow and lets it find its devices, hiding its start-up chatter.

  Its C++ start-up lines go to file descriptor 2 directly, so they are captured there (in a
  temporary file, while TensorFlow loads and lists its devices) and every line that is not known
  noise is written back. Also: TensorFlow's Python logger goes through absl's handler only
  (it had its own handler too, so every "INFO:tensorflow:" line came twice), and gin's INFO lines
  about where it found each file are dropped. With --verbosity >= 1 nothing is hidden.
  """
  if getattr(start_tensorflow, 'done', False):
    return
  # The package is written against Keras 2 (tf_keras). Without this, `import tensorflow` also
  # imports Keras 3 for tf.keras, and Keras 3 imports scikit-learn when it is installed: 2.3 s of
  # CPU in every binary's start-up, for a Keras the package never uses (tf.keras is then tf_keras).
  os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
  if _verbose():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.list_physical_devices()
  else:
    # C++ INFO and WARNING lines after start-up: a failed op's warning ("OP_REQUIRES failed at
    # save_restore_v2_ops.cc: ... File too large") repeats the error Python gets, which the
    # binaries report in one line (user_errors.py).
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
      os.dup2(captured.fileno(), 2)
      try:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        tf.config.list_physical_devices()  # The CUDA probe happens here.
      finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        captured.seek(0)
        for line in captured.read().decode('utf-8', 'replace').splitlines(keepends=True):
          if not _STARTUP_NOISE.search(line):
            sys.stderr.write(line)
        sys.stderr.flush()
    for handler in list(tf.get_logger().handlers):
      tf.get_logger().removeHandler(handler)
    python_logging.getLogger().addFilter(_DropQuietRecords())
    for handler in python_logging.getLogger().handlers:
      handler.addFilter(_DropQuietRecords())
    python_handler = absl_logging.get_absl_handler().python_handler
    python_handler.setFormatter(_PlainOnStderr(python_handler))
  start_tensorflow.done = True
