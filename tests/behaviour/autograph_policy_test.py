"""Every tf.function of the package is traced without autograph.

Autograph converts every Python function a traced function calls, each Keras layer's `call`
included; for the tiny VLAE that was half of the tracing of the first training step (8.1 s against
4.3 s, means of two runs) and of the sampler (5.7 s against 2.4 s). The package's control flow on
tensors is explicit (`tf.while_loop`, `tf.cond`), so `autograph=False` loses nothing; a `for x in tf.range(...)` or an
`if tensor:` left in model code fails at trace time under it, which the model and sampler tests
then show.
"""

import ast
import os
import pathlib

REPO = str(pathlib.Path(__file__).resolve().parents[2])
PACKAGE = os.path.join(REPO, 'vlae_tf')


def _is_tf_function(node):
  return (isinstance(node, ast.Attribute) and node.attr == 'function'
          and isinstance(node.value, ast.Name) and node.value.id == 'tf')


def _tf_function_uses():
  """(path:line, the ast.Call or bare decorator) of every tf.function(...) and @tf.function."""
  for directory, _, names in os.walk(PACKAGE):
    for name in sorted(names):
      if not name.endswith('.py'):
        continue
      path = os.path.join(directory, name)
      with open(path) as f:
        tree = ast.parse(f.read(), path)
      where = os.path.relpath(path, REPO)
      for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_tf_function(node.func):
          yield f'{where}:{node.lineno}', node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          for decorator in node.decorator_list:
            if _is_tf_function(decorator):  # A bare @tf.function: autograph on.
              yield f'{where}:{decorator.lineno}', None


def test_every_tf_function_turns_autograph_off():
  uses = list(_tf_function_uses())
  assert len(uses) >= 15, 'the package lost its tf.functions, or the search its way'
  without = []
  for where, call in uses:
    keywords = {} if call is None else {k.arg: k.value for k in call.keywords}
    value = keywords.get('autograph')
    if not (isinstance(value, ast.Constant) and value.value is False):
      without.append(where)
  assert not without, f'tf.function without autograph=False at {without}'
