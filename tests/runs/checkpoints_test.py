"""Damage after the save: a checkpoint's files truncated, zero-filled, bit-flipped or missing, the
`checkpoint` state file missing or garbled, config.gin garbled. docs/reliability.md lists what each
test guarantees.

The checker and the resolver are tested in-process on small checkpoints written by a
`tf.train.CheckpointManager`, as `train` writes them (fast); the real VLAE (tiny, real static MNIST)
resumes, evaluates and exports from damaged copies of one run (slow). The subprocess test of
bin/train, bin/eval and bin/export on a truncated checkpoint is in reliability_test.py.
"""

import logging
import os
import shutil

import gin
import numpy as np
import pytest
import tensorflow as tf

import doubles
from vlae_tf import errors
from vlae_tf.runs import checkpoints
from vlae_tf.cli import run_binaries
from vlae_tf import distribution
from vlae_tf import gin_parsing
from vlae_tf.runs import run_config
from vlae_tf.training import loop as training

# ---------------------------------------------------------------------------------------------
# Faults, as a full disk, a bad copy or a storage fault leave them.


def data_file(prefix):
  return f'{prefix}.data-00000-of-00001'


def truncate(path, size=100):
  with open(path, 'r+b') as f:
    f.truncate(size)


def zero_fill(path):
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:
    f.write(b'\0' * size)


def flip_bit(path, offset=None):
  """Flips one bit in the middle of the file (or at `offset`)."""
  offset = os.path.getsize(path) // 2 if offset is None else offset
  with open(path, 'r+b') as f:
    f.seek(offset)
    byte = f.read(1)[0]
    f.seek(offset)
    f.write(bytes([byte ^ 0x10]))


CHECKPOINT_FAULTS = {
    # name: (damage the checkpoint prefix, words of checkpoints.checkpoint_damage)
    'truncated_data': (lambda prefix: truncate(data_file(prefix)), 'data file is truncated'),
    'emptied_data': (lambda prefix: truncate(data_file(prefix), 0), 'data file is truncated'),
    'zero_filled_data': (lambda prefix: zero_fill(data_file(prefix)), 'checksum does not match'),
    'bit_flipped_data': (lambda prefix: flip_bit(data_file(prefix)), 'checksum does not match'),
    'deleted_index': (lambda prefix: os.remove(prefix + '.index'), '.index file is missing'),
    'deleted_data': (lambda prefix: os.remove(data_file(prefix)), 'data file is missing'),
    'truncated_index': (lambda prefix: truncate(prefix + '.index'),
                        '.index file is not a checkpoint index'),
    'bit_flipped_index': (lambda prefix: flip_bit(prefix + '.index'), '.index file is unreadable'),
}


def write_state(model_dir, data):
  with open(os.path.join(model_dir, 'checkpoint'), 'wb') as f:
    f.write(data)


STATE_FAULTS = {
    # name: damage <model_dir>/checkpoint (tf.train.latest_checkpoint's answer before the fix)
    'deleted': lambda d: os.remove(os.path.join(d, 'checkpoint')),  # None: a fresh start
    'emptied': lambda d: write_state(d, b''),  # ValueError
    'binary_garbage': lambda d: write_state(d, bytes(range(256)) * 2),  # UnicodeDecodeError
    'truncated': lambda d: truncate(os.path.join(d, 'checkpoint'), 20),  # None
    'zero_filled': lambda d: zero_fill(os.path.join(d, 'checkpoint')),  # None
}


# ---------------------------------------------------------------------------------------------
# The checker and the resolver, on small checkpoints.


def small_run(model_dir, steps=(1, 2, 3), max_to_keep=5):
  """Saves checkpoints of `steps` with a CheckpointManager, as `train` does; returns the manager's
  checkpoint (step, a [64, 64] weight whose values are the step)."""
  step = tf.Variable(0, dtype=tf.int64)
  weight = tf.Variable(tf.zeros([64, 64]))
  checkpoint = tf.train.Checkpoint(step=step, weight=weight)
  manager = tf.train.CheckpointManager(checkpoint, str(model_dir), max_to_keep=max_to_keep,
                                       step_counter=step)
  for value in steps:
    step.assign(value)
    weight.assign(tf.fill([64, 64], float(value)))
    manager.save(checkpoint_number=value)
  return checkpoint


