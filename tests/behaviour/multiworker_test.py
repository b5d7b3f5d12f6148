"""Two workers under MultiWorkerMirroredStrategy: two local bin/train processes and TF_CONFIG.

One scenario, two pairs of processes (each pair costs its start-up and tracing, most of the time):

  pair A   trains with a checkpoint every step; worker 0 (the chief) is killed with SIGKILL after
           its third checkpoint: worker 1 must stop within LOST_WORKER_SECONDS with one line naming
           worker 0, never hang.
  pair B   restarts both in the same model_dir, from the checkpoint before A's newest (A's newest is
           moved aside as the reference): B's checkpoint of that step must equal A's bit for bit
           (train.deterministic), and each worker logs its own input pipeline. Then SIGTERM to
           worker 1 alone: both save the same step and exit with 143.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

REPO = str(pathlib.Path(__file__).resolve().parents[2])

# A worker whose peer died stops within this bound (measured on a loaded 2-core machine: 4 s after
# SIGKILL, through the closed connections; 13-21 s after SIGSTOP, through the missed heartbeats of
# TensorFlow's coordination service).
LOST_WORKER_SECONDS = 60

SETTINGS = ('--gin_file=mnist_vlae.gin', '--gin_file=testing/tiny.gin',
            '--gin_param=TRAIN_STEPS = 1000000', '--gin_param=train.summary_every = 1000000',
            '--gin_param=train.checkpoint_every = 1', '--gin_param=train.eval_examples = 0',
            '--gin_param=train.num_summary_images = 0', '--gin_param=train.deterministic = True',
            '--gin_param=train.max_checkpoints_to_keep = 100', '--gin_param=train.seed = 5')


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


class Workers:
  """Two bin/train processes of one cluster, their stderr in <log_dir>/<name>_<index>.log."""

  def __init__(self, name, model_dir, data_dir, log_dir):
    self.addresses = [f'127.0.0.1:{port}' for port in _free_ports(2)]
    self.logs = [log_dir / f'{name}_{index}.log' for index in range(2)]
    self.processes = []
    for index, log in enumerate(self.logs):
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=REPO,
                 TF_CONFIG=json.dumps({'cluster': {'worker': self.addresses},
                                       'task': {'type': 'worker', 'index': index}}))
      with open(log, 'w') as stderr:
        self.processes.append(subprocess.Popen(
            [sys.executable, os.path.join(REPO, 'bin', 'train'), f'--model_dir={model_dir}',
             *SETTINGS, f'--data_dir={data_dir}'],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr))

  def text(self, index):
    return self.logs[index].read_text()

  def tails(self):
    return [text[-3000:] for text in map(self.text, range(2))]

  def kill(self):
    for process in self.processes:
      process.kill()
      process.wait()


def latest_step(model_dir):
  state = tf.train.get_checkpoint_state(str(model_dir))
  return int(state.model_checkpoint_path.rsplit('-', 1)[1]) if state else 0


def wait_for_checkpoint(workers, model_dir, step, timeout=600):
  deadline = time.time() + timeout
  while latest_step(model_dir) < step:
    assert time.time() < deadline and all(p.poll() is None for p in workers.processes), (
        workers.tails())
    time.sleep(0.2)


def read_checkpoint(prefix):
  reader = tf.train.load_checkpoint(str(prefix))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name.endswith('.ATTRIBUTES/VARIABLE_VALUE')}


@pytest.fixture(scope='module')
def scenario(shared_data, tmp_path_factory):
  """Runs pairs A and B (module docstring); what the tests check."""
  tmp_path = tmp_path_factory.mktemp('multiworker')
  model_dir, reference_dir = tmp_path / 'run', tmp_path / 'reference'
  result = {'model_dir': model_dir}
  pair_a = Workers('a', model_dir, shared_data, tmp_path)
  try:
    wait_for_checkpoint(pair_a, model_dir, 3)
    pair_a.processes[0].send_signal(signal.SIGKILL)
    killed = time.time()
    try:
      result['survivor_status'] = pair_a.processes[1].wait(timeout=LOST_WORKER_SECONDS)
    except subprocess.TimeoutExpired:
      result['survivor_status'] = None
    result['survivor_seconds'] = time.time() - killed
    print(f'worker 1 stopped {result["survivor_seconds"]:.1f} s after SIGKILL to worker 0')
  finally:
    pair_a.kill()
  result['pair_a'], result['addresses_a'] = [pair_a.text(i) for i in range(2)], pair_a.addresses

  # A's newest checkpoint becomes the reference; B resumes from the one before.
  newest = latest_step(model_dir)
  result['reference_step'] = newest
  reference_dir.mkdir()
  for path in model_dir.glob(f'ckpt-{newest}.*'):
    shutil.move(str(path), str(reference_dir / path.name))
  kept = [f'ckpt-{step}' for step in range(1, newest)]
  (model_dir / 'checkpoint').write_text(
      f'model_checkpoint_path: "{kept[-1]}"\n' +
      ''.join(f'all_model_checkpoint_paths: "{prefix}"\n' for prefix in kept))

  pair_b = Workers('b', model_dir, shared_data, tmp_path)
  try:
    wait_for_checkpoint(pair_b, model_dir, newest)
    pair_b.processes[1].send_signal(signal.SIGTERM)
    result['sigterm_statuses'] = [process.wait(timeout=120) for process in pair_b.processes]
  finally:
    pair_b.kill()
  result['pair_b'] = [pair_b.text(i) for i in range(2)]
  result['want'] = read_checkpoint(reference_dir / f'ckpt-{newest}')
  result['got'] = read_checkpoint(model_dir / f'ckpt-{newest}')
  return result


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_in_one_line(scenario):
  """SIGKILL to the chief: worker 1 stops within LOST_WORKER_SECONDS, exit status 1, one line
  naming worker 0 and the checkpoint to resume from, no traceback."""
  survivor = scenario['pair_a'][1]
  assert scenario['survivor_status'] == 1, (scenario['survivor_seconds'], survivor[-3000:])
  lines = [line for line in survivor.splitlines() if line.startswith('error: ')]
  assert len(lines) == 1 and 'Traceback' not in survivor, survivor[-3000:]
  assert lines[0].startswith(
      f'error: Lost worker 0 ({scenario["addresses_a"][0]}): this worker 1 stopped ('), lines[0]
  assert re.search(r'restart every worker with the same command to resume from '
                   rf'{re.escape(str(scenario["model_dir"]))}/ckpt-\d+\.$', lines[0]), lines[0]


@pytest.mark.slow
def test_restarting_both_resumes_exactly_each_worker_reading_its_shard(scenario):
  step = scenario['reference_step']
  for index, log in enumerate(scenario['pair_b']):
    assert f'Resumed from {scenario["model_dir"]}/ckpt-{step - 1} at step {step - 1}' in log, (
        log[-3000:])
    assert (f'Input pipeline {index + 1} of 2: shard {index} of the training images, 2 image(s) '
            'per step in per-replica batches of 2.') in log, log[-3000:]
  assert 'MultiWorkerMirroredStrategy' in scenario['pair_b'][0]
  want, got = scenario['want'], scenario['got']
  assert set(want) == set(got) and any(name.startswith('optimizer/') for name in want)
  assert int(got['step/.ATTRIBUTES/VARIABLE_VALUE']) == step
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_at_the_same_step(scenario):
  """Workers agree before each chunk on its length and on stopping: SIGTERM to worker 1 alone
  stops both (exit 143) at one step, with the chief's checkpoint of that step."""
  assert scenario['sigterm_statuses'] == [143, 143], [log[-2000:] for log in scenario['pair_b']]
  stopped = [re.findall(r'stopped: interrupted by SIGTERM at step (\d+)', log)
             for log in scenario['pair_b']]
  assert stopped[0] == stopped[1] and len(stopped[0]) == 1, stopped
  assert int(stopped[0][0]) >= scenario['reference_step']
  assert (scenario['model_dir'] / f'ckpt-{stopped[0][0]}.index').is_file()
