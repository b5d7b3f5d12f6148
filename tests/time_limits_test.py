"""--time_limit: durations, the estimate of the next unit of work, and the binaries that stop at it.

The train loop's stop is checked with loop_test.py's fake trainer; bin/train and bin/eval end
to end (exit status 75, one `stopped:` line, the state written, the same command continuing). An
evaluation's pieces equal one run image by image: pieces_test.py.
"""

import json
import os
import subprocess

import numpy as np
import pytest

import binary_runs
import doubles

from vlae_tf import code_version
from vlae_tf import errors
from vlae_tf import time_limits
from vlae_tf.training import controller as controller_lib


@pytest.mark.parametrize('text, seconds', [
    ('2h30m', 9000), ('90m', 5400), ('45s', 45), ('1.5h', 5400), ('1h0m5s', 3605),
    ('02:30:00', 9000), ('5:00', 300), ('1-00:00:00', 86400), ('2-12', 216000), (' 10M ', 600)])
def test_durations(text, seconds):
  assert time_limits.parse_duration(text) == seconds


@pytest.mark.parametrize('text, words', [
    ('0s', 'more than 0 seconds'), ('00:00:00', 'more than 0 seconds'), ('-1h', 'not a duration'),
    ('abc', 'not a duration'), ('', 'not a duration'), ('30m2h', 'not a duration'),
    ('1h1h', 'not a duration'), ('3600', 'give a unit, e.g. 3600s or 3600m')])
def test_bad_durations_are_one_line_with_examples(text, words):
  with pytest.raises(errors.CliError) as raised:
    time_limits.parse_duration(text)
  assert words in str(raised.value) and f'--time_limit={text}:' in str(raised.value)


def test_format_duration_spells_as_the_flag():
  assert [time_limits.format_duration(s) for s in (9000, 45, 3605, 0, 60)] == [
      '2h30m', '45s', '1h0m5s', '0s', '1m']


class Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_a_limit_counts_from_its_start():
  clock = Clock()
  limit = time_limits.TimeLimit(60, start=100.0, clock=clock)
  clock.now = 130.0
  assert limit.elapsed() == 30 and limit.remaining() == 30
  assert limit.allows(30) and not limit.allows(31)
  assert str(limit) == '1m'


def test_the_estimate_is_the_longest_recent_unit_and_write():
  estimate = time_limits.EstimatedWork(reserve=5.0, margin=1.25, window=2, first_write=10.0)
  assert estimate.seconds() is None  # Nothing timed: never a reason to stop.
  estimate.record_unit(8.0)
  assert estimate.seconds() == 8.0 * 1.25 + 10.0 + 5.0
  estimate.record_unit(4.0)
  estimate.record_write(2.0)
  assert estimate.seconds() == 8.0 * 1.25 + 2.0 + 5.0
  estimate.record_unit(4.0)  # 8 s has left the window of two.
  assert estimate.seconds() == 4.0 * 1.25 + 2.0 + 5.0


def test_stop_before_a_unit_that_would_end_after_the_limit():
  clock = Clock()
  limit = time_limits.TimeLimit(100, start=100.0, clock=clock)
  estimate = time_limits.EstimatedWork(reserve=0.0, margin=1.0, first_write=0.0)
  assert not time_limits.stop_before(None, estimate)
  assert not time_limits.stop_before(limit, estimate)  # Nothing timed yet.
  estimate.record_unit(10.0)
  clock.now = 190.0
  assert not time_limits.stop_before(limit, estimate)  # 10 s left: exactly enough.
  clock.now = 190.5
  assert time_limits.stop_before(limit, estimate)


def test_the_controller_stops_before_a_chunk_at_the_time_limit():
  """The first chunk traces and is never timed; after the second, the limit decides."""
  trainer = doubles.FakeTrainer()
  clock = Clock()
  limit = time_limits.TimeLimit(1000, start=100.0, clock=clock)
  calls = []

  def late_after_step_3(chunk):
    if chunk.step == 3:
      clock.now = 100.0 + 999.0  # 1 s left: less than any chunk with its checkpoint.

  controller = controller_lib.Controller(
      trainer, None, [doubles.Recorder('a', calls, late_after_step_3)],
      doubles.no_stop(), train_steps=100, boundaries=(1,), time_limit=limit)
  assert controller.run(0) == (3, controller_lib.TIME_LIMIT)
  assert trainer.chunks == [1, 1, 1]