def prefix(model_dir, step):
  return os.path.join(str(model_dir), f'ckpt-{step}')


def snapshot(model_dir):
  """{relative path: bytes} of every file under model_dir."""
  files = {}
  for root, _, names in os.walk(model_dir):
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        files[os.path.relpath(path, model_dir)] = f.read()
  return files


def warnings_in(caplog):
  """vlae_tf's warnings (TensorFlow's own, e.g. retracing, depend on what ran before)."""
  return [record.getMessage() for record in caplog.records
          if record.levelno == logging.WARNING and '/vlae_tf/' in record.pathname]


def test_run_checkpoints_lists_the_kept_ones_oldest_first_with_their_steps(tmp_path):
  small_run(tmp_path, steps=(1, 2, 3, 4), max_to_keep=3)
  listed = checkpoints.run_checkpoints(str(tmp_path))
  assert [checkpoints.checkpoint_step(path) for path, _ in listed] == [2, 3, 4]
  times = [written for _, written in listed]
  assert times == sorted(times) and times[0] > 1.7e9
  assert checkpoints.intact_run_checkpoints(str(tmp_path)) == listed


def test_run_checkpoints_of_a_run_without_one_says_what_to_do(tmp_path):
  with pytest.raises(errors.CheckpointNotFoundError):
    checkpoints.run_checkpoints(str(tmp_path))


def test_checkpoint_step_names_only_checkpoint_prefixes():
  assert checkpoints.checkpoint_step('/runs/a/ckpt-2000') == 2000
  assert checkpoints.checkpoint_step('ckpt-7') == 7
  assert checkpoints.checkpoint_step('/runs/a/ckpt-7.index') is None
  assert checkpoints.checkpoint_step('/runs/a/model-7') is None


def test_intact_checkpoints_have_no_damage(tmp_path):
  small_run(tmp_path)
  for step in (1, 2, 3):
    assert checkpoints.checkpoint_damage(prefix(tmp_path, step)) is None
  # Bytes appended after the last tensor harm no tensor.
  with open(data_file(prefix(tmp_path, 3)), 'ab') as f:
    f.write(b'appended')
  assert checkpoints.checkpoint_damage(prefix(tmp_path, 3)) is None
  assert checkpoints.latest_checkpoint(str(tmp_path)) == prefix(tmp_path, 3)


@pytest.mark.parametrize('fault', sorted(CHECKPOINT_FAULTS))
def test_damaged_latest_checkpoint_readers_use_the_previous_one(tmp_path, caplog, fault):
  small_run(tmp_path)
  damage, words = CHECKPOINT_FAULTS[fault]
  damage(prefix(tmp_path, 3))
  assert words in checkpoints.checkpoint_damage(prefix(tmp_path, 3))
  before = snapshot(tmp_path)
  with caplog.at_level(logging.WARNING):
    assert checkpoints.latest_checkpoint(str(tmp_path)) == prefix(tmp_path, 2)
  [warning] = warnings_in(caplog)
  assert '\n' not in warning
  assert warning.startswith(f'Checkpoint {prefix(tmp_path, 3)} is damaged (') and words in warning
  assert f'using {prefix(tmp_path, 2)} instead' in warning
  assert f'--checkpoint={tmp_path}/ckpt-N' in warning
  assert snapshot(tmp_path) == before  # Readers change nothing.


