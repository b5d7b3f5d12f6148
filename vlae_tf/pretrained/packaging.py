"""Making a packaged model (catalogue.py's layout) from a training run: for the maintainers.

    python -c "from vlae_tf.pretrained import packaging; packaging.package(
        'runs/mnist_vlae', 'static_mnist', data_dir='../shared/data',
        command='bin/train ...', commit='abc1234', evaluation={...})"

`package` keeps the Polyak-averaged weights and the step of one checkpoint (what every reader
restores: `opening.open_run`), the run's config.gin byte for byte and its dataset, then evaluates
the slim copy on a check set (`check_examples` evenly spread test images, K = `check_samples`,
importance seed 0, one replica: `check_strategy`), so that provenance.json records an NLL that the
packaged files themselves give: tests/pretrained/packaging_test.py recomputes it.

A model trained in a precision that only some CPUs run fast (mixed_bfloat16: fast with AMX,
emulated without) can be packaged to compute in another (`precision='float32'`): the one
`VLAE.precision` binding of its config.gin is rewritten, and provenance.json records both.
"""

import json
import os
import re
import shutil
import tempfile
import time
from typing import Dict, Optional

import tensorflow as tf

from vlae_tf import files
from vlae_tf.evaluation import evaluator
from vlae_tf.pretrained import catalogue
from vlae_tf.runs import checkpoints
from vlae_tf.runs import opening
from vlae_tf.runs import run_config
from vlae_tf.data import sources


_PRECISION_BINDING = re.compile(r"^VLAE\.precision = '([a-z_0-9]+)'$", re.MULTILINE)


def config_precision(config_text: str) -> str:
  """The precision a run's config.gin binds (float32 when it binds none: VLAE's default)."""
  bindings = _PRECISION_BINDING.findall(config_text)
  return bindings[-1] if bindings else 'float32'


def with_precision(config_text: str, precision: str) -> str:
  """config_text computing in `precision`: its VLAE.precision binding replaced, or one added."""
  binding = f"VLAE.precision = '{precision}'"
  if _PRECISION_BINDING.search(config_text):
    return _PRECISION_BINDING.sub(binding, config_text)
  return config_text.rstrip('\n') + f'\n\n{binding}\n'


def write_slim_run(model_dir: str, output_dir: str, checkpoint=None,
                   precision: Optional[str] = None) -> int:
  """Writes config.gin, data_source.json and the averaged weights of a checkpoint to output_dir.

  The config is the run's byte for byte, or with its precision binding rewritten to `precision`.

  Returns:
    The checkpoint's training step.
  """
  run = opening.open_run(model_dir, checkpoint)
  model, step = run.model, run.step
  with open(os.path.join(model_dir, run_config.CONFIG_FILE)) as f:
    config_text = f.read()
  if precision is not None:
    config_text = with_precision(config_text, precision)
  files.atomic_write_text(os.path.join(output_dir, run_config.CONFIG_FILE), config_text)
  source = sources.recorded_data_source(model_dir) or {}
  files.atomic_write_text(os.path.join(output_dir, sources.DATA_SOURCE_FILE), json.dumps(
      {'dataset': source.get('dataset'), 'data_dir': None, 'packaged': True}) + '\n')
  step_variable = tf.Variable(step, dtype=tf.int64, trainable=False, name='step')
  slim = tf.train.Checkpoint(step=step_variable, averaged_model=model)
  manager = tf.train.CheckpointManager(slim, output_dir, max_to_keep=1,
                                       checkpoint_name=checkpoints.CHECKPOINT_NAME)
  manager.save(checkpoint_number=step)
  return step


def check_strategy() -> tf.distribute.Strategy:
  """One replica on the first CPU: the check's importance noise depends on (seed, batch, replica),
  so it is computed and recomputed on one replica, whatever devices the machine has."""
  return tf.distribute.OneDeviceStrategy('/cpu:0')


def package(model_dir: str, name: str, checkpoint=None, root: Optional[str] = None,
            data_dir: Optional[str] = None, check_examples: int = 100, check_samples: int = 128,
            precision: Optional[str] = None, **provenance_fields) -> Dict:
  """Packages a checkpoint of the run in `model_dir` as pretrained model `name`.

  Args:
    model_dir: a bin/train run directory.
    name: the model's name (--pretrained=name); replaces a packaged model of that name.
    checkpoint: a step or prefix (default: the newest intact checkpoint).
    root: where packaged models live (default: vlae_tf/pretrained/).
    data_dir: where the check set's data are (as bin/eval's --data_dir).
    check_examples, check_samples: the check evaluation (evenly spread test images, K).
    precision: what readers compute in (default: the run's own); the check runs in it too.
    **provenance_fields: recorded as given (commit, command, steps, wall time, evaluations).

  Returns:
    The provenance record written.
  """
  root = root or catalogue.PACKAGE_ROOT
  staging = tempfile.mkdtemp(dir=root, prefix=f'.{name}-')
  files.apply_umask(staging, directory=True)  # mkdtemp's 0700 would hide it from other users.
  scratch = tempfile.mkdtemp(prefix=f'vlae_tf_check_{name}_')
  try:
    with open(os.path.join(model_dir, run_config.CONFIG_FILE)) as f:
      trained_precision = config_precision(f.read())
    step = write_slim_run(model_dir, staging, checkpoint, precision)
    listed = sorted(os.listdir(staging))
    shutil.copytree(staging, scratch, dirs_exist_ok=True)  # Evaluation writes into its run.
    check = evaluator.evaluate(scratch, split='test', num_samples=check_samples,
                               max_examples=check_examples, data_dir=data_dir, seed=0,
                               strategy=check_strategy(), progress=False)
    with open(os.path.join(scratch, evaluator.PER_IMAGE_FILE.format(split='test'))) as f:
      per_image = json.load(f)['values']
    record = dict(provenance_fields)
    source = sources.recorded_data_source(model_dir) or {}
    record.update(
        name=name, dataset=source.get('dataset'), step=step,
        precision=precision or trained_precision, trained_precision=trained_precision,
        source_run=os.path.abspath(model_dir),
        packaged_unix_time=time.time(),
        check={'split': 'test', 'num_examples': check['num_examples'],
               'num_samples': check['num_samples'], 'seed': 0, 'replicas': 1,
               'nll_nats': check['nll_nats'],
               'nll_stderr_nats': check['nll_stderr_nats'], 'elbo_nats': check['elbo_nats'],
               'kl_nats': check['kl_nats'],
               # Every image's values in subset order: any leading part of the check set (a
               # batch of CheckpointEvaluator.batches) can be checked alone (same noise per image).
               'per_image_nll_nats': [round(value, 6) for value in per_image['nll']],
               'per_image_kl_nats': [round(value, 6) for value in per_image['kl']],
               'how': 'evaluator.evaluate(run_directory(NAME), split="test", '
                      f'num_samples={check_samples}, max_examples={check_examples}, seed=0, '
                      'strategy=packaging.check_strategy())'},
        files={file_name: catalogue.sha256(os.path.join(staging, file_name))
               for file_name in listed})
    files.atomic_write_json(os.path.join(staging, catalogue.PROVENANCE_FILE), record)
    target = os.path.join(root, name)
    if os.path.isdir(target):
      shutil.rmtree(target)
    os.rename(staging, target)
    return record
  finally:
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
