"""The run directory (model_dir): its files, its config, the checks before a resume, restoring it.

    config.gin              every binding the run was started with; eval/sample/export re-read it
    operative_config.gin    the bindings actually used (written after the first step)
    started.json            when the first (fresh) train call began: the origin of training time
    pieces.jsonl            one line per training process: steps, wall time, CPU, how it ended
    model_summary.json      trainable parameters per part and the decoder window (models/summary.py)
    ckpt-<step>.*           checkpoints (tf.train.CheckpointManager; checkpoints.py)
    checkpoint              the CheckpointManager's list of kept checkpoints
    damaged/                damaged checkpoints that `train` moved aside (never deleted)
    events.out.tfevents.*   the hparams dashboard's settings of the run (`summaries`)
    train/, validation/     TensorBoard summaries (`summaries`)

A restart in a model_dir whose config.gin differs in more than bookkeeping (RESUMABLE_BINDINGS) is
refused (`check_resumable`). Readers parse the run's config strictly (`load_run_config`), then
restore the Polyak-averaged weights of a checkpoint (`restore_averaged_model`). Every error is one
of the family in errors.py.
"""

import contextlib
import glob
import inspect
import json
import os
import shutil
import time

from absl import logging
import gin
import tensorflow as tf

from vlae_tf import configs
from vlae_tf.data import catalogue
from vlae_tf.data import user_images
from vlae_tf.training import configurables  # pylint: disable=unused-import  (what config.gin may name)
from vlae_tf import errors
from vlae_tf import files
from vlae_tf import time_limits
from vlae_tf.models import vlae as model_lib
from vlae_tf.training import checkpoints

CONFIG_FILE = 'config.gin'
OPERATIVE_CONFIG_FILE = 'operative_config.gin'
STARTED_FILE = 'started.json'
# One line per training process (a piece of the run): its steps, wall time, machine and how it
# ended (`record_piece`): the provenance of a run trained in pieces.
PIECES_FILE = 'pieces.jsonl'
MODEL_SUMMARY_FILE = 'model_summary.json'  # parameters per part, the decoder's window
# The run's data source, written by bin/train at start: {"dataset", "data_dir"} (an absolute path,
# or null: tensorflow-datasets). The readers of the run (eval, sample, inspect) use it unless
# --data_dir says otherwise (`reader_data_dir`).
DATA_SOURCE_FILE = 'data_source.json'


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
  read_run_config(path, remedy)
  gin.clear_config()
  gin.add_config_file_search_path(configs.search_path())
  try:
    gin.parse_config_file(path, skip_unknown=False)
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


