"""A run's config.gin: reading it strictly, the run's dataset, and whether a restart may resume.

bin/train writes every binding a run was started with to <model_dir>/config.gin (directory.py);
every reader of the run (eval, sample, export, inspect, compress, vlae_tf.load) parses it again
(`load_run_config`) before it builds the model. A restart in a model_dir whose config.gin differs
in more than bookkeeping (RESUMABLE_BINDINGS), the macros that feed it (RESUMABLE_MACROS) or the
arithmetic of a piece (RESUMABLE_ARITHMETIC) is refused (`check_resumable`). Every error is one of
the family in errors.py.
"""

import contextlib
import inspect
import os

import gin

from vlae_tf import configs
from vlae_tf import errors
from vlae_tf import gin_parsing
from vlae_tf.runs import checkpoints

CONFIG_FILE = 'config.gin'

# `train` bindings that may change between the runs of one model_dir (bookkeeping, not the model,
# the data or the optimization), and macros that only feed them.
RESUMABLE_BINDINGS = frozenset(
    'train.' + name for name in (
        'train_steps', 'checkpoint_every', 'summary_every', 'eval_every', 'eval_examples',
        'eval_batch_size', 'num_summary_images', 'max_checkpoints_to_keep',
        'max_consecutive_bad_steps', 'deterministic', 'eval_split'))
RESUMABLE_MACROS = frozenset({'TRAIN_STEPS'})
# The arithmetic a piece of a run computes in, not the model: the variables, the optimizer's slots
# and the Polyak averages are float32 under every precision (layers/precision.py), so a run may
# train each piece in the precision that is faster on the machine at hand (mixed_bfloat16 on a
# CPU with AMX, float32 on one without bfloat16 instructions). pieces.jsonl records each piece's;
# eval, sample and export read the run in the precision of its latest piece (config.gin). XLA and
# gradient accumulation are arithmetic too (a piece on a GPU, the next on a smaller one).
RESUMABLE_ARITHMETIC = frozenset({'VLAE.precision', 'train.jit_compile',
                                  'train.accumulation_steps'})