@pytest.mark.parametrize('fault', sorted(CHECKPOINT_FAULTS))
def test_damaged_latest_checkpoint_is_moved_aside_for_resuming(tmp_path, caplog, fault):
  small_run(tmp_path, max_to_keep=3)
  damage, words = CHECKPOINT_FAULTS[fault]
  damage(prefix(tmp_path, 3))
  left = set(checkpoints.checkpoint_files(prefix(tmp_path, 3)))
  contents = {os.path.basename(path): open(path, 'rb').read() for path in left}
  with caplog.at_level(logging.WARNING):
    assert checkpoints.prepare_resume(str(tmp_path)) == prefix(tmp_path, 2)
  [warning] = warnings_in(caplog)
  assert warning.startswith(f'Checkpoint {prefix(tmp_path, 3)} is damaged (') and words in warning
  assert warning.endswith(f'): moved its files to {tmp_path}/damaged/ckpt-3; resuming from '
                          f'{prefix(tmp_path, 2)}.')
  # Moved, not deleted, byte for byte.
  assert checkpoints.damaged_files(str(tmp_path)) == sorted(contents)
  for name, data in contents.items():
    assert (tmp_path / 'damaged' / name).read_bytes() == data
  assert not checkpoints.checkpoint_files(prefix(tmp_path, 3))
  # The state file is consistent: a CheckpointManager resumes from ckpt-2, then keeps and deletes
  # the right checkpoints (max_to_keep = 3).
  assert tf.train.latest_checkpoint(str(tmp_path)) == prefix(tmp_path, 2)
  checkpoint = small_run(tmp_path, steps=(), max_to_keep=3)
  manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=3)
  assert manager.checkpoints == [prefix(tmp_path, 1), prefix(tmp_path, 2)]
  checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
  assert int(checkpoint.step.numpy()) == 2
  for step in (3, 4):
    checkpoint.step.assign(step)
    manager.save(checkpoint_number=step)
  assert manager.checkpoints == [prefix(tmp_path, step) for step in (2, 3, 4)]
  assert not checkpoints.checkpoint_files(prefix(tmp_path, 1))  # Deleted by max_to_keep, as usual.
  assert checkpoints.checkpoint_damage(prefix(tmp_path, 3)) is None  # The new ckpt-3.
  assert checkpoints.damaged_files(str(tmp_path)) == sorted(contents)


@pytest.mark.parametrize('fault', sorted(STATE_FAULTS))
def test_damaged_state_file_is_rebuilt_from_the_files(tmp_path, caplog, fault):
  small_run(tmp_path)
  written = dict(checkpoints.run_checkpoints(str(tmp_path)))
  STATE_FAULTS[fault](str(tmp_path))
  with caplog.at_level(logging.WARNING):
    assert checkpoints.latest_checkpoint(str(tmp_path)) == prefix(tmp_path, 3)
  [warning] = warnings_in(caplog)
  assert warning.startswith(f'{tmp_path}/checkpoint is ') and '\n' not in warning
  assert warning.endswith('; found the checkpoints from their files.')
  assert checkpoints.has_checkpoints(str(tmp_path))
  # Resuming rewrites it; the times fall back to the .index files' (written just before).
  assert checkpoints.prepare_resume(str(tmp_path)) == prefix(tmp_path, 3)
  assert tf.train.latest_checkpoint(str(tmp_path)) == prefix(tmp_path, 3)
  rebuilt = dict(checkpoints.run_checkpoints(str(tmp_path)))
  assert sorted(rebuilt) == [prefix(tmp_path, step) for step in (1, 2, 3)]
  for path, when in rebuilt.items():
    assert when == pytest.approx(written[path], abs=5.0)


def test_state_file_naming_gone_files(tmp_path, caplog):
  """The latest checkpoint's files are all gone (deleted by hand, or a partial copy)."""
  small_run(tmp_path)
  for path in checkpoints.checkpoint_files(prefix(tmp_path, 3)):
    os.remove(path)
  assert tf.train.latest_checkpoint(str(tmp_path)) is None  # What train used to start afresh on.
  with caplog.at_level(logging.WARNING):
    assert checkpoints.latest_checkpoint(str(tmp_path)) == prefix(tmp_path, 2)
  assert warnings_in(caplog) == [f'{tmp_path}/checkpoint names ckpt-3, whose files are gone; '
                                 'found the checkpoints from their files.']
  assert checkpoints.prepare_resume(str(tmp_path)) == prefix(tmp_path, 2)
  assert not checkpoints.damaged_files(str(tmp_path))  # Nothing to move.
  assert tf.train.latest_checkpoint(str(tmp_path)) == prefix(tmp_path, 2)


