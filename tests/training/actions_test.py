"""Tests of actions.py: each action of the train loop alone, with tiny fakes (no model, no data).

A chunk is an `actions.Chunk` written by hand; writers are real `tf.summary` file writers read back
from their event files; the checkpoint manager, the image renderer and the stop flag are fakes.
"""

import contextlib
import os
import types
from unittest import mock

import gin
from tensorboard.compat.proto import event_pb2
import tensorflow as tf

from vlae_tf import errors
from vlae_tf import progress
from vlae_tf.training import actions
from vlae_tf.runs import directory
from vlae_tf.training import settings

METRICS = dict(loss=2.0, elbo=-1.0, kl=0.5, log_px_z=-0.5, gradient_norm=3.0, kl_weight=1.0,
               bad_steps=0.0)


def chunk(step, num_steps=1, seconds=0.5, first=False, final=False, loss=2.0, **fields):
  return actions.Chunk(step=step, num_steps=num_steps, seconds=seconds,
                       metrics=dict(METRICS, loss=loss), first=first, final=final, **fields)


def event_values(directory):
  """{tag: {step: value}} of every summary in `directory` (scalars as floats, text as str)."""
  values = {}
  for name in tf.io.gfile.listdir(directory):
    if not name.startswith('events.out.tfevents.'):
      continue
    for record in tf.data.TFRecordDataset(os.path.join(directory, name)):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        array = tf.make_ndarray(value.tensor)
        values.setdefault(value.tag, {})[event.step] = (
            array.item().decode() if array.dtype == object else float(array))
  return values


class FakeWriter:
  """A summary writer that writes nothing: it counts flushes and holds the step of `as_default`."""

  def __init__(self):
    self.flushes = 0
    self.step = None

  def flush(self):
    self.flushes += 1

  @contextlib.contextmanager
  def as_default(self, step=None):
    self.step = step
    yield self
    self.step = None


def stop_flag(signum=None):
  return types.SimpleNamespace(signum=signum, requested=signum is not None)


class ChunkTest(tf.test.TestCase):

  def test_at_is_a_multiple_or_the_last_step(self):
    self.assertTrue(chunk(6).at(3))
    self.assertFalse(chunk(7).at(3))
    self.assertTrue(chunk(7, final=True).at(3))
    self.assertFalse(chunk(6).at(0))  # 0: never, except at the last step.
    self.assertTrue(chunk(6, final=True).at(None))


class OperativeConfigTest(tf.test.TestCase):

  def test_writes_the_operative_config_file_and_both_configs_as_text(self):
    model_dir = self.get_temp_dir()
    gin.parse_config(["train.dataset = 'static_mnist'", 'train.batch_size = 6'])
    settings.TrainSettings()  # A configurable called: it enters the operative config.
    writer = tf.summary.create_file_writer(model_dir)
    actions.OperativeConfig(model_dir, writer).start(chunk(1, first=True))
    writer.flush()
    with open(os.path.join(model_dir, directory.OPERATIVE_CONFIG_FILE)) as f:
      operative = f.read()
    self.assertIn('train.batch_size = 6', operative)
    self.assertIn('train.eval_split = ', operative)  # Defaults too: what the run used.
    values = event_values(model_dir)
    self.assertEqual(set(values['gin/operative_config']), {1})
    self.assertIn('train.batch_size = 6', values['gin/config'][1])
    actions.OperativeConfig(model_dir, writer)(chunk(2))  # Nothing after the first chunk.


