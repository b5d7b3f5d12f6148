"""The committed files of tests/testdata and the scripts that made them, for the tests that read
them: `maker(name)` imports tests/testdata/<name>.py (the file's recipe: where it stands, which
real images it holds)."""

import importlib.util
import os

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'testdata')


def maker(name):
  """tests/testdata/<name>.py as a module."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(TESTDATA, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
