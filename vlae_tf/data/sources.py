"""Where a run's data comes from: <model_dir>/data_source.json, written by bin/train at start.

    {"dataset": NAME, "data_dir": an absolute path, or null (tensorflow-datasets)}

and for one's own images (user_images.py) also their shape, pixel kind, split sizes and classes.
The readers of the run (eval, sample, inspect) use the recorded directory unless --data_dir says
otherwise (`reader_data_dir`). A packaged pretrained model's record has "packaged": true and no
directory: its readers use their own --data_dir, $VLAE_DATA_DIR or tensorflow-datasets, without a
line about the difference.
"""

import json
import os

from absl import logging

from vlae_tf import files
from vlae_tf.data import catalogue
from vlae_tf.data import user_images

DATA_SOURCE_FILE = 'data_source.json'


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
  if source.get('packaged'):  # A packaged model's data are wherever its reader keeps them.
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