class ProgressLinesTest(tf.test.TestCase):

  def test_first_step_line_then_lines_at_summary_steps_only(self):
    pacer = types.SimpleNamespace(expected_seconds=lambda: 0.0)
    lines = actions.ProgressLines(train_steps=20, batch_size=4, summary_every=10, pacer=pacer)
    with self.assertLogs('absl', 'INFO') as logs:
      first = chunk(1, seconds=4.0, first=True)
      lines.start(first)
      lines(first)  # Counted by start: starts the ETA clock, no line.
      lines(chunk(5, num_steps=4, seconds=1.0, loss=1.0))
      lines(chunk(10, num_steps=5, seconds=1.0, loss=4.0))
    messages = [record.getMessage() for record in logs.records]
    self.assertLen(messages, 2)
    self.assertEqual(messages[0], 'step 1/20  loss 2.000  elbo -1.000  kl 0.500  |grad| 3  '
                     'first step in 4.0 s (tracing and compilation)')
    # Means over the 9 steps since the first line: (4 * 1 + 5 * 4) / 9; 9 steps in 2 s.
    self.assertStartsWith(messages[1], 'step 10/20  loss 2.667  elbo -1.000  kl 0.500  |grad| 3  '
                          '4.50 steps/s  18 examples/s  ETA 0:00:')

  def test_a_line_when_the_next_chunk_would_pass_the_deadline(self):
    pacer = types.SimpleNamespace(expected_seconds=lambda: 0.0)
    with mock.patch.object(progress, 'PROGRESS_SECONDS', 0.0):
      lines = actions.ProgressLines(train_steps=100, batch_size=4, summary_every=1000,
                                    pacer=pacer)
    with self.assertLogs('absl', 'INFO') as logs:
      lines(chunk(1, first=True))
      lines(chunk(3, num_steps=2))
    self.assertLen(logs.records, 1)
    self.assertStartsWith(logs.records[0].getMessage(), 'step 3/100  loss 2.000')

  def test_a_stop_for_bad_steps_gets_a_line(self):
    pacer = types.SimpleNamespace(expected_seconds=lambda: 0.0)
    lines = actions.ProgressLines(train_steps=100, batch_size=4, summary_every=1000, pacer=pacer)
    lines(chunk(1, first=True))
    with self.assertLogs('absl', 'INFO') as logs:
      lines(chunk(4, num_steps=3, too_many_bad_steps=True, consecutive_bad_steps=2))
    self.assertStartsWith(logs.records[0].getMessage(), 'step 4/100 ')


  def test_one_budget_line_once_the_notice_time_has_passed(self):
    pacer = types.SimpleNamespace(expected_seconds=lambda: 0.0)
    lines = actions.ProgressLines(train_steps=100_000, batch_size=4, summary_every=10,
                                  pacer=pacer)
    clock = [1000.0]
    with mock.patch.object(progress.time, 'time', lambda: clock[0]), \
         self.assertLogs('absl', 'INFO') as logs:
      lines(chunk(1, first=True))
      for step in range(10, 60, 10):  # Every 10 s; at step 30, 29 steps in 30 s.
        clock[0] += 10.0
        lines(chunk(step, num_steps=10 if step > 10 else 9))
    budget = [record.getMessage() for record in logs.records
              if record.getMessage().startswith('Measured')]
    self.assertLen(budget, 1)  # At 30 s, once.
    # 99,970 steps left at 30/29 s: 28:43:37; half an hour: 30 + 1800 * 29/30 = 1,770 -> 1,700.
    self.assertStartsWith(budget[0], 'Measured 1.03 s a step over 29 steps: the 100,000 steps '
                          'end in about 28:43:37 (at ')
    self.assertIn('--gin_param=TRAIN_STEPS=1700 ', budget[0])


class CompilationNoticeTest(tf.test.TestCase):

  def test_names_what_is_traced_next(self):
    with self.assertLogs('absl', 'INFO') as logs:
      actions.CompilationNotice(['validation step', 'image summaries']).start(chunk(1, first=True))
    self.assertEqual([record.getMessage() for record in logs.records], [
        'Compiling the validation step and the image summaries (once per process).'])

  def test_nothing_traced_nothing_said(self):
    with self.assertNoLogs('absl', 'INFO'):
      actions.CompilationNotice([]).start(chunk(1, first=True))


class TrainScalarsTest(tf.test.TestCase):

  def test_means_since_the_last_write_at_the_first_chunk_and_summary_steps(self):
    directory = self.get_temp_dir()
    writer = tf.summary.create_file_writer(directory)
    scalars = actions.TrainScalars(writer, num_dims=10, learning_rate=lambda: 0.25, batch_size=4,
                                   summary_every=3)
    scalars(chunk(1, first=True, loss=9.0))
    scalars(chunk(2, loss=1.0))  # Not a summary step: accumulated.
    scalars(chunk(3, loss=4.0, seconds=1.5))
    scalars(chunk(4, loss=5.0, too_many_bad_steps=True))  # A stop for bad steps: written.
    values = event_values(directory)
    self.assertEqual(values['loss'], {1: 9.0, 3: 2.5, 4: 5.0})
    self.assertEqual(values['learning_rate'], {1: 0.25, 3: 0.25, 4: 0.25})
    self.assertEqual(values['bad_steps'], {1: 0.0, 3: 0.0, 4: 0.0})
    # The traced first chunk has no rate; steps 2 and 3: 2 steps in 2 s.
    self.assertEqual(values['steps_per_second'], {3: 1.0, 4: 2.0})
    self.assertEqual(values['examples_per_second'][3], 4.0)
    self.assertAllClose(values['nll_bound_nats'][3], 1.0)


