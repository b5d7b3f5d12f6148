"""Unit tests of evaluation.py on the tiny run of tests/testdata (two steps, copied per test).

End-to-end runs of bin/eval are binaries_test.py's; damaged checkpoints in a curve are
checkpoints_test.py's; the numbers of the old run are old_runs_test.py's.
"""

import json
import os

import pytest

from vlae_tf.runs import checkpoints
from vlae_tf.runs import directory
from vlae_tf import distribution
from vlae_tf.evaluation import evaluator as evaluation



def evaluate(run_dir, shared_data, **kwargs):
  settings = dict(split='test', num_samples=2, max_examples=3, batch_size=2,
                  data_dir=str(shared_data), strategy=distribution.make_strategy(['/cpu:0']),
                  progress=False)
  settings.update(kwargs)
  return evaluation.evaluate(run_dir, **settings)


def test_report_is_written_and_appended_to_the_history(run_dir, shared_data):
  report = evaluate(run_dir, shared_data)
  assert (report['step'], report['num_examples'], report['num_samples']) == (2, 3, 2)
  assert report['dataset'] == 'static_mnist' and report['num_dims'] == 784
  assert report['nll_bound_nats'] == pytest.approx(-report['elbo_nats'])
  assert report['nll_nats'] <= report['nll_bound_nats'] + 1e-3  # K = 2 bounds tighter than K = 1.
  assert report['kl_bits'] == pytest.approx(report['kl_nats'] / 0.6931471805599453)
  with open(os.path.join(run_dir, 'eval_test.json')) as f:
    assert json.load(f) == report
  evaluate(run_dir, shared_data, num_samples=3)
  with open(os.path.join(run_dir, evaluation.HISTORY_FILE)) as f:
    history = [json.loads(line) for line in f]
  assert [entry['num_samples'] for entry in history] == [2, 3]


def test_the_same_seed_gives_the_same_numbers(run_dir, shared_data):
  first = evaluate(run_dir, shared_data, seed=4)
  again = evaluate(run_dir, shared_data, seed=4)
  other = evaluate(run_dir, shared_data, seed=5)
  for key in ('nll_nats', 'elbo_nats', 'kl_nats'):
    assert again[key] == first[key]
  assert first['elbo_nats'] != other['elbo_nats']


def test_per_example_values_follow_the_subset(run_dir, shared_data):
  evaluator = evaluation.CheckpointEvaluator(
      run_dir, 'test', 2, 3, 2, str(shared_data), None, 0,
      distribution.make_strategy(['/cpu:0', '/cpu:1']), per_example=True)
  report, per_image = evaluator(evaluator.checkpoint, progress=False)
  assert sorted(per_image) == ['elbo', 'kl', 'log_px_z', 'nll']
  assert len(per_image['nll']) == 3
  assert per_image['nll'].mean() == pytest.approx(report['nll_nats'], rel=1e-5)


def test_run_checkpoints_oldest_first(run_dir):
  [(path, written)] = checkpoints.run_checkpoints(run_dir)
  assert path == os.path.join(run_dir, 'ckpt-2') and written > 1.7e9


@pytest.mark.parametrize('num_pieces,x_label', [(1, 'training wall time (minutes)'),
                                                (2, 'training step')])
def test_a_curve_of_a_run_trained_in_pieces_is_plotted_against_steps(
    run_dir, shared_data, monkeypatch, num_pieces, x_label):
  """Between pieces the run stood still: its wall time is no training time."""
  with open(os.path.join(run_dir, directory.PIECES_FILE), 'w') as f:
    for piece in range(num_pieces):
      f.write(json.dumps({'first_step': piece, 'last_step': piece + 1}) + '\n')
  drawn = {}
  monkeypatch.setattr(evaluation.plots, 'write_line_plot',
                      lambda path, points, x_label, **kwargs: drawn.update(x_label=x_label))
  reports = evaluation.evaluate_curve(
      run_dir, num_samples=2, max_examples=2, batch_size=2, data_dir=str(shared_data),
      strategy=distribution.make_strategy(['/cpu:0']), progress=False)
  assert [report['step'] for report in reports] == [2]
  assert reports[0]['precision'] == 'float32'
  assert drawn['x_label'] == x_label
