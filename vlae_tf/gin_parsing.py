"""Strict gin parsing for the binaries: shipped configs found by name, one-line errors with
suggestions for a misspelled file, configurable, parameter or macro.

`parse_gin` reads base.gin, then the --gin_file files in order, then the --gin_param bindings, all
strictly: an unknown configurable or parameter is an error (gin's own), and so is a macro that a
--gin_param binds but nothing uses (`TRAIN_STEP=150` for TRAIN_STEPS), which gin accepts silently.

Every configurable's gin name is its defining module's (`encoders.BinaryResNetEncoder` is in
models/encoders.py). Runs saved before the names were made so say `networks.BinaryResNetEncoder`:
`current_names` rewrites a saved config's text to today's names (RENAMED); the readers of a run
directory and the resume check pass every saved config through it, and `parse_gin` every gin file
and binding (a resumed run may be given its config.gin), so old runs load and resume unchanged.
"""

import contextlib
import difflib
import importlib
import inspect
import io
import logging as python_logging
import os
import re

import gin

from vlae_tf import configs
from vlae_tf import errors

BASE_GIN = configs.BASE_GIN

# {old full gin name: today's}: the configurables whose gin module was not their defining module's
# before the names were made one per module (the shared `networks`, `pixelcnn` and `flows` names,
# the `user_images` of data/datasets.py, the package-level `vlae_tf.VLAE`).
RENAMED = {
    'vlae_tf.networks.ResNetBlock': 'vlae_tf.blocks.ResNetBlock',
    'vlae_tf.networks.DenseNetBlock': 'vlae_tf.blocks.DenseNetBlock',
    'vlae_tf.networks.Upsample': 'vlae_tf.blocks.Upsample',
    'vlae_tf.networks.BinaryResNetEncoder': 'vlae_tf.encoders.BinaryResNetEncoder',
    'vlae_tf.networks.SpatialResNetEncoder': 'vlae_tf.encoders.SpatialResNetEncoder',
    'vlae_tf.networks.SpatialDenseNetEncoder': 'vlae_tf.encoders.SpatialDenseNetEncoder',
    'vlae_tf.networks.BinaryResNetDecoder': 'vlae_tf.context_networks.BinaryResNetDecoder',
    'vlae_tf.networks.SpatialResNetDecoder': 'vlae_tf.context_networks.SpatialResNetDecoder',
    'vlae_tf.networks.SpatialDenseNetDecoder': 'vlae_tf.context_networks.SpatialDenseNetDecoder',
    'vlae_tf.pixelcnn.GatedPixelCNN': 'vlae_tf.gated_pixelcnn.GatedPixelCNN',
    'vlae_tf.pixelcnn.GatedResNetPixelCNN': 'vlae_tf.gated_resnet_pixelcnn.GatedResNetPixelCNN',
    'vlae_tf.flows.MaskedConvShiftAndLogScale': 'vlae_tf.conv_flows.MaskedConvShiftAndLogScale',
    'vlae_tf.flows.ConvAutoregressiveFlow': 'vlae_tf.conv_flows.ConvAutoregressiveFlow',
    'vlae_tf.flows.ConvAutoregressiveFlowPrior': 'vlae_tf.conv_flows.ConvAutoregressiveFlowPrior',
    'vlae_tf.datasets.user_images': 'vlae_tf.user_images.user_images',
    'vlae_tf.VLAE': 'vlae_tf.vlae.VLAE',
}


def _spellings(old, new):
  """(old spelling, new spelling) pairs: each way a config may name `old` with its module, and the
  same number of trailing components of `new` (`networks.X` -> `encoders.X`, `vlae_tf.networks.X`
  -> `vlae_tf.encoders.X`). A bare class name (`X`) is the same in both and needs no rewrite."""
  old_parts, new_parts = old.split('.'), new.split('.')
  return [('.'.join(old_parts[-count:]), '.'.join(new_parts[-count:]))
          for count in range(2, len(old_parts) + 1)]


_SPELLINGS = dict(pair for old, new in RENAMED.items() for pair in _spellings(old, new))
# A spelling is a whole selector: not preceded by a name character or a dot (so `pixelcnn.X` is not
# found inside `gated_resnet_pixelcnn.X` or `vlae_tf.pixelcnn.X`), not followed by a name
# character (`flows.ConvAutoregressiveFlow` is not inside `flows.ConvAutoregressiveFlowPrior`).
# Longest first, so that `vlae_tf.networks.X` is rewritten whole.
_OLD_NAME = re.compile(r'(?<![\w.])(' + '|'.join(
    re.escape(spelling) for spelling in sorted(_SPELLINGS, key=len, reverse=True)) + r')(?!\w)')


def current_names(config_text):
  """`config_text` (gin) with every old name of RENAMED written as today's name.

  Rewrites references (`@networks.BinaryResNetEncoder()`) and binding keys
  (`networks.BinaryResNetEncoder.filters = ...`, `scope/networks.X.y`) alike; text that already uses
  today's names comes back unchanged. Every reader of a saved config (config.gin of a run directory
  or of a pretrained model) parses it through this function, and the resume check compares the
  saved config with a new one through it, so runs started under the old names load and resume.
  """
  return _OLD_NAME.sub(lambda match: _SPELLINGS[match.group(1)], config_text)


class _DropGinPathMisses(python_logging.Filter):
  """Drops gin's "Path not found" errors: logged while it tries each search path in turn."""

  def filter(self, record):
    return not (record.pathname.endswith('resource_reader.py') and
                record.getMessage().startswith('Path not found'))


@contextlib.contextmanager
def _quiet_gin_search():
  root = python_logging.getLogger()
  quiet = _DropGinPathMisses()
  root.addFilter(quiet)
  try:
    yield
  finally:
    root.removeFilter(quiet)


