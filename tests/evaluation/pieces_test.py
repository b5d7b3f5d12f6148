"""An evaluation in pieces equals one uninterrupted run, image by image (evaluator.py).

Stopped by a time limit after a few batches and continued, with the same batches or with another
batch size and replica count, every image's NLL, ELBO, KL and log p(x|z) equal those of an
uninterrupted evaluation; progress files of another checkpoint are refused, damaged ones set aside.
The binaries' --time_limit (exit status 75) is checked end to end in time_limits_test.py.
"""

import json
import os

import numpy as np
import pytest

from vlae_tf import code_version
from vlae_tf import errors
from vlae_tf.evaluation import evaluator as evaluation
from vlae_tf.evaluation import pieces
from vlae_tf import distribution


class StopAfter:
  """A stand-in for `time_limits.TimeLimit` that refuses the next unit after `allowed` checks."""

  seconds = 1.0

  def __init__(self, allowed):
    self.allowed = allowed
    self.checks = 0

  def allows(self, seconds):
    del seconds
    self.checks += 1
    return self.checks <= self.allowed

  def elapsed(self):
    return 0.0

  def __str__(self):
    return 'the test\'s'


def make_evaluator(run_dir, shared_data, batch_size=4, devices=('/cpu:0',), checkpoint=None,
                   max_examples=20, precision=None):
  return evaluation.CheckpointEvaluator(
      run_dir, 'test', 3, max_examples, batch_size, str(shared_data), None, 7,
      distribution.make_strategy(list(devices)), per_example=True, checkpoint=checkpoint,
      precision=precision)


def progress_path(run_dir):
  return os.path.join(run_dir, pieces.progress_file('test', 3, 20, 7))


def evaluate_in_two_pieces(run_dir, shared_data, **second):
  """Stops after the third batch of 4 images, then continues with `second`'s evaluator."""
  first = make_evaluator(run_dir, shared_data)
  path = progress_path(run_dir)
  # The first batch traces and is not timed; the limit is checked after each batch from the second.
  with pytest.raises(errors.TimeLimitReached, match=r'12 of 20 images done .* kept in '):
    pieces.evaluate_in_pieces(first, first.checkpoint, path, StopAfter(1), progress=False)
  with open(path) as f:
    kept = json.load(f)
  assert len(kept['values']['nll']) == 12 and kept['report']['partial']
  assert kept['pieces'][0]['images'] == 12
  evaluator = make_evaluator(run_dir, shared_data, **second)
  report, per_image = pieces.evaluate_in_pieces(evaluator, evaluator.checkpoint, path,
                                                    progress=False)
  assert not os.path.exists(path)  # Complete: the progress file is gone.
  assert [piece['images'] for piece in report['pieces']] == [12, 8]
  return report, per_image


def test_two_pieces_equal_one_run_image_by_image(run_dir, shared_data):
  whole = make_evaluator(run_dir, shared_data)
  expected_report, expected = whole(whole.checkpoint, progress=False)
  report, per_image = evaluate_in_two_pieces(run_dir, shared_data)
  for key in pieces.VALUE_KEYS:
    assert len(per_image[key]) == 20
    np.testing.assert_array_equal(per_image[key], expected[key])
  assert report['nll_nats'] == expected_report['nll_nats']
  assert report['nll_stderr_nats'] == expected_report['nll_stderr_nats']


def test_a_piece_with_another_batch_and_replicas_continues_with_the_same_noise(
    run_dir, shared_data):
  """The images' noise follows their index: 2 replicas and batches of 6 give the same values but
  for float round-off."""
  whole = make_evaluator(run_dir, shared_data)
  _, expected = whole(whole.checkpoint, progress=False)
  report, per_image = evaluate_in_two_pieces(run_dir, shared_data, batch_size=6,
                                             devices=('/cpu:0', '/cpu:1'))
  assert [piece['replicas'] for piece in report['pieces']] == [1, 2]
  for key in pieces.VALUE_KEYS:
    np.testing.assert_allclose(per_image[key], expected[key], rtol=1e-4, atol=1e-2)


def test_an_image_gets_the_same_noise_in_any_subset(run_dir, shared_data):
  """Image i of the split has one noise: the 10-image subset's values are the 30-image subset's
  at the images the two share (every third one)."""
  small = make_evaluator(run_dir, shared_data, max_examples=10)
  large = make_evaluator(run_dir, shared_data, max_examples=30)
  _, of_small = small(small.checkpoint, progress=False)
  _, of_large = large(large.checkpoint, progress=False)
  # strided_subset: 10 of 10,000 are images 500, 1500, ...; 30 are 166, 500, 833, 1166, 1500, ...
  np.testing.assert_allclose(of_small['nll'], of_large['nll'][1::3], rtol=1e-5)


