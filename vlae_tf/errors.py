"""The errors of a run: one family, each a user error reported in one line by the binaries.

    CliError                      a bad flag or gin config (vlae_tf/gin_parsing.py)
    RunError                      a run directory is missing something or cannot be used
      CheckpointNotFoundError     no checkpoint (also a FileNotFoundError)
      DamagedCheckpointError      no intact checkpoint (truncated, changed bytes, missing file)
      ConfigNotFoundError         no config.gin (also a FileNotFoundError)
      DamagedConfigError          config.gin is not a readable gin file
      IncompatibleRunError        checkpoints of a run with other bindings
      NonFiniteError              too many non-finite steps in a row (also a FloatingPointError)
    TrainingInterrupted           SIGTERM / SIGINT stopped training after a checkpoint (not an
                                  error of the run: exit status 128 + the signal number)
"""

import signal


class CliError(Exception):
  """A bad flag, gin file, binding or macro: a user error, reported in one line."""


class RunError(Exception):
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


class NonFiniteError(RunError, FloatingPointError):
  """Too many consecutive steps had a non-finite loss or gradient."""


class TrainingInterrupted(Exception):
  """SIGTERM or SIGINT stopped training after a final checkpoint (not an error of the run)."""

  def __init__(self, signum, step, checkpoint):
    self.signum = int(signum)
    self.step = int(step)
    self.checkpoint = checkpoint
    super().__init__(f'interrupted by {signal.Signals(signum).name} at step {step}; saved '
                     f'{checkpoint}; run the same command again to resume')
