"""Opening a run: its config, a checkpoint, and the model with that checkpoint's averaged weights.

Every reader of a run (vlae_tf.load and load_pretrained, bin/eval, bin/sample, bin/export,
bin/inspect, bin/compress, pretrained packaging) opens it the same way, here:

    run = opening.open_run(model_dir)            # the newest intact checkpoint
    run = opening.open_run(model_dir, 6000)      # or a step, or a prefix <model_dir>/ckpt-N
    run.model, run.step, run.checkpoint_path, run.dataset, run.config_path

in three steps, each with its one-line errors: parse <model_dir>/config.gin strictly
(`run_config.load_run_config`), choose the checkpoint (`checkpoints.resolve_checkpoint`: the
newest intact one, a damaged newer one named in a warning), then build the model from the config
and restore its Polyak-averaged weights (`restore_averaged_model`), under a strategy's scope when
one is given. A pretrained model is a run directory too: vlae_tf/pretrained/catalogue.py checks its
files and gives the directory (`catalogue.run_directory`), which is opened like any other.
"""

import contextlib
import dataclasses
from typing import Any, Optional

import gin
import tensorflow as tf

from vlae_tf import errors
from vlae_tf.models import vlae as model_lib
from vlae_tf.runs import checkpoints
from vlae_tf.runs import run_config


@dataclasses.dataclass(frozen=True)
class Run:
  """An opened run: its model with the averaged weights of one checkpoint.

  Attributes:
    model_dir: the run directory.
    config_path: <model_dir>/config.gin, parsed into the process's gin config.
    checkpoint_path: the restored checkpoint's prefix, <model_dir>/ckpt-N.
    step: its training step N.
    model: the `VLAE`, built from the config and restored.
    dataset: the run's dataset (train.dataset, or the reader's --dataset under
      `run_config.reading_dataset`); None when the config binds none.
    strategy: the `tf.distribute.Strategy` that owns the model's variables, or None.
  """
  model_dir: str
  config_path: str
  checkpoint_path: str
  step: int
  model: Any
  dataset: Optional[str]
  strategy: Any = None

  def needs_dataset(self) -> str:
    """The dataset, for readers that read images; RunError when the config binds none."""
    if self.dataset is None:
      raise errors.RunError(f'{self.config_path} binds no train.dataset: pass --dataset.')
    return self.dataset


def open_run(model_dir, checkpoint=None, strategy=None, precision=None) -> Run:
  """Parses the run's config, resolves `checkpoint` and restores its averaged weights.

  Args:
    model_dir: a run directory written by bin/train (or a pretrained model's verified copy).
    checkpoint: None (the newest intact one), a step N, or a prefix such as <model_dir>/ckpt-N.
    strategy: the `tf.distribute.Strategy` whose scope should own the model's variables, a
      function of no arguments that makes it (called once the config is parsed, so that the run's
      bindings apply: `distribution.make_strategy`), or None.
    precision: None (the run's `VLAE.precision`, that of its latest piece), or 'float32',
      'mixed_bfloat16' or 'mixed_float16' to compute in instead (the weights are float32 in
      every precision: layers/precision.py).

  Returns:
    The `Run`.

  Raises:
    ConfigNotFoundError, DamagedConfigError: no run directory or config.gin, or a damaged one.
    RunError: no intact checkpoint, or no such checkpoint.
  """
  config_path = run_config.load_run_config(model_dir)
  if precision is not None:
    with gin.unlock_config():
      gin.bind_parameter('VLAE.precision', precision)
  checkpoint_path = checkpoints.resolve_checkpoint(model_dir, checkpoint)
  try:
    dataset = run_config.run_dataset()
  except errors.RunError:
    dataset = None
  if callable(strategy) and not isinstance(strategy, tf.distribute.Strategy):
    strategy = strategy()
  with strategy.scope() if strategy else contextlib.nullcontext():
    model, step = restore_averaged_model(checkpoint_path)
  return Run(model_dir=model_dir, config_path=config_path, checkpoint_path=checkpoint_path,
             step=step, model=model, dataset=dataset, strategy=strategy)


def restore_averaged_model(checkpoint_path):
  """Builds the model from the parsed gin config and restores a checkpoint's Polyak averages.

  Call under the strategy scope that should own the variables (or under none), after
  `run_config.load_run_config`; the checkpoint is restored as it is (check it with
  `checkpoints.resolve_checkpoint`). Returns (model, step).
  """
  model = model_lib.make_model()
  model_lib.create_variables(model)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
  status = tf.train.Checkpoint(step=step, averaged_model=model).restore(checkpoint_path)
  status.expect_partial()
  status.assert_existing_objects_matched()
  return model, int(step.numpy())
