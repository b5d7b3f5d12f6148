"""How every binary ends on a user error: one line on stderr and exit status 1, no traceback.

A user error is any `errors.VlaeError` (a bad flag or gin config, missing data, no checkpoint, an
incompatible or damaged run directory, too many non-finite steps, a file bin/decompress cannot
read, ...): the one base of vlae_tf/errors.py. A write that failed for lack of space or a
file-size limit (an OSError, or TensorFlow's error saying so in words: a checkpoint, a summary, an
export) is one line too (`files.disk_full_from`). Anything else is a bug and keeps its traceback.
`errors.TrainingInterrupted` (SIGTERM / SIGINT during bin/train, after a final checkpoint) is not
an error of the run: one `stopped:` line and exit status 128 + the signal number (143 for
SIGTERM, 130 for SIGINT). `errors.TimeLimitReached` (--time_limit, after the work's state was
written) is one `stopped:` line and exit status 75 (time_limits.EXIT_STATUS).
"""

import re
import sys

from vlae_tf import errors
from vlae_tf import files
from vlae_tf import time_limits


def one_line(error):
  """The error's message on one line, without gin's "In call to configurable ..." suffix."""
  message = ' '.join(str(error).split())
  return re.sub(r"\s*In call to configurable '[^']+' \(<[^>]*>\)", '', message)


def guard(run):
  """Runs `run()` and returns its value, turning the user errors it raises into an exit.

  Raises:
    SystemExit: 'error: <one line>' (exit status 1) for an `errors.VlaeError`; 128 + the signal
      number for an `errors.TrainingInterrupted`, 75 for an `errors.TimeLimitReached`, each
      after a `stopped: <one line>` on stderr.
  """
  try:
    return run()
  except errors.TrainingInterrupted as interrupted:
    print(f'stopped: {one_line(interrupted)}', file=sys.stderr, flush=True)
    raise SystemExit(128 + interrupted.signum) from None
  except errors.TimeLimitReached as reached:
    print(f'stopped: {one_line(reached)}', file=sys.stderr, flush=True)
    raise SystemExit(time_limits.EXIT_STATUS) from None
  except errors.VlaeError as error:
    raise SystemExit(f'error: {one_line(error)}') from None
  except Exception as error:  # pylint: disable=broad-except
    disk_full = files.disk_full_from(error)  # TensorFlow's or an OSError: disk full is the user's
    if disk_full is None:
      raise
    raise SystemExit(f'error: {one_line(disk_full)}') from None
