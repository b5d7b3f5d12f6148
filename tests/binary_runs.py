"""Running the binaries as a user does, for the tests that start them (bin/<name> in a
subprocess, with this checkout's vlae_tf)."""

import os
import pathlib
import subprocess
import sys

from vlae_tf import allocator

REPO = str(pathlib.Path(__file__).resolve().parents[1])
BINARIES = ('train', 'eval', 'sample', 'export', 'benchmark', 'reproduce', 'inspect', 'compress',
            'decompress')
TINY = ['--gin_file=mnist_vlae.gin', '--gin_file=testing/tiny.gin']


def run_binary(name, *args, timeout=900, quiet_cpp=True, python_path=()):
  """Runs bin/<name> with this python; vlae_tf comes from the checkout (after `python_path`)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  # As a user starts it: no allocator inherited from the test workers (conftest.py), so the binary
  # chooses one and re-executes itself with it (allocator.py).
  env.pop('LD_PRELOAD', None)
  for variable in allocator.GLIBC_TUNED:
    env.pop(variable, None)
  if not quiet_cpp:  # As a user runs it.
    del env['TF_CPP_MIN_LOG_LEVEL']
  env['PYTHONPATH'] = os.pathsep.join(list(python_path) + [REPO] + (
      [env['PYTHONPATH']] if 'PYTHONPATH' in env else []))
  return subprocess.run([sys.executable, os.path.join(REPO, 'bin', name), *args], env=env,
                        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_error(completed, pattern):
  assert completed.returncode != 0
  assert 'Traceback' not in completed.stderr, completed.stderr[-3000:]
  lines = [line for line in completed.stderr.splitlines() if pattern in line]
  assert lines, completed.stderr[-3000:]
