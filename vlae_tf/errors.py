"""The one error family of vlae_tf: every error a user can meet, under one base.

The binaries report each in one line, without a traceback (vlae_tf/cli/user_errors.py):

    VlaeError                     the base: the binaries' guard catches it (and only it)
    CliError                      a bad flag or gin config (vlae_tf/gin_parsing.py)
    DatasetError                  a dataset cannot be loaded (also a ValueError; data/catalogue.py)
      LabelsUnavailableError      the dataset has no labels here (data/labels.py)
    CodecError                    a file or image set bin/compress cannot code (also a ValueError)
    UnsupportedModelError         a model without a bits-back code (also a ValueError)
    RunError                      a run directory is missing something or cannot be used
      CheckpointNotFoundError     no checkpoint (also a FileNotFoundError)
      DamagedCheckpointError      no intact checkpoint (truncated, changed bytes, missing file)
      ConfigNotFoundError         no config.gin (also a FileNotFoundError)
      DamagedConfigError          config.gin is not a readable gin file
      IncompatibleRunError        checkpoints of a run with other bindings
        ImageSizeError            images of another size than per-pixel biases were built for
      PretrainedError             an unknown --pretrained name, a damaged packaged model
      NonFiniteError              too many non-finite steps in a row (also a FloatingPointError)
      ReproduceError              a user error of bin/reproduce (unknown table, a failed run)
      LostWorkerError             a worker of a multi-worker run is gone (distribution.py)
      DiskFullError               a write failed: disk full or a file-size limit (also an OSError)
    TrainingInterrupted           SIGTERM / SIGINT stopped training after a checkpoint (not an
                                  error of the run: exit status 128 + the signal number)
    TimeLimitReached              --time_limit stopped the work, its state written (not an error
                                  of the run: exit status 75, time_limits.py)

Each keeps the built-in base it had (ValueError, FileNotFoundError, FloatingPointError), so an
`except ValueError` around a dataset load still works. Each has one name, its own here: the modules
that raise them and their callers say `errors.DatasetError`, `errors.CodecError`, ...
"""

import signal


class VlaeError(Exception):
  """The base of every vlae_tf error a user can meet: reported in one line, without a traceback."""


class CliError(VlaeError):
  """A bad flag, gin file, binding or macro: a user error, reported in one line."""


class AllocatorError(CliError):
  """VLAE_TF_ALLOCATOR names an allocator that is not there (allocator.py)."""


class DatasetError(VlaeError, ValueError):
  """A dataset cannot be loaded: unknown name or split, missing, corrupt or malformed data."""


class LabelsUnavailableError(DatasetError):
  """The dataset has no labels here (a clear message for the user, not a crash)."""


class CodecError(VlaeError, ValueError):
  """A file or image set that cannot be compressed or decompressed (one line says why)."""


class UnsupportedModelError(VlaeError, ValueError):
  """The model has no bits-back code here (8-bit data, spatial latents, a decoder without cache)."""


class RunError(VlaeError):
  """A run directory is missing something (config, checkpoint): a user error, not a bug."""


class CheckpointNotFoundError(RunError, FileNotFoundError):
  """There is no checkpoint in the run directory."""


class DamagedCheckpointError(RunError):
  """A checkpoint cannot be read back (truncated, changed bytes, missing file), and no intact one
  can stand in for it."""


class ConfigNotFoundError(RunError, FileNotFoundError):
  """There is no saved gin config in the run directory."""


class DamagedConfigError(RunError):
  """A run's saved gin config is not a readable gin file (binary garbage, cut mid-statement)."""


class IncompatibleRunError(RunError):
  """model_dir holds checkpoints of a run started with different model/data/optimizer bindings."""


class ImageSizeError(IncompatibleRunError, ValueError):
  """A layer with per-pixel biases built for one image size was given images of another size."""

  # Keras re-raises an exception from a layer's call() with a multi-line account of the call's
  # arguments, unless the exception carries this attribute; the message here is already complete
  # and meant to be one line (tf_keras/src/utils/traceback_utils.py).
  _keras_call_info_injected = True


class PretrainedError(RunError):
  """An unknown --pretrained name, or a packaged model whose files fail their checksums."""


class NonFiniteError(RunError, FloatingPointError):
  """Too many consecutive steps had a non-finite loss or gradient."""


class ReproduceError(RunError):
  """A user error of the harness (unknown table, a failed run), reported in one line."""


class LostWorkerError(RunError):
  """A worker of a multi-worker run died or became unreachable: the collective ops failed."""


class DiskFullError(RunError, OSError):
  """A write failed for lack of space (ENOSPC, a quota) or a file-size limit (EFBIG): the message
  names the file and the bytes to write; what was there before is intact."""

  def __init__(self, message, path=None, needed=None):
    super().__init__(message)
    self.path = path
    self.needed = needed

  def __str__(self):
    return self.args[0]


class TrainingInterrupted(VlaeError):
  """SIGTERM or SIGINT stopped training after a final checkpoint (not an error of the run).

  In the family so that every exception a user meets has one base, but the binaries handle it
  before the others: one `stopped:` line and exit status 128 + the signal number.
  """

  def __init__(self, signum, step, checkpoint):
    self.signum = int(signum)
    self.step = int(step)
    self.checkpoint = checkpoint
    super().__init__(f'interrupted by {signal.Signals(signum).name} at step {step}; saved '
                     f'{checkpoint}; run the same command again to resume')


class TimeLimitReached(VlaeError):
  """--time_limit stopped the work before the limit, its state written (a checkpoint, an
  evaluation's progress); the same command continues it (not an error of the run).

  The binaries print one `stopped:` line and exit with status 75 (time_limits.EXIT_STATUS).
  """
