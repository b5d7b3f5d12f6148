"""Flags that several binaries define alike (--model_dir, --checkpoint), and their argv check.

Flags are program-level only; every hyperparameter is gin (see vlae_tf/gin_parsing.py).
"""

import json
import sys

from absl import app
from absl import flags

from vlae_tf import time_limits
from vlae_tf.pretrained import catalogue


def define_model_dir(reading=False):
  """--model_dir; for a binary that reads a run (`reading`), --pretrained too, one of the two."""
  flags.DEFINE_string('model_dir', None, 'The run directory (checkpoints, config.gin, summaries).')
  if reading:
    define_pretrained()
  else:
    flags.mark_flag_as_required('model_dir')


def define_pretrained():
  """--pretrained=NAME: a model that ships with vlae_tf, read like a run (binaries.py)."""
  flags.DEFINE_string('pretrained', None, 'A model that ships with vlae_tf, instead of '
                      f'--model_dir: {catalogue.names_text()} '
                      '(its provenance: vlae_tf/pretrained/NAME/provenance.json).')
  # Checked by absl with the other required flags, so that one message names every missing one.
  flags.register_multi_flags_validator(
      ['model_dir', 'pretrained'], lambda values: bool(values['model_dir'] or values['pretrained']),
      message='give --model_dir=DIR (a bin/train run) or --pretrained=NAME (a model that ships '
              f'with vlae_tf: {catalogue.names_text()})')


# layers/precision.py's PRECISIONS, here without importing TensorFlow (flags are parsed first).
PRECISIONS = ('float32', 'mixed_bfloat16', 'mixed_float16')


def define_checkpoint():
  flags.DEFINE_string('checkpoint', None, 'The checkpoint to use: a prefix such as '
                      '<model_dir>/ckpt-2000, or a step such as 2000 (default: the newest intact '
                      'checkpoint).')


def define_time_limit(what):
  """--time_limit: stop cleanly before a wall time (time_limits.py); `what` is what stops."""
  flags.DEFINE_string('time_limit', None, f'Stop {what} before this wall time from the start of '
                      'the process (e.g. 2h30m, 90m, SLURM\'s 02:30:00), exit with status 75; the '
                      'same command continues. Default: no limit.')


def time_limit():
  """The `time_limits.TimeLimit` of --time_limit, or None (checked by preflight already)."""
  return time_limits.TimeLimit.from_flag(flags.FLAGS.time_limit)


def no_positional(argv):
  """Raises app.UsageError when the command line has arguments that are not flags."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')


def positive_or_none(value):
  """`value` when it is a positive count, else None ('all': the flags' 0 or less)."""
  return value if value and value > 0 else None


def define_json():
  flags.DEFINE_boolean('json', False, 'Print the result as one JSON object per line on stdout '
                       '(for scripts) instead of a line for people.')


def print_result(line, result):
  """A binary's result, once, on stdout: `line` for people, or `result` as JSON with --json."""
  if flags.FLAGS['json'].value if 'json' in flags.FLAGS else False:
    print(json.dumps(result, sort_keys=True, default=str))
  else:
    print(line)
  sys.stdout.flush()
