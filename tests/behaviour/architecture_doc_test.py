"""docs/ARCHITECTURE.md matches the code: every module it names exists, and so does every name it
puts in backticks beside a module (a function, class or constant of that module, or a method of one
of its classes); every module of the package is named in it."""

import ast
import os
import pathlib
import re

REPO = str(pathlib.Path(__file__).resolve().parents[2])
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


# -- Tests (the "Tests" section) ------------------------------------------------------------------

TESTS_ROW = re.compile(r'^\|\s*(vlae_tf/[\w/]+\.py)\s*\|\s*((?:tests/[\w/]+_test\.py(?:, )?)+)\s*\|$')


def _test_files():
  found = []
  for folder, _, names in os.walk(os.path.join(REPO, 'tests')):
    found += [os.path.relpath(os.path.join(folder, name), REPO) for name in names
              if name.endswith('_test.py')]
  return sorted(found)


def _own_module(test_file):
  """vlae_tf/<package>/<module>.py of tests/<package>/<module>_test.py (None for behaviour/)."""
  parts = test_file.split(os.sep)[1:]
  if parts[0] == 'behaviour':
    return None
  return os.path.join('vlae_tf', *parts[:-1], parts[-1][:-len('_test.py')] + '.py')


def _imports(path):
  """The dotted vlae_tf modules a file imports (at any depth: functions import lazily too)."""
  with open(os.path.join(REPO, path)) as f:
    tree = ast.parse(f.read())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f'{node.module}.{alias.name}' for alias in node.names)
  return {name for name in names if name.startswith('vlae_tf')}


def _reached(test_file):
  """The package modules a test file reaches through imports (its own and theirs)."""
  modules = {os.path.splitext(path)[0].replace(os.sep, '.'): path
             for path in _package_modules()}
  modules.update({name[:-len('.__init__')]: path for name, path in list(modules.items())
                  if name.endswith('.__init__')})
  seen, todo = set(), [name for name in _imports(test_file) if name in modules]
  while todo:
    name = todo.pop()
    if name not in seen:
      seen.add(name)
      todo += [other for other in _imports(modules[name]) if other in modules]
  return {modules[name] for name in seen}


def test_test_files_mirror_the_package():
  strays = [path for path in _test_files()
            if _own_module(path) and not os.path.isfile(os.path.join(REPO, _own_module(path)))]
  assert not strays, f'test files named for no module of their package: {strays}'


def test_every_module_has_its_tests():
  own = {_own_module(path) for path in _test_files()}
  through = {}
  with open(DOC) as f:
    section = f.read().split('\n## Tests\n', 1)[1]
  for line in section.splitlines():
    match = TESTS_ROW.match(line.strip())
    if match:
      through[match.group(1)] = match.group(2).split(', ')
  problems = []
  for module in sorted(_package_modules()):
    if module.endswith('__init__.py') or module in own:
      continue
    if module not in through:
      problems.append(f'{module}: no tests/<package>/<module>_test.py and no row in "Tests"')
    for test_file in through.get(module, []):
      if not os.path.isfile(os.path.join(REPO, test_file)):
        problems.append(f'{module}: {test_file} does not exist')
      elif module not in _reached(test_file):
        problems.append(f'{module}: {test_file} does not reach it through its imports')
  stale = sorted(module for module in through if module in own)
  assert not problems and not stale, '\n'.join(problems + [f'{m}: has its own file' for m in stale])
