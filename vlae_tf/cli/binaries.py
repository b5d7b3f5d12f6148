"""The binaries by name, and the installed commands.

    bin/<name> --flags ...          in a checkout (the README's commands)
    vlae-<name> --flags ...         after `pip install` (console entry points, see setup.py)

with <name> one of train, eval, sample, export, benchmark, reproduce, inspect, compress and
decompress. Each binary has a module of its own in this package that defines its flags and its
main (run_binaries.py: train, eval, sample, export; compress_binaries.py; benchmark_binary.py;
reproduce_binary.py; inspect_binary.py); `run_binary(name)` defines the flags and runs the main
with absl `app.run`.

Flags are program-level only; every hyperparameter is gin. Gin files are found by name from
anywhere (vlae_tf/configs.py) and parsed strictly (vlae_tf/gin_parsing.py).

No module of this package imports TensorFlow until a main runs, so `--help` is fast; a main first
hides TensorFlow's start-up chatter (its C++ INFO lines and, on machines without a GPU, the failed
CUDA probe) unless `--verbosity=1` or more asks for everything (startup.py).

A user error (no --model_dir, no checkpoint, an unknown gin file or binding, missing data, an
incompatible or unwritable run directory, too many non-finite steps, no intact checkpoint, a
damaged config.gin: any `errors.VlaeError`) ends the program with one line on stderr and exit
status 1, without a traceback (user_errors.py). A damaged newest checkpoint is not an error when an
older one is intact: bin/train moves it aside and resumes from the older one, the readers use the
older one, each saying so in one warning line. SIGTERM or SIGINT during bin/train saves a
checkpoint, prints one line, and exits with status 128 + the signal number (143 for SIGTERM, 130
for SIGINT); running the same command again resumes. See docs/reliability.md.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from vlae_tf import errors
from vlae_tf import allocator
from vlae_tf import time_limits
from vlae_tf.cli import benchmark_binary
from vlae_tf.cli import compress_binaries
from vlae_tf.cli import dataset_flags
from vlae_tf.cli import inspect_binary
from vlae_tf.cli import preflight
from vlae_tf.cli import reproduce_binary
from vlae_tf.cli import run_binaries
from vlae_tf.cli import shared_flags
from vlae_tf.cli import startup
from vlae_tf.pretrained import catalogue
from vlae_tf import signals


def _started(name, main):
  """`main`, after the cheap checks of the paths and after TensorFlow has started quietly."""

  def started_main(argv):
    problem = _use_pretrained()
    if problem:
      raise SystemExit(problem)
    values = {flag: flags.FLAGS[flag].value for flag in
              ('model_dir', 'gin_file', 'data_dir', 'compare_model_dir', 'input', 'train_steps',
               'dataset', 'image_size')
              if flag in flags.FLAGS}
    values['time_limit'] = flags.FLAGS['time_limit'].value if 'time_limit' in flags.FLAGS else None
    problem = preflight.check_paths(name, values)
    if problem:
      raise SystemExit(problem)
    # TCMalloc when the machine has it (allocator.py: glibc's malloc faults every activation in
    # again each step); this re-executes the process once, before anything was started or written
    # (but a pretrained model's cached copy, which the new process finds in place).
    try:
      allocator.use_chosen_allocator()
    except errors.AllocatorError as error:
      raise SystemExit(f'error: {error}') from None
    # From here a signal is answered within a second, even inside TensorFlow (signals.py).
    signals.install(_STARTUP_LINES.get(name, _STARTUP_LINES[None]))
    startup.start_tensorflow()
    return main(argv)

  return started_main


def _use_pretrained(flag_values=flags.FLAGS):
  """--pretrained=NAME becomes --model_dir=<its verified copy> (vlae_tf/pretrained/catalogue.py).

  bin/inspect: --pretrained adds one run to its --model_dir list. (That one of the two is given,
  absl checks: shared_flags.define_pretrained.) Returns the one-line error, or None.
  """
  if 'pretrained' not in flag_values or flag_values.pretrained is None:
    return None
  name, model_dir = flag_values.pretrained, flag_values.model_dir
  several = isinstance(flag_values['model_dir'], flags.MultiFlag)  # bin/inspect's list.
  if model_dir and not several:
    return (f'error: --model_dir={model_dir} and --pretrained={name} both name the model to '
            'read: pass one of them.')
  try:
    path = catalogue.run_directory(name)
  except errors.PretrainedError as error:
    return f'error: {error}'
  flag_values.model_dir = [*(model_dir or []), path] if several else path
  return None


# What a signal outside the binaries' own `signals.when_signalled` blocks means (start-up, loading
# the data, building and restoring the model, tracing): nothing is being written.
_STARTUP_LINES = {
    'train': lambda signame: (f'interrupted by {signame} during start-up: nothing new to save; '
                              'run the same command again to resume'),
    'reproduce': lambda signame: (f'interrupted by {signame}: the trainings and evaluations done '
                                  'are kept; run the same command again to continue'),
    None: lambda signame: f'interrupted by {signame}; nothing half-written',
}


# name: (defines its flags, its main)
_BINARIES = {
    'train': (run_binaries.define_train_flags, run_binaries.train_main),
    'eval': (run_binaries.define_eval_flags, run_binaries.eval_main),
    'sample': (run_binaries.define_sample_flags, run_binaries.sample_main),
    'export': (run_binaries.define_export_flags, run_binaries.export_main),
    'benchmark': (benchmark_binary.define_benchmark_flags, benchmark_binary.benchmark_main),
    'reproduce': (reproduce_binary.define_reproduce_flags, reproduce_binary.reproduce_main),
    'inspect': (inspect_binary.define_inspect_flags, inspect_binary.inspect_main),
    'compress': (compress_binaries.define_compress_flags, compress_binaries.compress_main),
    'decompress': (compress_binaries.define_decompress_flags, compress_binaries.decompress_main),
}
COMMANDS = tuple(_BINARIES)


def run_binary(name):
  """Defines the flags of binary `name` and runs its main on sys.argv: what bin/<name> does.

  Also for subprocesses (`python -c "from vlae_tf import cli; cli.run_binary('train')" --flags`),
  which must not depend on where bin/ is.
  """
  define_flags, main = _BINARIES[name]
  define_flags()
  # The key flags of the program (sys.argv[0]) are defined in the binary's module and in
  # shared_flags.
  key_flags = []
  for module in (define_flags.__module__, shared_flags.__name__, dataset_flags.__name__):
    for flag in flags.FLAGS.get_key_flags_for_module(module):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
      key_flags.append(flag)
  if preflight.wants_help(sys.argv):  # absl's --help exits with status 1 and reads __main__.
    preflight.print_help(name, key_flags,
                         flags.FLAGS.get_help() if '--helpfull' in sys.argv else None)
    raise SystemExit(0)
  # Plain INFO lines on stderr for people; --verbosity=1 or a log file (--log_dir) keeps absl's
  # prefix (I1202 01:00:35.939188 140240277207936 loop.py:419]), as does --showprefixforinfo.
  flags.FLAGS.set_default('showprefixforinfo', False)
  hint = preflight.flag_hint(sys.argv, defined=flags.FLAGS)
  if hint:
    raise SystemExit(hint)
  try:
    app.run(_started(name, main))
  except SystemExit as stopped:
    if isinstance(stopped.code, int) and (stopped.code > 128 or
                                          stopped.code == time_limits.EXIT_STATUS):
      _exit_now(stopped.code)
    # Done, and everything written: closed files, flushed summaries, synchronous checkpoints.
    # A worker of a multi-worker run leaves through TensorFlow's shutdown, which tells the cluster.
    if stopped.code in (None, 0) and not os.environ.get('TF_CONFIG'):
      _exit_now(0)
    raise


def _exit_now(code):
  """Ends the process with `code` at once, once what it wrote is flushed.

  After a binary finished, or a signal stopped training, the checkpoint is saved and the summaries
  flushed; what is left is the interpreter's shutdown, whose garbage collection of TensorFlow's
  objects took 15-40 s on a busy machine after a signal (the process looked hung after printing
  `stopped:`) and 1.8 s after an idle machine's tiny bin/train. os._exit skips it.
  """
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)  # pylint: disable=protected-access


# The installed commands (setup.py's console entry points): vlae-train, vlae-eval, ...
def train_command():
  run_binary('train')


def eval_command():
  run_binary('eval')


def sample_command():
  run_binary('sample')


def export_command():
  run_binary('export')


def benchmark_command():
  run_binary('benchmark')


def reproduce_command():
  run_binary('reproduce')


def inspect_command():
  run_binary('inspect')


def compress_command():
  run_binary('compress')


def decompress_command():
  run_binary('decompress')