def test_checkpoint_newer_than_the_state_file_is_not_used(tmp_path, caplog):
  """A ckpt-N the state file does not name is a save that did not finish (its next save
  overwrites it): the state file's latest stays the latest, as for tf.train.latest_checkpoint."""
  small_run(tmp_path, steps=(1, 2))
  state = (tmp_path / 'checkpoint').read_bytes()
  small_run(tmp_path, steps=(3,))
  (tmp_path / 'checkpoint').write_bytes(state)
  with caplog.at_level(logging.WARNING):
    assert checkpoints.latest_checkpoint(str(tmp_path)) == prefix(tmp_path, 2)
    assert checkpoints.prepare_resume(str(tmp_path)) == prefix(tmp_path, 2)
  assert not warnings_in(caplog)
  assert (tmp_path / 'checkpoint').read_bytes() == state


def test_no_intact_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
  small_run(tmp_path, steps=(1, 2))
  truncate(data_file(prefix(tmp_path, 2)))
  zero_fill(data_file(prefix(tmp_path, 1)))
  before = snapshot(tmp_path)
  message = doubles.one_line_error(lambda: checkpoints.latest_checkpoint(str(tmp_path)))
  assert message == (
      f'error: No intact checkpoint in {tmp_path}: Checkpoints {prefix(tmp_path, 2)} (its data '
      f'file is truncated), {prefix(tmp_path, 1)} (a checksum does not match: its bytes changed '
      'after the save) are damaged. Nothing was changed; restore the checkpoints from a copy.')
  assert snapshot(tmp_path) == before
  message = doubles.one_line_error(lambda: checkpoints.prepare_resume(str(tmp_path)))
  assert message.startswith(f'error: No intact checkpoint in {tmp_path}: Checkpoints ')
  assert message.endswith(
      f'are damaged; moved the files to {tmp_path}/damaged/ (nothing was deleted). To start this '
      f'run afresh, move {tmp_path}/damaged elsewhere and rerun; or use a new --model_dir.')
  assert sorted(checkpoints.damaged_files(str(tmp_path))) == sorted(
      os.path.basename(path) for path in before if path.startswith('ckpt-'))
  # The next start does not start afresh either.
  assert checkpoints.has_checkpoints(str(tmp_path))
  message = doubles.one_line_error(lambda: checkpoints.prepare_resume(str(tmp_path)))
  assert message == (f'error: No checkpoint in {tmp_path}, but {tmp_path}/damaged/ holds damaged '
                     'checkpoints moved there by an earlier bin/train. To start this run afresh, '
                     f'move {tmp_path}/damaged elsewhere and rerun; or use a new --model_dir.')
  shutil.move(str(tmp_path / 'damaged'), str(tmp_path.parent / 'kept_aside'))
  assert checkpoints.prepare_resume(str(tmp_path)) is None  # Now the user has chosen.


def test_a_step_damaged_twice_keeps_both_copies(tmp_path):
  small_run(tmp_path)
  truncate(data_file(prefix(tmp_path, 3)))
  assert checkpoints.prepare_resume(str(tmp_path)) == prefix(tmp_path, 2)
  small_run(tmp_path, steps=(3,))  # Resumed and saved step 3 again...
  zero_fill(data_file(prefix(tmp_path, 3)))  # ...which is damaged again.
  assert checkpoints.prepare_resume(str(tmp_path)) == prefix(tmp_path, 2)
  assert checkpoints.damaged_files(str(tmp_path)) == [
      'ckpt-3.1.data-00000-of-00001', 'ckpt-3.1.index', 'ckpt-3.data-00000-of-00001',
      'ckpt-3.index']
  assert 'truncated' in checkpoints.checkpoint_damage(str(tmp_path / 'damaged' / 'ckpt-3'))
  assert 'checksum' in checkpoints.checkpoint_damage(str(tmp_path / 'damaged' / 'ckpt-3.1'))


