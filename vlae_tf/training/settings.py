"""The settings of a training run: `TrainSettings`, the gin configurable named `train`.

Every shipped gin file and the config.gin of every run bind `train.<setting> = ...`; those names
are the fields of `TrainSettings`, which gin registers under the name `train`, so the bindings keep
their meaning. Constructing it reads them:

    settings = TrainSettings()                       # every field from gin, else its default
    settings = dataclasses.replace(settings, train_steps=10)   # a copy; gin is not read again

A construction is what puts the `train.*` bindings into `gin.operative_config_str()` (the loop
constructs one when it is given none). `train_settings()` reads the bindings without constructing
(no required `train.dataset`, nothing recorded); bin/benchmark builds its trainer from them.

This module imports only vlae_tf.errors: `configurables` imports it for the gin name, and the loop,
the benchmark and the tests read it, without an import circle.
"""

import dataclasses
from typing import Optional, Union

import gin

from vlae_tf import errors

# The `TrainSettings` fields that `trainer.make_trainer` takes (the trainer's hyperparameters stay
# bound on `train` in gin).
TRAINER_SETTINGS = ('seed', 'learning_rate', 'ema_decay', 'ema_warmup', 'free_bits_lambda',
                    'soft_free_bits', 'jit_compile', 'accumulation_steps')
# `train.jit_compile`: 'auto' is XLA on when the strategy's devices are GPUs, off on CPUs.
JIT_COMPILE_VALUES = ('auto', True, False)


def check_jit_compile(value):
  """Returns `value` if it is one of JIT_COMPILE_VALUES, else raises CliError (one line)."""
  if isinstance(value, bool) or value == 'auto':
    return value
  raise errors.CliError(f"train.jit_compile = {value!r}: it must be one of 'auto', True, False "
                        "('auto': XLA on GPUs, off on CPUs).")