def first_piece(run_dir, shared_data):
  """(the progress file's path, its content) after a piece stopped by the time limit."""
  path = progress_path(run_dir)
  first = make_evaluator(run_dir, shared_data)
  with pytest.raises(errors.TimeLimitReached):
    pieces.evaluate_in_pieces(first, first.checkpoint, path, StopAfter(1), progress=False)
  with open(path) as f:
    return path, json.load(f)


def test_a_progress_file_of_another_checkpoint_is_refused_in_one_line(run_dir, shared_data):
  path, kept = first_piece(run_dir, shared_data)
  kept['settings'].update(checkpoint='ckpt-1', step=1)  # as if training went on meanwhile
  with open(path, 'w') as f:
    json.dump(kept, f)
  evaluator = make_evaluator(run_dir, shared_data)
  with pytest.raises(errors.IncompatibleRunError) as raised:
    pieces.evaluate_in_pieces(evaluator, evaluator.checkpoint, path, progress=False)
  message = str(raised.value)
  assert '\n' not in message and 'checkpoint ckpt-1 there, ckpt-2 here' in message
  assert '--checkpoint=1' in message and '12 of 20 images' in message
  with open(path) as f:
    assert json.load(f) == kept  # Nothing mixed in, nothing lost.


def test_a_piece_in_another_precision_is_refused_in_one_line(run_dir, shared_data):
  """The run trained in float32; a piece computed in mixed_bfloat16 would mix two arithmetics."""
  path, kept = first_piece(run_dir, shared_data)
  assert kept['settings']['precision'] == 'float32'
  evaluator = make_evaluator(run_dir, shared_data, precision='mixed_bfloat16')
  assert evaluator.model.precision == 'mixed_bfloat16'
  with pytest.raises(errors.IncompatibleRunError) as raised:
    pieces.evaluate_in_pieces(evaluator, evaluator.checkpoint, path, progress=False)
  message = str(raised.value)
  assert '\n' not in message
  assert 'precision float32 there, mixed_bfloat16 here' in message
  assert 'finish it with --precision=float32, or remove the file' in message
  with open(path) as f:
    assert json.load(f) == kept


@pytest.mark.parametrize('damage', ['{"settings": {"num_images"', 'not json', 'values'])
def test_a_damaged_progress_file_is_set_aside_and_the_evaluation_starts_again(
    run_dir, shared_data, damage, caplog):
  path, kept = first_piece(run_dir, shared_data)
  if damage == 'values':  # readable, but more values than images
    kept['values']['nll'] += [1.0] * 20
    text = json.dumps(kept)
  else:
    text = damage
  with open(path, 'w') as f:
    f.write(text)
  evaluator = make_evaluator(run_dir, shared_data)
  report, per_image = pieces.evaluate_in_pieces(evaluator, evaluator.checkpoint, path,
                                                    progress=False)
  assert len(per_image['nll']) == 20 and [p['images'] for p in report['pieces']] == [20]
  aside = [name for name in os.listdir(run_dir) if '.damaged-' in name]
  assert len(aside) == 1 and aside[0].startswith(os.path.basename(path))
  with open(os.path.join(run_dir, aside[0])) as f:
    assert f.read() == text  # Set aside as it was, never deleted.
  assert aside[0] in caplog.text


def test_evaluate_writes_every_image_and_the_pieces(run_dir, shared_data):
  report = evaluation.evaluate(run_dir, split='test', num_samples=3, max_examples=20,
                               batch_size=4, data_dir=str(shared_data), seed=7,
                               strategy=distribution.make_strategy(['/cpu:0']), progress=False)
  with open(os.path.join(run_dir, 'eval_test_per_image.json')) as f:
    per_image = json.load(f)
  assert per_image['settings']['num_images'] == 20 and len(per_image['values']['nll']) == 20
  assert np.mean(per_image['values']['nll']) == pytest.approx(report['nll_nats'])
  [piece] = report['pieces']
  assert piece['images'] == 20 and piece['batch_size'] == 4 and 'cores' in piece['cpu']
  assert piece['commit'] == code_version.commit()  # The code that ran it.
