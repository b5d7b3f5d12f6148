"""Tests of the package's layout (docs/ARCHITECTURE.md): mains only in the cli, the library never
imports the cli, and no module over 450 lines."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / 'vlae_tf'
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


def _package_of(path):
  return path.relative_to(PACKAGE).parts[0]


def test_the_readers_of_a_run_import_nothing_of_training():
  """evaluation/, export/, compression/ and pretrained/ read runs through runs/; experiments/
  imports training/ only where it trains (the benchmark's steps, the FLOPs of a step)."""
  trains = {'experiments/benchmark.py', 'experiments/flop_counting.py'}
  offenders = []
  for path in _modules():
    if _package_of(path) not in ('evaluation', 'export', 'compression', 'pretrained',
                                 'experiments', 'runs', 'data', 'models', 'layers'):
      continue
    if str(path.relative_to(PACKAGE)) in trains:
      continue
    for name in _imported_modules(ast.parse(path.read_text())):
      if name == 'vlae_tf.training' or name.startswith('vlae_tf.training.'):
        offenders.append(f'{path.relative_to(PACKAGE)} imports {name}')
  assert not offenders


def _calls(tree, name):
  """The calls of `name` in a module: `name(...)` or `module.name(...)`."""
  return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and name in (
      getattr(node.func, 'attr', None), getattr(node.func, 'id', None))]


def test_a_run_is_restored_in_one_place():
  """Choosing a checkpoint and restoring a run's averaged weights happen in runs/opening.py only:
  every reader calls `opening.open_run`."""
  callers = {}
  for path in _modules():
    tree = ast.parse(path.read_text())
    for attribute in ('resolve_checkpoint', 'restore_averaged_model'):
      if _calls(tree, attribute):
        callers.setdefault(attribute, set()).add(str(path.relative_to(PACKAGE)))
  assert callers == {'resolve_checkpoint': {'runs/opening.py'},
                     'restore_averaged_model': {'runs/opening.py'}}
  opened_by = {str(path.relative_to(PACKAGE)) for path in _modules()
               if _calls(ast.parse(path.read_text()), 'open_run')}
  assert opened_by >= {'__init__.py', 'cli/run_binaries.py', 'compression/codec.py',
                       'evaluation/evaluator.py', 'export/saved_model.py',
                       'experiments/inspection.py', 'pretrained/packaging.py'}
