"""Strict gin parsing for the binaries: shipped configs found by name, one-line errors with
suggestions for a misspelled file, configurable, parameter or macro.

`parse_gin` reads base.gin, then the --gin_file files in order, then the --gin_param bindings, all
strictly: an unknown configurable or parameter is an error (gin's own), and so is a macro that a
--gin_param binds but nothing uses (`TRAIN_STEP=150` for TRAIN_STEPS), which gin accepts silently.
"""

import contextlib
import difflib
import importlib
import inspect
import logging as python_logging
import os
import re

import gin

from vlae_tf import configs
from vlae_tf import errors

BASE_GIN = configs.BASE_GIN


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


def parse_gin(gin_files=(), gin_params=(), base=True, after_base='', check_macros=True):
  """Parses base.gin (if `base`), then `after_base` (gin text: the model bin/train chose for the
  data, data/model_choice.py), then `gin_files`, then `gin_params`, strictly.

  Files are found as given, or by name among the shipped configs (`mnist_vlae.gin`,
  `gin/mnist_vlae.gin`, `models/vlae_binary.gin`), see vlae_tf/configs.py. `check_macros=False`
  skips the check that every macro of `gin_params` is used (a first parse before the model is
  chosen).
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
    with _quiet_gin_search():
      if after_base:
        gin.parse_config_files_and_bindings(files[:1] if base else [], [after_base],
                                            skip_unknown=False, finalize_config=False)
        files = files[1:] if base else files
      gin.parse_config_files_and_bindings(files, list(gin_params or []), skip_unknown=False)
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