def test_choosing_a_checkpoint_by_step_or_prefix(tmp_path):
  small_run(tmp_path)
  model_dir = str(tmp_path)
  for choice in (2, '2', prefix(tmp_path, 2), prefix(tmp_path, 2) + '.index'):
    assert checkpoints.resolve_checkpoint(model_dir, choice) == prefix(tmp_path, 2)
  assert checkpoints.resolve_checkpoint(model_dir, None) == prefix(tmp_path, 3)
  flip_bit(data_file(prefix(tmp_path, 2)))
  message = doubles.one_line_error(lambda: checkpoints.resolve_checkpoint(model_dir, 2))
  assert message == (f'error: Checkpoint {prefix(tmp_path, 2)} is damaged (a checksum does not '
                     'match: its bytes changed after the save); the intact checkpoints of '
                     f'{tmp_path} are at steps 1, 3.')
  message = doubles.one_line_error(lambda: checkpoints.resolve_checkpoint(model_dir, '7'))
  assert message == (f'error: No checkpoint {prefix(tmp_path, 7)} (no ckpt-7.index or data file); '
                     f'the intact checkpoints of {tmp_path} are at steps 1, 3.')
  message = doubles.one_line_error(
      lambda: run_binaries.run_eval(model_dir, curve=True, checkpoint='2'))
  assert message == ('error: --checkpoint and --curve exclude each other: the curve evaluates '
                     'every kept checkpoint.')


def test_curve_leaves_out_damaged_checkpoints(tmp_path, caplog):
  small_run(tmp_path)
  zero_fill(data_file(prefix(tmp_path, 2)))
  with caplog.at_level(logging.WARNING):
    kept = checkpoints.intact_run_checkpoints(str(tmp_path))
  assert [path for path, _ in kept] == [prefix(tmp_path, 1), prefix(tmp_path, 3)]
  assert warnings_in(caplog) == [
      f'Checkpoint {prefix(tmp_path, 2)} is damaged (a checksum does not match: its bytes changed '
      'after the save): left out of the curve.']


CONFIG_FAULTS = {
    'binary_garbage': (lambda path: path.write_bytes(os.urandom(64) + b'\xff\xfe'),
                       'is damaged (not text: byte'),
    'zero_filled': (lambda path: zero_fill(str(path)), 'is damaged (it holds NUL bytes'),
    'truncated_mid_statement': (lambda path: path.write_text(path.read_text()[:-40]),
                                'is damaged (not valid gin: '),
    'emptied': (lambda path: path.write_text(''), 'is damaged (empty)'),
}


@pytest.mark.parametrize('fault', sorted(CONFIG_FAULTS))
def test_damaged_config_is_one_line_naming_the_file(tmp_path, fault):
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'])
  config = gin.config_str()
  gin.clear_config()
  path = tmp_path / 'config.gin'
  path.write_text(config)
  run_config.load_run_config(str(tmp_path))  # Intact: parses.
  small_run(tmp_path)
  damage, words = CONFIG_FAULTS[fault]
  damage(path)
  # Readers (eval, sample, export, inspect).
  message = doubles.one_line_error(lambda: run_config.load_run_config(str(tmp_path)))
  assert message.startswith(f'error: {path} {words}'), message
  assert message.endswith('restore it from a copy, or move it aside and rerun the bin/train '
                          'command of this run (it rewrites the file).')
  assert doubles.one_line_error(lambda: run_binaries.run_export(str(tmp_path))) == message
  # bin/train: the config of the checkpoints cannot be checked.
  message = doubles.one_line_error(lambda: run_config.check_resumable(str(tmp_path), config))
  assert message.startswith(f'error: {path} {words}'), message
  assert message.endswith(f'it records the config of the checkpoints in {tmp_path}: restore it '
                          'from a copy, or move it aside to resume without checking the config.')


# ---------------------------------------------------------------------------------------------
# The real VLAE (tiny, real static MNIST): eval, export and train on damaged copies of a run.

TRAIN_BINDINGS = ['train.train_steps = 4', 'train.batch_size = 4', 'train.checkpoint_every = 1',
                  'train.eval_examples = 0', 'train.num_summary_images = 0',
                  'train.max_checkpoints_to_keep = 10', 'train.seed = 3']


def train_tiny(model_dir, data_dir):
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'], TRAIN_BINDINGS)
  training.train(str(model_dir), data_dir=str(data_dir),
                 strategy=distribution.make_strategy(['/cpu:0']))


def read_checkpoint(path):
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name.endswith('.ATTRIBUTES/VARIABLE_VALUE')}


