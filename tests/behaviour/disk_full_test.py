"""A full disk, simulated with a file-size limit (RLIMIT_FSIZE: a write past it fails
with EFBIG, SIGXFSZ being ignored, as Python does at start-up): during a checkpoint, a summary, an
export, eval_history.jsonl and a compressed file (an atomic write), each failure is one line naming
the file (and the bytes to write when known), what was there before is intact, and the work
resumes once the limit is lifted. In-process with the limit set around one write, and bin/train
end to end (slow: two short runs).
"""

import contextlib
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from vlae_tf import errors
from vlae_tf import files
from vlae_tf.cli import user_errors
from vlae_tf.export import saved_model as export

REPO = str(pathlib.Path(__file__).resolve().parents[2])
FIXTURE_RUN = os.path.join(REPO, 'tests', 'testdata', 'run_e06a543')
LIMIT = 64 * 1024  # Above every small file of a run, below a checkpoint of the tiny model.


@contextlib.contextmanager
def file_size_limit(limit=LIMIT):
  """Writes past `limit` bytes fail with EFBIG in this process while the block runs."""
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, previous)


def one_line(error):
  """What the binaries print for `error` (user_errors.guard), checked to be one line."""
  def fail():
    raise error
  with pytest.raises(SystemExit) as exit_info:
    user_errors.guard(fail)
  message = str(exit_info.value.code)
  assert message.startswith('error: ') and '\n' not in message, message
  return message


def test_an_atomic_write_keeps_the_previous_file(tmp_path):
  """The compressed file of bin/compress, eval_<split>.json, config.gin: files.atomic_write_*."""
  path = tmp_path / 'images.vlae'
  path.write_bytes(b'previous')
  with file_size_limit(), pytest.raises(errors.DiskFullError) as error:
    files.atomic_write_bytes(str(path), bytes(200_000))
  assert path.read_bytes() == b'previous' and os.listdir(tmp_path) == ['images.vlae']
  message = one_line(error.value)
  assert f'Cannot write {path}: File too large' in message and '200,000 bytes to write' in message
  files.atomic_write_bytes(str(path), bytes(200_000))  # Space freed: it works.
  assert path.stat().st_size == 200_000


def test_an_appended_line_is_cut_off_again(tmp_path):
  """eval_history.jsonl: a reader never sees half a line."""
  path = tmp_path / 'eval_history.jsonl'
  path.write_text('{"a": 1}\n' * 100)
  with file_size_limit(len(path.read_text()) + 10), pytest.raises(errors.DiskFullError) as error:
    files.append_line(str(path), '{"b": "' + 'x' * 100 + '"}\n')
  assert path.read_text() == '{"a": 1}\n' * 100
  assert f'Cannot write {path}' in one_line(error.value)


def test_a_checkpoint_keeps_the_previous_one_and_names_the_bytes(tmp_path):
  weights = tf.Variable(np.arange(40_000, dtype=np.float32))
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(weights=weights), str(tmp_path), 3)
  first = manager.save()
  weights.assign_add(tf.ones([40_000]))
  with file_size_limit(), pytest.raises(tf.errors.OpError) as error:
    manager.save()
  message = one_line(error.value)
  assert f'Cannot write {tmp_path}/ckpt-2: File too large' in message, message
  size = sum(os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path)
             if name.startswith('ckpt-1.'))
  assert f'about {size:,} bytes to write' in message
  assert 'the checkpoints before it are intact' in message
  assert tf.train.latest_checkpoint(str(tmp_path)) == first
  restored = tf.Variable(tf.zeros([40_000]))
  tf.train.Checkpoint(weights=restored).restore(first).assert_consumed()
  np.testing.assert_array_equal(restored.numpy(), np.arange(40_000, dtype=np.float32))
  saved = manager.save()  # Space freed: the next save works.
  assert tf.train.latest_checkpoint(str(tmp_path)) == saved


def test_a_summary_names_its_events_file(tmp_path):
  writer = tf.summary.create_file_writer(str(tmp_path / 'train'), max_queue=1)
  with file_size_limit(4096), pytest.raises(tf.errors.OpError) as error:
    with writer.as_default():
      for step in range(1000):
        tf.summary.text('notes', 'x' * 100, step=step)
      writer.flush()
  [events] = os.listdir(tmp_path / 'train')
  message = one_line(error.value)
  assert f'Cannot write {tmp_path / "train" / events}: File too large' in message, message
  assert 'the events written before are intact' in message


class _Module(tf.Module):
  """A SavedModel of 400 KB."""

  def __init__(self, value):
    super().__init__()
    self.weights = tf.Variable(tf.fill([100_000], value))
    self.f = tf.function(lambda x: {'y': x * self.weights[0]},
                         input_signature=[tf.TensorSpec([None], tf.float32)])

  def signatures(self):
    return {'f': self.f.get_concrete_function()}


def test_an_export_keeps_the_previous_one(tmp_path):
  path = tmp_path / 'export' / '3'
  export.save_atomically(_Module(1.0), str(path))
  for target in (path, tmp_path / 'export' / '4'):  # Replacing an export, and a new one.
    with file_size_limit(), pytest.raises(errors.DiskFullError) as error:
      export.save_atomically(_Module(2.0), str(target))
    message = one_line(error.value)
    assert f'Cannot write {target}: File too large' in message, message
    assert 'the exports before are intact' in message
  assert os.listdir(tmp_path / 'export') == ['3']  # No temporaries, no partial 4.
  assert float(tf.saved_model.load(str(path)).weights[0]) == 1.0


def _train(model_dir, limit=None):
  """bin/train resuming the fixture run to step 4, as a user runs it (C++ logging as is).

  With the run's own config.gin: the fixture (commit e06a543) was trained with the decoder and
  the tiny settings of that time.
  """
  env = {key: value for key, value in os.environ.items() if key != 'TF_CPP_MIN_LOG_LEVEL'}
  env['PYTHONPATH'] = REPO
  command = [sys.executable, os.path.join(REPO, 'bin', 'train'), f'--model_dir={model_dir}',
             f'--gin_file={model_dir}/config.gin', '--gin_param=TRAIN_STEPS=4',
             "--gin_param=train.train_split = 'train'",
             '--gin_param=train.eval_examples = 0', '--gin_param=train.num_summary_images = 0',
             f'--data_dir={os.environ.get("VLAE_DATA_DIR", os.path.join(REPO, "..", "shared", "data"))}']

  def limited():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

  return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
                        check=False, preexec_fn=limited if limit else None)


@pytest.mark.slow
def test_bin_train_on_a_full_disk_stops_in_one_line_then_resumes(tmp_path, shared_data):
  del shared_data  # The data must be there (VLAE_DATA_DIR).
  model_dir = tmp_path / 'run'
  shutil.copytree(FIXTURE_RUN, model_dir)
  completed = _train(model_dir, limit=LIMIT)
  assert completed.returncode == 1 and 'Traceback' not in completed.stderr, completed.stderr
  errors_seen = [line for line in completed.stderr.splitlines()
                 if line.startswith('error:') or 'File too large' in line]
  assert len(errors_seen) == 1, completed.stderr[-3000:]
  assert errors_seen[0].startswith(f'error: Cannot write {model_dir}/ckpt-4: File too large')
  assert 'bytes to write' in errors_seen[0] and 'run the same command again' in errors_seen[0]
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-2')
  completed = _train(model_dir)  # Space freed.
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert f'Resumed from {model_dir}/ckpt-2 at step 2.' in completed.stderr
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-4')
  assert not any(name.endswith('_temp') for name in os.listdir(model_dir))