@gin.configurable('train')
@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """The hyperparameters and bookkeeping of `loop.train`; gin binds them as `train.<field>`.

  Constructing it reads the gin bindings of `train` for every field not passed (a gin
  configurable); `dataset` has no default.

  Attributes:
    dataset: the dataset name for `datasets.load`.
    batch_size: the global batch, a multiple of the number of replicas (paper: 128).
    train_steps: the total number of steps (a resumed run stops here too).
    learning_rate: Adamax learning rate (paper: 0.002).
    ema_decay: Polyak averaging decay (paper: 0.998).
    ema_warmup: use min(ema_decay, (1 + n) / (10 + n)) after n updates (tf.train's
      ExponentialMovingAverage with num_updates); without it, 0.998 keeps 67% of the random
      initial weights in the averages after 200 steps. Not in the paper; False for a plain EMA.
    free_bits_lambda: free bits, nats per data dimension, on the batch-mean KL (paper: 0.01).
    soft_free_bits: use soft free bits (the paper's CIFAR-10 runs) with the target
      free_bits_lambda * D instead of free bits; configure `SoftFreeBits` in gin (e.g.
      `SoftFreeBits.rate = 1.05`).
    checkpoint_every: steps between checkpoints (one is also written at the end).
    summary_every: steps between scalar and image summaries (images: at most
      `summaries.IMAGE_BUDGET` of the wall time) and progress lines (which also come at least
      every `progress.PROGRESS_SECONDS`).
    eval_every: steps between validation ELBOs (averaged weights); 0: only at the end.
    eval_examples: validation images (a strided subset of `eval_split`); None: all; 0: no
      validation (image summaries then reconstruct training images).
    eval_batch_size: validation batch (default: `batch_size`).
    num_summary_images: samples in image summaries (and a quarter of it reconstructed, 3 times
      each); 0 disables them.
    train_split: the split to train on.
    eval_split: the split to validate on.
    shuffle_buffer: shuffle buffer (default: the whole training set).
    max_checkpoints_to_keep: checkpoints kept by the CheckpointManager.
    seed: the seed of every random draw (data order, model noise).
    deterministic: call `tf.config.experimental.enable_op_determinism()` (process-wide): with the
      same seed, two runs on the same CPU hardware give the same losses step for step, and a
      killed and resumed run reaches the uninterrupted run's weights. Slower on GPUs; see
      docs/reliability.md.
    max_consecutive_bad_steps: a step with a non-finite loss or gradient is skipped (and counted
      in the `bad_steps` summary); after this many in a row, training stops with NonFiniteError
      (None: never).
    jit_compile: compile each replica's forward and backward pass (and evaluation's statistics)
      with XLA: 'auto' (on when the strategy's devices are GPUs, off on CPUs, where XLA measured
      2-3x slower), True or False (accelerators.py).
    accumulation_steps: split each replica's batch into this many micro-batches and sum their
      gradients before one optimizer step (gradient accumulation): the step of `batch_size`
      images in the memory of `batch_size / accumulation_steps` (training/replica_gradients.py).
  """

  dataset: str = gin.REQUIRED
  batch_size: int = 128
  train_steps: int = 100_000
  learning_rate: float = 2e-3
  ema_decay: float = 0.998
  ema_warmup: bool = True
  free_bits_lambda: float = 0.01
  soft_free_bits: bool = False
  checkpoint_every: int = 1000
  summary_every: int = 100
  eval_every: int = 5000
  eval_examples: Optional[int] = 1000
  eval_batch_size: Optional[int] = None
  num_summary_images: int = 16
  train_split: str = 'train'
  eval_split: str = 'valid'
  shuffle_buffer: Optional[int] = None
  max_checkpoints_to_keep: int = 3
  seed: int = 0
  deterministic: bool = False
  max_consecutive_bad_steps: Optional[int] = 10
  jit_compile: Union[str, bool] = 'auto'
  accumulation_steps: int = 1

  def __post_init__(self):
    """Checks the budget and the intervals before anything runs: one line naming the setting."""
    at_least = {'train_steps': 1, 'batch_size': 1, 'checkpoint_every': 0, 'summary_every': 0,
                'eval_every': 0, 'num_summary_images': 0, 'max_checkpoints_to_keep': 1,
                'accumulation_steps': 1}
    for name, minimum in at_least.items():
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        macro = {'train_steps': ' (--gin_param=TRAIN_STEPS=N)',
                 'batch_size': ' (--gin_param=BATCH_SIZE=N)'}.get(name, '')
        raise errors.CliError(f'train.{name} = {value!r}: it must be an integer >= {minimum}'
                              f'{macro}.')
    for name in ('eval_examples', 'eval_batch_size', 'shuffle_buffer',
                 'max_consecutive_bad_steps'):
      value = getattr(self, name)
      if value is not None and (not isinstance(value, int) or value < (
          0 if name == 'eval_examples' else 1)):
        raise errors.CliError(f'train.{name} = {value!r}: it must be None or an integer >= '
                              f'{0 if name == "eval_examples" else 1}.')
    check_jit_compile(self.jit_compile)
    if self.batch_size % self.accumulation_steps:
      raise errors.CliError(
          f'train.batch_size = {self.batch_size} is not a multiple of train.accumulation_steps = '
          f'{self.accumulation_steps}: choose an accumulation that divides the batch.')

  def for_budget(self):
    """A copy whose intervals scale with the budget, so that a short run is worth looking at:

        summary_every    = min(configured, max(2, train_steps // 10))   about 10 summaries
        eval_every       = min(configured, max(2, train_steps // 4))    about 4 validations
        checkpoint_every = min(configured, max(2, train_steps // 4))    about 4 checkpoints

    (0, "only at the end", stays 0). A 200-step run of base.gin's 100/5000/1000 gets summaries
    every 20 steps and validations and checkpoints every 50; a long run keeps its configured
    intervals. `loop.train` applies it."""
    def scaled(configured, count):
      return min(configured, max(2, self.train_steps // count)) if configured else configured
    return dataclasses.replace(
        self, summary_every=scaled(self.summary_every, 10),
        eval_every=scaled(self.eval_every, 4),
        checkpoint_every=scaled(self.checkpoint_every, 4))

  def trainer_kwargs(self):
    """{name: value} of the fields that `trainer.make_trainer` takes (TRAINER_SETTINGS)."""
    return {name: getattr(self, name) for name in TRAINER_SETTINGS}

  @property
  def validates(self):
    """Whether the run has validation passes (`eval_examples` != 0)."""
    return self.eval_examples != 0


def train_settings():
  """{setting: value} as the parsed gin config binds `train` (macros resolved), else the default.

  What `TrainSettings()` would hold, read without constructing it: an unbound `dataset` is
  `gin.REQUIRED` instead of an error, and nothing enters the operative config (bin/benchmark reads
  its settings here).
  """
  bindings = gin.get_bindings('train', resolve_references=True)
  return {field.name: bindings.get(field.name, field.default)
          for field in dataclasses.fields(TrainSettings)}


def trainer_settings():
  """The `train_settings` that `trainer.make_trainer` takes (TRAINER_SETTINGS)."""
  settings = train_settings()
  return {name: settings[name] for name in TRAINER_SETTINGS}