@pytest.fixture(scope='module')
def uninterrupted(shared_data, tmp_path_factory):
  """A run of 4 steps with a checkpoint after each."""
  model_dir = tmp_path_factory.mktemp('damaged') / 'uninterrupted'
  train_tiny(model_dir, shared_data)
  gin.clear_config()
  return model_dir


def stopped_at_step_3(uninterrupted, model_dir):
  """A copy of the run as it was after step 3 (as if it had been stopped there)."""
  model_dir.mkdir()
  for path in uninterrupted.iterdir():
    if path.is_file() and not path.name.startswith(('ckpt-4.', 'checkpoint')):
      shutil.copy(path, model_dir / path.name)
  write_state(str(model_dir), ''.join(
      [f'model_checkpoint_path: "ckpt-3"\n'] +
      [f'all_model_checkpoint_paths: "ckpt-{step}"\n' for step in (1, 2, 3)]).encode())
  return model_dir


E2E_FAULTS = {
    # name: (damage the run directory, the step eval and export fall back to)
    'zero_filled_data': (lambda d: zero_fill(data_file(prefix(d, 3))), 2),
    'bit_flipped_data': (lambda d: flip_bit(data_file(prefix(d, 3))), 2),
    'deleted_index': (lambda d: os.remove(prefix(d, 3) + '.index'), 2),
    'truncated_state_file': (STATE_FAULTS['truncated'], 3),
}
# Export picks its checkpoint as eval does (checkpoints.resolve_checkpoint), which every fault
# checks through eval: export is run for one damaged checkpoint and for the damaged state file.
EXPORTED_FAULTS = ('zero_filled_data', 'truncated_state_file')


@pytest.mark.slow
@pytest.mark.parametrize('fault', sorted(E2E_FAULTS))
def test_damaged_run_evaluates_exports_and_resumes(uninterrupted, shared_data, tmp_path, caplog,
                                                   fault):
  """Eval and export name the damage in one line and use the newest intact checkpoint; train moves
  the damaged one aside, resumes from the previous step and reaches the uninterrupted run's state.
  (A truncated data file, through the binaries: reliability_test.py.)"""
  model_dir = stopped_at_step_3(uninterrupted, tmp_path / 'run')
  damage, fallback = E2E_FAULTS[fault]
  damage(model_dir)
  with caplog.at_level(logging.WARNING):
    report = run_binaries.run_eval(str(model_dir), num_samples=2, max_examples=2, batch_size=2,
                                   data_dir=str(shared_data))
  assert report['step'] == fallback and report['checkpoint'] == prefix(model_dir, fallback)
  [warning] = warnings_in(caplog)
  assert '\n' not in warning
  if fault == 'truncated_state_file':
    assert warning == (f'{model_dir}/checkpoint is damaged (not a checkpoint list); found the '
                       'checkpoints from their files.')
  else:
    assert warning.startswith(f'Checkpoint {prefix(model_dir, 3)} is damaged (')
    assert f'using {prefix(model_dir, 2)} instead' in warning
  if fault in EXPORTED_FAULTS:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
      exported = run_binaries.run_export(str(model_dir), export_dir=str(tmp_path / 'export'))
    assert exported == str(tmp_path / 'export' / str(fallback))
    assert os.path.isfile(os.path.join(exported, 'saved_model.pb'))
    assert warnings_in(caplog) == [warning]

  caplog.clear()
  with caplog.at_level(logging.INFO, logger='absl'):  # absl's own level is WARNING in tests.
    train_tiny(model_dir, shared_data)
  log = [record.getMessage() for record in caplog.records]
  assert f'Resumed from {prefix(model_dir, fallback)} at step {fallback}.' in log
  if fault != 'truncated_state_file':
    assert any(f'Checkpoint {prefix(model_dir, 3)} is damaged' in message and
               f'moved its files to {model_dir}/damaged/ckpt-3; resuming from '
               f'{prefix(model_dir, 2)}.' in message for message in log), log
    assert checkpoints.damaged_files(str(model_dir))
  want = read_checkpoint(str(uninterrupted / 'ckpt-4'))
  got = read_checkpoint(tf.train.latest_checkpoint(str(model_dir)))
  assert set(got) == set(want)
  for name in want:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
  assert int(got['step/.ATTRIBUTES/VARIABLE_VALUE']) == 4