class NonFiniteStopTest(tf.test.TestCase):

  def test_raises_naming_the_last_good_checkpoint_after_flushing(self):
    model_dir = self.get_temp_dir()
    writer = FakeWriter()
    stop = actions.NonFiniteStop(model_dir, 2, [writer])
    stop(chunk(3, consecutive_bad_steps=1))  # One bad step in a row: go on.
    self.assertEqual(writer.flushes, 0)
    with self.assertRaisesRegex(errors.NonFiniteError,
                                r'^training stopped at step 4: 2 consecutive steps had a '
                                r'non-finite loss or gradient \(train.max_consecutive_bad_steps '
                                r'= 2\); the last good checkpoint is None; lower'):
      stop(chunk(4, consecutive_bad_steps=2, too_many_bad_steps=True))
    self.assertEqual(writer.flushes, 1)


class FakeManager:
  """A CheckpointManager that records the steps it saves."""

  def __init__(self, saved=()):
    self.saved = list(saved)

  def save(self, checkpoint_number):
    self.saved.append(checkpoint_number)

  @property
  def latest_checkpoint(self):
    return f'ckpt-{self.saved[-1]}' if self.saved else None


class CheckpointsTest(tf.test.TestCase):

  def test_every_checkpoint_every_steps_and_the_last_never_after_a_bad_step(self):
    manager = FakeManager()
    checkpoints = actions.Checkpoints(manager, checkpoint_every=2)
    for step in (1, 2, 3):
      checkpoints(chunk(step, first=step == 1))
    checkpoints(chunk(4, consecutive_bad_steps=1))  # The latest stays the last good state.
    with self.assertLogs('absl', 'INFO') as logs:
      checkpoints(chunk(5, final=True))
    self.assertEqual(manager.saved, [2, 5])
    self.assertEqual(logs.records[0].getMessage(), 'Final checkpoint: ckpt-5.')
    checkpoints.save_final(5)  # Saved already.
    self.assertEqual(checkpoints.save_unsaved(5), 'ckpt-5')
    self.assertEqual(manager.saved, [2, 5])

  def test_save_final_and_save_unsaved_save_the_step_reached(self):
    manager = FakeManager([4])
    checkpoints = actions.Checkpoints(manager, checkpoint_every=10, last_saved_step=4)
    self.assertEqual(checkpoints.save_unsaved(4), 'ckpt-4')  # The resumed checkpoint.
    self.assertEqual(manager.saved, [4])
    checkpoints(chunk(7))
    with self.assertLogs('absl', 'INFO') as logs:
      checkpoints.save_final(7)
    self.assertEqual(logs.records[0].getMessage(), 'Final checkpoint: ckpt-7.')
    self.assertEqual(checkpoints.save_unsaved(9), 'ckpt-9')
    self.assertEqual(manager.saved, [4, 7, 9])
    self.assertEqual(checkpoints.last_saved_step, 9)


class FakeImages:
  """`summaries.ImageSummaries` without rendering: records the steps it writes at; `due` as set."""

  def __init__(self, writer):
    self.writer = writer
    self.writes = []
    self.is_due = True

  def due(self):
    return self.is_due

  def write(self):
    self.writes.append(self.writer.step)
    return 0.25


class ImageWritesTest(tf.test.TestCase):

  def test_first_write_after_the_first_chunk_then_at_due_summary_steps_and_the_end(self):
    writer = FakeWriter()
    images = FakeImages(writer)
    writes = actions.ImageWrites(images, writer, summary_every=2, stop=stop_flag())
    with self.assertLogs('absl', 'INFO') as logs:
      writes.start(chunk(1, first=True))
    self.assertEqual(logs.records[0].getMessage(),
                     'Wrote the first image summaries in 0.2 s (tracing included).')
    writes(chunk(1, first=True))  # Written by start.
    writes(chunk(3))  # Not a summary step.
    writes(chunk(4))
    images.is_due = False  # Over the time budget: only the last step is written.
    writes(chunk(6))
    writes(chunk(7, final=True))
    self.assertEqual(images.writes, [1, 4, 7])
    self.assertEqual(writer.flushes, 2)

  def test_nothing_once_a_signal_asked_to_stop(self):
    writer = FakeWriter()
    images = FakeImages(writer)
    writes = actions.ImageWrites(images, writer, summary_every=1, stop=stop_flag(15))
    writes.start(chunk(1, first=True))
    writes(chunk(2, final=True))
    self.assertEqual(images.writes, [])


if __name__ == '__main__':
  tf.test.main()
