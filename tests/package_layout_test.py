"""Tests of the package's layout (docs/ARCHITECTURE.md): mains only in the cli, the library never
imports the cli, and no module over 450 lines."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'vlae_tf'
MAX_LINES = 450


def _modules():
  return sorted(PACKAGE.rglob('*.py'))


def _sized_modules():
  for path in _modules():
    yield pytest.param(path, id=str(path.relative_to(PACKAGE)))


def _in_cli(path):
  return path.relative_to(PACKAGE).parts[0] == 'cli'


def _imported_modules(tree):
  """The dotted names a module imports (`from a import b` gives a and a.b)."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f'{node.module}.{alias.name}' for alias in node.names)


@pytest.mark.parametrize('path', _sized_modules())
def test_no_module_is_over_450_lines(path):
  assert len(path.read_text().splitlines()) <= MAX_LINES


def test_library_modules_do_not_import_the_cli():
  offenders = []
  for path in _modules():
    if _in_cli(path):
      continue
    for name in _imported_modules(ast.parse(path.read_text())):
      if name == 'vlae_tf.cli' or name.startswith('vlae_tf.cli.'):
        offenders.append(f'{path.relative_to(PACKAGE)} imports {name}')
  assert not offenders


def test_mains_live_in_the_cli():
  outside = [str(path.relative_to(PACKAGE)) for path in _modules() if not _in_cli(path)
             if any(isinstance(node, ast.FunctionDef) and node.name == 'main'
                    for node in ast.parse(path.read_text()).body)]
  assert not outside
