"""docs/ARCHITECTURE.md matches the code: every module it names exists, and so does every name it
puts in backticks beside a module (a function, class or constant of that module, or a method of one
of its classes); every module of the package is named in it."""

import ast
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, 'docs', 'ARCHITECTURE.md')
ROW = re.compile(r'^\|\s*(vlae_tf/[\w/]+\.py)\s*\|(.*)\|\s*$')
NAME = re.compile(r'`([A-Za-z_][\w.]*)(?:\([^`]*\))?`')


def _package_modules():
  found = set()
  for folder, _, names in os.walk(os.path.join(REPO, 'vlae_tf')):
    for name in names:
      if name.endswith('.py'):
        found.add(os.path.relpath(os.path.join(folder, name), REPO))
  return found


def _definitions(path):
  """{top-level name: set of attribute names (methods of classes, else empty)}."""
  with open(os.path.join(REPO, path)) as f:
    tree = ast.parse(f.read())
  names = {}
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      names[node.name] = set()
    elif isinstance(node, ast.ClassDef):
      names[node.name] = {item.name for item in node.body
                          if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      for target in targets:
        if isinstance(target, ast.Name):
          names[target.id] = set()
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      for alias in node.names:
        names[(alias.asname or alias.name).split('.')[0]] = set()
  return names


def _rows():
  with open(DOC) as f:
    for line in f:
      match = ROW.match(line.strip())
      if match:
        yield match.group(1), NAME.findall(match.group(2))


def test_every_named_module_and_name_exists():
  problems = []
  rows = list(_rows())
  modules = {os.path.basename(module)[:-3]: module for module in _package_modules()}
  assert len(rows) > 20, 'docs/ARCHITECTURE.md lost its module tables'
  for path, names in rows:
    if not os.path.isfile(os.path.join(REPO, path)):
      problems.append(f'{path}: no such module')
      continue
    defined = _definitions(path)
    methods = set().union(*defined.values())
    for name in names:
      head, _, attribute = name.partition('.')
      if head in defined:
        if attribute and defined[head] and attribute.split('.')[0] not in defined[head]:
          problems.append(f'{path}: `{name}`: {head} has no method {attribute}')
      elif head in modules and attribute:  # `module.name` of another module of the package
        if attribute.split('.')[0] not in _definitions(modules[head]):
          problems.append(f'{path}: `{name}` is not defined in {modules[head]}')
      elif head not in methods:
        problems.append(f'{path}: `{name}` is not defined there (nor a method of its classes)')
  assert not problems, '\n'.join(problems)


def test_every_module_of_the_package_is_named():
  named = {path for path, _ in _rows()}
  missing = sorted(module for module in _package_modules() - named
                   if not module.endswith('__init__.py'))
  assert not missing, f'modules missing from docs/ARCHITECTURE.md: {missing}'
