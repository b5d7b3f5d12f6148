"""Training the runs of a bin/reproduce table: each in a `bin/train` subprocess, resumably, with one
progress line (run, phase, table ETA) for the whole table.

A run reaches its step budget (`Settings.train_steps`, or its gin file's own schedule) and keeps a
checkpoint about every 1/`CURVE_POINTS` of it, for the NLL-against-steps curve; a run that reached
its budget is not trained again. reproduce.py evaluates the runs and writes the table.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from typing import List, Optional, Sequence

import gin

from vlae_tf import code_version
from vlae_tf import errors
from vlae_tf import files
from vlae_tf import gin_parsing
from vlae_tf import progress as progress_lib
from vlae_tf import time_limits
from vlae_tf.experiments import paper
from vlae_tf.runs import checkpoints
from vlae_tf.runs import run_config

RUN_RECORD = 'reproduce_run.json'
# Under a time limit, a training subprocess starts only with at least this much time left.
MIN_TRAINING_SECONDS = 60
CURVE_POINTS = 12
_STEP_LINE = re.compile(r'step (\d+)/(\d+)')


@dataclasses.dataclass(frozen=True)
class Settings:
  """What is the same for every run of a table."""
  train_steps: Optional[int] = None  # None: each gin file's own schedule
  split: str = 'test'
  num_samples: Optional[int] = None  # K; None: the evaluation default of the data kind
  max_examples: Optional[int] = 1000  # evenly spread subset of the split; None: all
  seed: int = 0  # seed of the importance samples
  curve_num_samples: int = 32
  curve_max_examples: Optional[int] = 100
  batch_size: int = 50  # evaluation batch
  data_dir: Optional[str] = None
  gin_files: Sequence[str] = ()  # added after every experiment file (e.g. testing/tiny.gin)
  gin_params: Sequence[str] = ()  # added after the files, for every run
  select_split: Optional[str] = None  # model selection: the row's checkpoint is the curve's best


class TableProgress:
  """One progress line for the whole table on stderr: run i/n, phase, table ETA.

  Lines of their own (`progress.ProgressLine`, never rewritten in place: the harness's log).
  """

  def __init__(self, names: Sequence[str], stream=None, min_interval: float = 10.0):
    self.names = list(names)
    self.line = progress_lib.ProgressLine(stream, min_interval, in_place=False)
    self.seconds_per_step = None  # measured while training
    self.seconds_per_evaluation = None  # measured after the first evaluation
    self.remaining_steps = {}  # name -> training steps still to run
    self.remaining_evaluations = set(names)

  def eta_text(self) -> str:
    """The time left for the table: '1:02:03', or the known part and what is not timed yet
    ('1:02:03 + 2 evaluations' before the first evaluation has been timed), or '?'."""
    eta = 0.0
    untimed = []
    steps = sum(self.remaining_steps.values())
    if steps:
      if self.seconds_per_step is None:
        untimed.append('training')
      else:
        eta += steps * self.seconds_per_step
    evaluations = len(self.remaining_evaluations)
    if evaluations:
      if self.seconds_per_evaluation is None:
        untimed.append(f'{evaluations} evaluation{"s" if evaluations > 1 else ""}')
      else:
        eta += evaluations * self.seconds_per_evaluation
    if not untimed:
      return progress_lib.format_duration(eta)
    if eta:
      return f'{progress_lib.format_duration(eta)} + {" + ".join(untimed)}'
    return '?'

  def show(self, index: int, phase: str, force: bool = False):
    eta_text = self.eta_text()
    self.line.show(f'reproduce: run {index + 1}/{len(self.names)} {self.names[index]}: {phase}; '
                   f'table ETA {eta_text}', force=force)


def target_steps(gin_file: str, settings: Settings, run_dir: str) -> int:
  """The run's train.train_steps under the table's settings (parses gin, then clears it).

  Raises:
    ReproduceError: run_dir holds a run whose config differs from this one in more than
      bookkeeping (it would be reported under settings it was not trained with).
  """
  gin_parsing.parse_gin([gin_file] + list(settings.gin_files), train_params(settings))
  try:
    steps = int(query(gin.query_parameter('train.train_steps')))
    config = gin.config_str()
  finally:
    gin.clear_config()
  existing = os.path.join(run_dir, run_config.CONFIG_FILE)
  if os.path.isfile(existing):
    with open(existing) as f:
      differences = run_config.config_differences(f.read(), config)
    if differences:
      raise errors.ReproduceError(
          f'{run_dir} holds a run of another config ({len(differences)} binding(s) differ: '
          f'{"; ".join(differences[:3])}): use another --output_dir, or the same --gin_file and '
          '--gin_param as the run was started with.')
  return steps


def query(value):
  """A queried gin value with macro references (`%TRAIN_STEPS`) followed."""
  while isinstance(value, gin.config.ConfigurableReference) and (
      value.scoped_selector.endswith('gin.macro')):
    value = gin.query_parameter('%' + value.scoped_selector.rsplit('/', 1)[0])
  return value


def train_params(settings: Settings, steps: Optional[int] = None) -> List[str]:
  params = list(settings.gin_params)
  if settings.train_steps is not None:
    params.append(f'TRAIN_STEPS = {settings.train_steps}')
  if steps is not None:  # bookkeeping bindings: they never block resuming
    params += [f'train.checkpoint_every = {max(1, steps // CURVE_POINTS)}',
               'train.max_checkpoints_to_keep = 1000']
  return params


def step_checkpoint(run_dir: str, steps: int) -> Optional[str]:
  """The run's intact checkpoint at `steps` (or, past it, the newest intact one at or before it),
  or None. A damaged one is named in a warning and left to bin/train, which moves it aside and
  trains again from the newest intact one (checkpoints.prepare_resume)."""
  if not os.path.isdir(run_dir) or not checkpoints.has_checkpoints(run_dir):
    return None
  kept = [path for path, _ in checkpoints.intact_run_checkpoints(
      run_dir, left_out='left out (bin/train moves it aside and trains again)')]
  at_or_before = [path for path in kept if checkpoints.checkpoint_step(path) <= steps]
  if not at_or_before:
    return None
  return max(at_or_before, key=checkpoints.checkpoint_step)


def train_run(gin_file: str, run_dir: str, log_path: str, settings: Settings, steps: int,
              progress: TableProgress, index: int, time_limit=None) -> bool:
  """Trains (or resumes) one run in a `bin/train` subprocess until `steps`; True if it trained.

  With `time_limit` (a `time_limits.TimeLimit`), the subprocess gets what is left of it as its
  own --time_limit.

  Raises:
    ReproduceError: the training process failed (its log names the problem).
    TimeLimitReached: the subprocess stopped at the time limit (its checkpoint saved).
  """
  name = paper.experiment_name(gin_file)
  done = step_checkpoint(run_dir, steps)
  if done is not None and checkpoints.checkpoint_step(done) >= steps:
    progress.remaining_steps[name] = 0
    return False
  os.makedirs(run_dir, exist_ok=True)
  record_path = os.path.join(run_dir, RUN_RECORD)
  if not os.path.exists(record_path):
    files.atomic_write_text(record_path, json.dumps(
        {'commit': code_version.commit(), 'gin_file': gin_file, 'gin_files': list(settings.gin_files),
         'gin_params': train_params(settings), 'started_unix_time': time.time()},
        indent=2) + '\n')
  command = [sys.executable, '-c', "from vlae_tf import cli; cli.run_binary('train')",
             f'--model_dir={run_dir}']
  for path in [gin_file] + list(settings.gin_files):
    command.append(f'--gin_file={path}')
  for param in train_params(settings, steps):
    command.append(f'--gin_param={param}')
  if settings.data_dir:
    command.append(f'--data_dir={settings.data_dir}')
  if time_limit is not None:
    left = int(time_limit.remaining())
    if left < MIN_TRAINING_SECONDS:  # Start-up and tracing alone take longer.
      raise time_limits.limit_reached(time_limit, f'{name} not resumed, {left} s left')
    command.append(f'--time_limit={left}s')
  first_step, first_time = None, None
  with open(log_path, 'a') as log:
    log.write(f'# {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} {" ".join(command)}\n')
    log.flush()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.PIPE, text=True,
                               bufsize=1)
    progress.show(index, 'training starts', force=True)
    for line in process.stderr:
      log.write(line)
      match = _STEP_LINE.search(line)
      if match:
        step, total = int(match.group(1)), int(match.group(2))
        now = time.time()
        if first_step is None:  # after compilation: rates count from here
          first_step, first_time = step, now
        elif step > first_step:
          progress.seconds_per_step = (now - first_time) / (step - first_step)
        progress.remaining_steps[name] = max(total - step, 0)
        progress.show(index, f'train step {step}/{total}')
    returncode = process.wait()
  if returncode == time_limits.EXIT_STATUS:
    reached = progress.remaining_steps.get(name)
    at = '' if reached is None else f' ({steps - reached} of {steps} steps)'
    raise time_limits.limit_reached(time_limit, f'{name} trained{at}, checkpoint saved')
  if returncode:
    raise errors.ReproduceError(
        f'Training {name} failed (exit status {returncode}); see {log_path}.')
  progress.remaining_steps[name] = 0
  return True
