"""A two-worker MultiWorkerMirroredStrategy run: two local bin/train processes and TF_CONFIG."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.slow
def test_two_workers_train_a_few_steps(shared_data, tmp_path):
  workers = [f'127.0.0.1:{port}' for port in _free_ports(2)]
  model_dir = tmp_path / 'run'
  processes = []
  for index in range(2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=REPO,
               TF_CONFIG=json.dumps({'cluster': {'worker': workers},
                                     'task': {'type': 'worker', 'index': index}}))
    processes.append(subprocess.Popen(
        [sys.executable, os.path.join(REPO, 'bin', 'train'), f'--model_dir={model_dir}',
         '--gin_file=mnist_vlae.gin', '--gin_file=testing/tiny.gin',
         '--gin_param=TRAIN_STEPS = 2', '--gin_param=train.num_summary_images = 0',
         f'--data_dir={shared_data}'],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outputs = []
  try:
    for process in processes:
      outputs.append(process.communicate(timeout=600))
  finally:
    for process in processes:
      process.kill()
  for process, (_, stderr) in zip(processes, outputs):
    assert process.returncode == 0, stderr[-5000:]
  chief_log = outputs[0][1]
  assert 'MultiWorkerMirroredStrategy' in chief_log or 'multi-worker' in chief_log.lower(), (
      chief_log[-3000:])
  assert 'step 2/2' in chief_log
  assert (model_dir / 'ckpt-2.index').is_file()  # Written by the chief only.
  # The non-chief worker writes its checkpoints to a scratch directory and deletes them.
  assert not [path for path in (model_dir / 'worker_tmp').rglob('*') if path.is_file()]


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_at_the_same_step(shared_data, tmp_path):
  """Workers agree before each chunk on its length and on stopping: SIGTERM to the non-chief
  worker alone stops both (exit 143) at one step, with the chief's checkpoint of that step."""
  workers = [f'127.0.0.1:{port}' for port in _free_ports(2)]
  model_dir = tmp_path / 'run'
  processes, logs = [], []
  for index in range(2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=REPO,
               TF_CONFIG=json.dumps({'cluster': {'worker': workers},
                                     'task': {'type': 'worker', 'index': index}}))
    logs.append(open(tmp_path / f'worker_{index}.log', 'w'))  # pylint: disable=consider-using-with
    processes.append(subprocess.Popen(
        [sys.executable, os.path.join(REPO, 'bin', 'train'), f'--model_dir={model_dir}',
         '--gin_file=mnist_vlae.gin', '--gin_file=testing/tiny.gin',
         '--gin_param=TRAIN_STEPS = 1000000', '--gin_param=train.summary_every = 1000000',
         '--gin_param=train.checkpoint_every = 1000000', '--gin_param=train.eval_examples = 0',
         '--gin_param=train.num_summary_images = 0', f'--data_dir={shared_data}'],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=logs[-1], text=True))
  try:
    deadline = time.time() + 600
    while 'first step in' not in (tmp_path / 'worker_1.log').read_text():
      assert time.time() < deadline and processes[1].poll() is None, (
          (tmp_path / 'worker_1.log').read_text()[-3000:])
      time.sleep(0.5)
    time.sleep(3.0)  # Into the chunks after compilation.
    processes[1].send_signal(signal.SIGTERM)
    statuses = [process.wait(timeout=120) for process in processes]
  finally:
    for process, log in zip(processes, logs):
      process.kill()
      log.close()
  assert statuses == [143, 143], [(tmp_path / f'worker_{i}.log').read_text()[-2000:]
                                  for i in range(2)]
  stopped = [re.findall(r'stopped: interrupted by SIGTERM at step (\d+)',
                        (tmp_path / f'worker_{i}.log').read_text()) for i in range(2)]
  assert stopped[0] == stopped[1] and len(stopped[0]) == 1, stopped
  assert (model_dir / f'ckpt-{stopped[0][0]}.index').is_file()