def test_a_bad_time_limit_is_one_line_before_tensorflow_loads(tmp_path):
  completed = binary_runs.run_binary('eval', f'--model_dir={tmp_path}', '--time_limit=2x')
  assert completed.returncode == 1
  assert completed.stderr.strip() == (
      'error: --time_limit=2x: not a duration; give e.g. 2h30m, 90m, 45s or SLURM\'s 02:30:00.')


def _stopped_line(completed):
  lines = [line for line in completed.stderr.splitlines() if line.startswith('stopped:')]
  assert len(lines) == 1, completed.stderr[-3000:]
  return lines[0]


@pytest.mark.slow
def test_train_stops_at_its_time_limit_with_a_checkpoint_and_status_75(shared_data, tmp_path):
  model_dir = tmp_path / 'run'
  command = ('train', f'--model_dir={model_dir}', *binary_runs.TINY, f'--data_dir={shared_data}',
             '--gin_param=TRAIN_STEPS=100000', '--gin_param=train.eval_every=0',
             '--gin_param=train.summary_every=0', '--time_limit=1s')
  completed = binary_runs.run_binary(*command)
  assert completed.returncode == time_limits.EXIT_STATUS, completed.stderr[-3000:]
  line = _stopped_line(completed)
  # Start-up alone passes the limit: the traced step and one timed step run, then it stops.
  assert line.startswith('stopped: time limit 1s reached after ')
  assert line.endswith(f'step 2 of 100000, saved {model_dir}/ckpt-2; run the same command '
                       'again to resume')
  assert 'Traceback' not in completed.stderr
  with open(model_dir / 'checkpoint') as f:
    assert 'ckpt-2' in f.read()
  # The piece is on record: its steps, how it ended, the machine.
  [piece] = [json.loads(line) for line in (model_dir / 'pieces.jsonl').read_text().splitlines()]
  assert (piece['first_step'], piece['last_step'], piece['steps']) == (0, 2, 2)
  assert piece['ended'] == 'time limit' and 'cores' in piece['cpu']
  assert piece['commit'] == code_version.commit()
  assert piece['precision'] == 'float32' and piece['replicas'] >= 1 and piece['wall_seconds'] > 0


@pytest.mark.slow
def test_eval_stops_at_its_time_limit_and_the_same_command_continues(
    shared_data, tmp_path, run_dir):
  del tmp_path
  command = ('eval', f'--model_dir={run_dir}', '--num_samples=2', '--max_examples=12',
             '--batch_size=4', f'--data_dir={shared_data}', '--json')
  completed = binary_runs.run_binary(*command, '--time_limit=1s')
  assert completed.returncode == time_limits.EXIT_STATUS, completed.stderr[-3000:]
  progress = os.path.join(run_dir, 'eval_test_k2_n12_seed0.partial.json')
  line = _stopped_line(completed)
  assert line.startswith('stopped: time limit 1s reached after ')
  assert '8 of 12 images done' in line and line.endswith(
      f'kept in {progress}; run the same command again to continue')
  assert not completed.stdout  # No result: the evaluation is not done.
  with open(progress) as f:
    kept = json.load(f)
  completed = binary_runs.run_binary(*command)
  assert completed.returncode == 0, completed.stderr[-3000:]
  report = json.loads(completed.stdout)
  assert [piece['images'] for piece in report['pieces']] == [8, 4]
  assert not os.path.exists(progress)
  with open(os.path.join(run_dir, 'eval_test_per_image.json')) as f:
    values = json.load(f)['values']
  assert values['nll'][:8] == kept['values']['nll']
  assert np.mean(values['nll']) == pytest.approx(report['nll_nats'])


def test_job_script_loop_runs_again_on_75_and_stops_on_a_failure(tmp_path):
  """The README's loop for job scripts: status 75 runs the command again, 1 ends the loop."""
  counter = tmp_path / 'count'
  fake = tmp_path / 'fake'
  fake.write_text('#!/bin/sh\nn=$(cat "$1" 2>/dev/null || echo 0); n=$((n + 1)); '
                  'echo $n > "$1"\n[ $n -lt 3 ] && exit 75\n[ $n -eq 3 ] && exit 1\nexit 0\n')
  fake.chmod(0o755)
  script = (f'until {fake} {counter}; do\n  [ $? -eq 75 ] || exit 1\ndone\n')
  completed = subprocess.run(['bash', '-c', script], check=False)
  assert completed.returncode == 1 and counter.read_text().strip() == '3'