def _did_you_mean(name, candidates):
  close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
  return f' (did you mean {", ".join(close)}?)' if close else ''


def _configurable_names():
  """Registered gin configurables, by short and full name."""
  names = set()
  for selector, _ in gin.config._REGISTRY.items():  # pylint: disable=protected-access
    names.add(selector)
    names.add(selector.split('.')[-1])
  return names


def _parameter_names(configurable_name):
  try:
    configurable = gin.config._REGISTRY.get_match(configurable_name)  # pylint: disable=protected-access
  except Exception:  # pylint: disable=broad-except
    return []
  if configurable is None:
    return []
  function = configurable.wrapped
  if inspect.isclass(function):
    function = function.__init__
  try:
    return [name for name in inspect.signature(function).parameters if name != 'self']
  except (TypeError, ValueError):
    return []


def gin_suggestion(message):
  """' (did you mean ...?)' for gin's unknown-configurable and unknown-parameter errors."""
  match = re.search(r"No configurable matching '([^']+)'", message)
  if match:
    return _did_you_mean(match.group(1), _configurable_names())
  match = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", message)
  if match:
    return _did_you_mean(match.group(2), _parameter_names(match.group(1)))
  return ''


def register_configurables():
  """Imports every module that registers a gin name (vlae_tf/training/configurables.py), so that
  a gin file or a run's config.gin can name any of them. Imported by name: this base module (and
  runs/, which reads configs) stays below the packages whose names it registers."""
  importlib.import_module('vlae_tf.training.configurables')


class _TextWithCurrentNames(io.StringIO):
  """A gin file's text through `current_names`, named by its path (for gin's error locations)."""

  def __init__(self, path):
    with open(path) as f:
      super().__init__(current_names(f.read()))
    self.name = path


@contextlib.contextmanager
def _reading_current_names():
  """Within it, gin reads every config file (and the files they include) through
  `current_names`: a run's saved config.gin given as --gin_file, as a resumed run may be.

  It is then gin's only reader. gin's other one looks an include such as 'models/vlae_binary.gin'
  up as a Python package's resource first, and crashes (a TypeError) when the current directory or
  sys.path holds a plain folder of that name, 'models/' in a user's project; the shipped configs
  are files under configs.search_path(), which gin tries next.
  """
  readers = gin.config._FILE_READERS  # pylint: disable=protected-access  (tried in order)
  saved = list(readers)
  readers[:] = [(_TextWithCurrentNames, os.path.isfile)]
  try:
    yield
  finally:
    readers[:] = saved


def parse_gin(gin_files=(), gin_params=(), base=True, after_base='', check_macros=True):
  """Parses base.gin (if `base`), then `after_base` (gin text: the model bin/train chose for the
  data, data/model_choice.py), then `gin_files`, then `gin_params`, strictly.

  Files are found as given, or by name among the shipped configs (`mnist_vlae.gin`,
  `gin/mnist_vlae.gin`, `models/vlae_binary.gin`), see vlae_tf/configs.py. `check_macros=False`
  skips the check that every macro of `gin_params` is used (a first parse before the model is
  chosen). Old gin names (RENAMED) are read as today's, in files and bindings alike.
  """
  register_configurables()
  gin.clear_config()
  search_path = configs.search_path()
  gin.add_config_file_search_path(search_path)
  files = [os.path.join(search_path, BASE_GIN)] if base else []
  for name in gin_files or []:
    path = configs.resolve(name)
    if path is None:
      raise errors.CliError(f'gin file not found: {name} (looked in . and {search_path})'
                     f'{_did_you_mean(name, configs.names())}')
    files.append(path)
  try:
    with _quiet_gin_search(), _reading_current_names():
      if after_base:
        gin.parse_config_files_and_bindings(files[:1] if base else [],
                                            [current_names(after_base)],
                                            skip_unknown=False, finalize_config=False)
        files = files[1:] if base else files
      gin.parse_config_files_and_bindings(
          files, [current_names(param) for param in gin_params or []], skip_unknown=False)
  # gin raises ValueError, SyntaxError, IOError, TypeError...
  except Exception as error:  # pylint: disable=broad-except
    message = ' '.join(str(error).split())
    raise errors.CliError(f'bad gin config: {message}{gin_suggestion(message)}') from error
  if check_macros:
    _check_macros_are_used(gin_params)


def _referenced_macros(value, found):
  """Adds the names of the macros that a bound value refers to (%NAME), recursively."""
  if isinstance(value, gin.config.ConfigurableReference):
    selector = value.scoped_selector
    if selector.endswith('gin.macro'):
      found.add(selector.rsplit('/', 1)[0].split('/')[-1])
  elif isinstance(value, dict):
    for item in value.values():
      _referenced_macros(item, found)
  elif isinstance(value, (list, tuple, set)):
    for item in value:
      _referenced_macros(item, found)
  return found


def _check_macros_are_used(gin_params):
  """A macro bound on the command line that no binding uses is a typo: CliError with suggestions.

  gin takes `TRAIN_STEP = 150` as a new macro that nothing reads, so without this check a
  misspelled macro would silently leave the value it meant to change as it was.
  """
  config = gin.config._CONFIG  # pylint: disable=protected-access
  defined, used = set(), set()
  for (scope, selector), parameters in config.items():
    if selector == 'gin.macro':
      defined.add(scope.split('/')[-1])
    _referenced_macros(parameters, used)
  for param in gin_params or ():
    name = param.split('=', 1)[0].strip()
    if name and '.' not in name and '/' not in name and name in defined and name not in used:
      raise errors.CliError(f'gin macro {name} is bound by --gin_param but nothing uses it (a typo?)'
                     f'{_did_you_mean(name, used)}; the macros in use: '
                     f'{", ".join(sorted(used))}.')