def read_run_config(path, remedy):
  """The text of a saved gin config (config.gin); DamagedConfigError naming the file if it is not
  one: unreadable, not UTF-8 text, holding NUL bytes, or not parseable as gin (a statement cut
  short). Checks the syntax only: nothing is bound. `remedy` ends the error message.

  A file cut at the end of a line stays valid gin: what it lost shows up as missing or differing
  bindings instead.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as error:
    raise errors.DamagedConfigError(
        f'Cannot read {path}: {error.strerror or error}; {remedy}') from None
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError as error:
    raise errors.DamagedConfigError(
        f'{path} is damaged (not text: byte {error.start} of {len(data)} is '
        f'not UTF-8); {remedy}') from None
  if '\0' in text:
    raise errors.DamagedConfigError(f'{path} is damaged (it holds NUL bytes, at byte '
                                    f'{text.index(chr(0))} of {len(data)}); {remedy}')
  if not text.strip():
    raise errors.DamagedConfigError(f'{path} is damaged (empty); {remedy}')
  try:
    for _ in gin.config_parser.ConfigParser(text, gin.config.ParserDelegate(skip_unknown=True)):
      pass
  except Exception as error:  # pylint: disable=broad-except  (SyntaxError, TokenError, ...)
    message = ' '.join(str(error).split())
    raise errors.DamagedConfigError(
        f'{path} is damaged (not valid gin: {message}); {remedy}') from None
  return text


def load_run_config(model_dir):
  """Clears gin and parses <model_dir>/config.gin strictly (the config the run was started with).

  Raises:
    ConfigNotFoundError: no such directory, or no config.gin in it.
    DamagedConfigError: config.gin is damaged, or names what this vlae_tf does not have.
  """
  if not os.path.isdir(model_dir):
    raise errors.ConfigNotFoundError(
        f'No such run directory: {model_dir} (pass the --model_dir of a '
        'bin/train run).')
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise errors.ConfigNotFoundError(
        f'No {CONFIG_FILE} in {model_dir}: not a training run directory '
        '(pass the --model_dir of a bin/train run).')
  remedy = ('restore it from a copy, or move it aside and rerun the bin/train command of this run '
            '(it rewrites the file).')
  text = gin_parsing.current_names(read_run_config(path, remedy))  # Old runs' names too.
  gin_parsing.register_configurables()
  gin.clear_config()
  gin.add_config_file_search_path(configs.search_path())
  try:
    gin.parse_config(text, skip_unknown=False)
  except Exception as error:  # pylint: disable=broad-except  (gin raises many kinds)
    message = ' '.join(str(error).split())
    raise errors.DamagedConfigError(
        f'Cannot use {path}: {message} (is the file damaged, or from another '
        f'version of vlae_tf?); {remedy}') from None
  return path


_dataset_override = []  # The dataset of `reading_dataset`, innermost last.


@contextlib.contextmanager
def reading_dataset(dataset):
  """Within it, `run_dataset()` is `dataset` (a name or one's own images) instead of the run's:
  bin/eval's, bin/sample's and bin/inspect's --dataset. None: the run's own."""
  _dataset_override.append(dataset)
  try:
    yield
  finally:
    _dataset_override.pop()


def run_dataset():
  """The dataset name bound to `train.dataset` in the parsed config (or of `reading_dataset`)."""
  if _dataset_override and _dataset_override[-1]:
    return _dataset_override[-1]
  try:
    return gin.query_parameter('train.dataset')
  except ValueError as error:
    raise errors.RunError('The config binds no train.dataset.') from error


def config_bindings(config):
  """{binding name: value text} of a gin config string as written by `gin.config_str()`.

  A binding starts on an unindented line `name = value`; indented lines continue its value;
  comments, blank lines and `import`/`include` lines are ignored.
  """
  bindings = {}
  name = None
  for line in config.splitlines():
    stripped = line.strip()
    if not stripped or stripped.startswith('#'):
      continue
    if not line[0].isspace() and ' = ' in line and not line.startswith(('import ', 'include ')):
      name, value = line.split(' = ', 1)
      name = name.strip()
      bindings[name] = value.strip()
    elif name is not None and line[0].isspace():
      bindings[name] += ' ' + stripped
  return bindings


def config_differences(old_config, new_config):
  """Bindings that differ between two configs, except RESUMABLE_BINDINGS, RESUMABLE_MACROS and
  RESUMABLE_ARITHMETIC.

  Returns:
    A sorted list of 'name: old -> new' strings ('<unset>' for a missing binding).
  """
  old = config_bindings(gin_parsing.current_names(old_config))  # A run's old names as today's.
  new = config_bindings(gin_parsing.current_names(new_config))
  ignored = RESUMABLE_BINDINGS | RESUMABLE_MACROS | RESUMABLE_ARITHMETIC
  differences = []
  for name in sorted(set(old) | set(new)):
    if name in ignored or old.get(name) == new.get(name):
      continue
    if (name in old) != (name in new) and _is_default(name, old.get(name, new.get(name))):
      continue  # A parameter added to the code since (or dropped from the config) at its default.
    differences.append(f'{name}: {old.get(name, "<unset>")} -> {new.get(name, "<unset>")}')
  return differences


def _is_default(name, value_text):
  """Whether `value_text` is the default of the gin parameter `name` ('scope/Configurable.param')
  in today's code: a binding that one config has and the other lacks is then no difference (the
  operative config of a run started before a parameter existed does not name it)."""
  selector, _, param = name.rpartition('/')[2].rpartition('.')
  try:
    configurable = gin.config._REGISTRY.get_match(selector)  # pylint: disable=protected-access
    parameter = inspect.signature(configurable.wrapped).parameters[param]
  except (AttributeError, KeyError, TypeError, ValueError):
    return False
  if parameter.default is inspect.Parameter.empty:
    return False
  return gin.config._format_value(parameter.default) == value_text  # pylint: disable=protected-access


def check_resumable(model_dir, new_config):
  """Raises IncompatibleRunError when model_dir has checkpoints of a run with other bindings."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.isfile(path) or not checkpoints.has_checkpoints(model_dir):
    return
  old_config = read_run_config(
      path, f'it records the config of the checkpoints in {model_dir}: restore it from a copy, '
      'or move it aside to resume without checking the config.')
  differences = config_differences(old_config, new_config)
  if differences:
    shown = '; '.join(differences[:5]) + ('; ...' if len(differences) > 5 else '')
    raise errors.IncompatibleRunError(
        f'{model_dir} holds checkpoints of a run with a different config ({len(differences)} '
        f'binding(s) differ: {shown}): use a new --model_dir, or the gin files and bindings of '
        f'{path}.')