def run_start_time(model_dir):
  """The unix time at which the run's first `train` call began, or None if not recorded."""
  path = os.path.join(model_dir, STARTED_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return float(json.load(f)['unix_time'])


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
  old, new = config_bindings(old_config), config_bindings(new_config)
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


def check_model_dir_creatable(model_dir):
  """Raises the RunError of `prepare_model_dir` without creating anything: for the checks that
  come before anything is written (the data and the model are loaded first).

  The nearest existing ancestor of `model_dir` must be a directory we can write to (or
  `model_dir` itself a writable directory)."""
  path = os.path.abspath(model_dir)
  while not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  if path != os.path.abspath(model_dir) and not os.path.isdir(path):
    raise errors.RunError(
        f'Cannot create --model_dir {model_dir}: {path} is not a directory; choose a '
        'directory you can write to.')
  if os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
    raise errors.RunError(
        f'Cannot create --model_dir {model_dir}: {path} is not writable; choose a '
        'directory you can write to.')
  if path == os.path.abspath(model_dir) and not os.path.isdir(path):
    raise errors.RunError(f'--model_dir {model_dir} is not a directory.')


def prepare_model_dir(model_dir):
  """Creates model_dir if needed and checks that it is a writable directory (else RunError)."""
  try:
    os.makedirs(model_dir, exist_ok=True)
  except OSError as error:
    raise errors.RunError(
        f'Cannot create --model_dir {model_dir}: {error.strerror or error}; choose a '
        'directory you can write to.') from None
  if not os.path.isdir(model_dir):
    raise errors.RunError(f'--model_dir {model_dir} is not a directory.')
  if not os.access(model_dir, os.W_OK | os.X_OK):
    raise errors.RunError(
        f'--model_dir {model_dir} is not writable; choose a directory you can write '
        'to or fix its permissions.')


def prepare_training_run(model_dir, config, chief, began):
  """Checks and readies model_dir for `loop.train`; returns the checkpoint to resume from.

  The chief refuses a model_dir whose checkpoints were written with other bindings
  (`check_resumable`), removes what an interrupted save left, moves damaged checkpoints aside
  (`checkpoints.prepare_resume`, before the CheckpointManager reads the state file), and writes
  config.gin, and started.json for a fresh run. Other workers only look for the newest intact
  checkpoint (the chief's directory is theirs to read, not to change).

  Args:
    model_dir: the run directory (created if needed).
    config: the run's gin config, `gin.config_str()`: written to config.gin.
    chief: whether this task writes the run directory (`distribution.is_chief`).
    began: the unix time the train call began (a fresh run's clock starts there).

  Returns:
    The path of the checkpoint to resume from, or None for a fresh run.

  Raises:
    RunError, IncompatibleRunError, DamagedConfigError, DamagedCheckpointError.
  """
  prepare_model_dir(model_dir)
  if not chief:
    latest, _, _ = checkpoints.newest_intact_checkpoint(model_dir)
    return latest
  check_resumable(model_dir, config)
  remove_partial_checkpoints(model_dir)
  latest = checkpoints.prepare_resume(model_dir)
  files.atomic_write_text(os.path.join(model_dir, CONFIG_FILE), config)
  if latest is None:  # A fresh run: its clock starts now.
    files.atomic_write_text(os.path.join(model_dir, STARTED_FILE),
                            json.dumps({'unix_time': began}) + '\n')
  return latest


def record_piece(model_dir, began, first_step, last_step, ended, **facts):
  """Appends this training process's line to <model_dir>/pieces.jsonl.

  Args:
    model_dir: the run directory.
    began: the unix time the process's train call began.
    first_step, last_step: the step it resumed from (0 for a fresh run) and the step it saved.
    ended: 'finished', 'time limit', the signal's name, or 'failure'.
    **facts: more keys (precision, replicas, ...).
  """
  line = dict(started_unix_time=round(began, 1), wall_seconds=round(time.time() - began, 1),
              first_step=int(first_step), last_step=int(last_step),
              steps=int(last_step) - int(first_step), cpu=time_limits.cpu_name(), ended=ended,
              **facts)
  files.append_line(os.path.join(model_dir, PIECES_FILE), json.dumps(line, sort_keys=True) + '\n')


def read_pieces(model_dir):
  """The lines of <model_dir>/pieces.jsonl (oldest first), or []."""
  path = os.path.join(model_dir, PIECES_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def effective_data_dir(data_dir):
  """The data directory `datasets.load` reads for `data_dir`: it, else $VLAE_DATA_DIR, else None
  (tensorflow-datasets); an absolute path."""
  data_dir = data_dir or os.environ.get(catalogue.ENV_DATA_DIR) or None
  return os.path.abspath(os.path.expanduser(str(data_dir))) if data_dir else None


def describe_data_source(data_dir, dataset=None):
  if user_images.is_user_source(dataset):
    return 'one\'s own images'
  data_dir = effective_data_dir(data_dir)
  return f'data from {data_dir}' if data_dir else 'data from tensorflow-datasets'


def record_data_source(model_dir, dataset, data_dir):
  """Writes <model_dir>/data_source.json: the dataset and where its files come from; for one's
  own images (user_images.py) also their shape, pixel kind, split sizes and classes."""
  record = {'dataset': dataset, 'data_dir': effective_data_dir(data_dir)}
  if user_images.is_user_source(dataset):
    record.update(data_dir=None, **user_images.read_configured(dataset).record())
  files.atomic_write_text(os.path.join(model_dir, DATA_SOURCE_FILE), json.dumps(record) + '\n')


def recorded_data_source(model_dir):
  """The run's {"dataset", "data_dir"}, or None (a run from before the record, or damaged)."""
  try:
    with open(os.path.join(model_dir, DATA_SOURCE_FILE)) as f:
      source = json.load(f)
  except (OSError, ValueError):
    return None
  return source if isinstance(source, dict) and 'data_dir' in source else None


def reader_data_dir(model_dir, data_dir=None):
  """The data directory a reader of the run uses: --data_dir if given (one line when it differs
  from the run's record), else the run's recorded source, else $VLAE_DATA_DIR / tensorflow-datasets
  as `datasets.load` does. None means tensorflow-datasets (or $VLAE_DATA_DIR)."""
  source = recorded_data_source(model_dir)
  if source is None:
    return data_dir
  recorded = source['data_dir']
  if data_dir:
    if effective_data_dir(data_dir) != recorded:
      logging.info('Using --data_dir=%s; the run was trained on %s.', data_dir,
                   recorded or 'tensorflow-datasets')
    return data_dir
  if recorded is None:
    if os.environ.get(catalogue.ENV_DATA_DIR):
      logging.info('The run was trained on tensorflow-datasets; using $%s=%s as it asks.',
                   catalogue.ENV_DATA_DIR, os.environ[catalogue.ENV_DATA_DIR])
    return None
  return recorded


def remove_partial_checkpoints(model_dir):
  """Deletes what a save killed midway leaves behind: ckpt-N_temp* directories.

  TensorFlow writes a checkpoint's shards to <prefix>_temp*/ before merging them into
  <prefix>.index / <prefix>.data-*, and the CheckpointManager updates the `checkpoint` state file
  (atomically) only after that, so a kill mid-save leaves the previous checkpoint as the latest;
  the partial files of the interrupted one are overwritten by the next save of the same step.
  """
  for path in glob.glob(os.path.join(glob.escape(model_dir), 'ckpt-*_temp*')):
    logging.info('Removing %s, left by an interrupted checkpoint save.', path)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)


def restore_averaged_model(model_dir, checkpoint_path=None):
  """Builds the model from the parsed gin config and restores the Polyak-averaged weights.

  Call under the strategy scope that should own the variables (or under none). Without
  `checkpoint_path`, restores the newest intact checkpoint (`latest_checkpoint`); a given one is
  restored as it is (check it with `resolve_checkpoint`).

  Returns:
    (model, step, checkpoint_path).
  """
  checkpoint_path = checkpoint_path or checkpoints.latest_checkpoint(model_dir)
  model = model_lib.make_model()
  model_lib.create_variables(model)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
  status = tf.train.Checkpoint(step=step, averaged_model=model).restore(checkpoint_path)
  status.expect_partial()
  status.assert_existing_objects_matched()
  return model, int(step.numpy()), checkpoint_path
