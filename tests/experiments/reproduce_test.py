"""Tests of the results harness (bin/reproduce) on tiny runs of real static MNIST."""

import dataclasses
import io
import json
import os
import pathlib
import tempfile

from absl.testing import absltest
import numpy as np
from PIL import Image
import pytest

from vlae_tf import errors
from vlae_tf.experiments import reproduce
from vlae_tf.experiments import table_training

TINY = 'testing/tiny.gin'


class ResolveTest(absltest.TestCase):

  def test_tables_name_shipped_gin_files_and_paper_numbers(self):
    gin_dir = os.path.join(str(pathlib.Path(__file__).resolve().parents[2]), 'gin')
    for table, files in reproduce.TABLES.items():
      for path in files:
        self.assertTrue(os.path.isfile(os.path.join(gin_dir, path)), f'{table}: {path}')
    self.assertEqual(reproduce.PAPER['mnist_vlae'].nll, 79.03)

  def test_unknown_table_and_empty_request_are_one_line_errors(self):
    with self.assertRaisesRegex(errors.ReproduceError, 'Unknown --table .*mnist'):
      reproduce.resolve_experiments('mnsit', [])
    with self.assertRaisesRegex(errors.ReproduceError, 'Nothing to reproduce'):
      reproduce.resolve_experiments(None, [])
    with self.assertRaisesRegex(errors.ReproduceError, 'named twice: mnist_vlae'):
      reproduce.resolve_experiments('mnist', ['gin/mnist_vlae.gin'])

  def test_bad_settings_and_foreign_runs_are_one_line_errors(self):
    output = tempfile.mkdtemp()
    with self.assertRaisesRegex(errors.ReproduceError, 'select the model on another split'):
      reproduce.reproduce(output, ['mnist_vlae.gin'], reproduce.Settings(select_split='test'))
    with self.assertRaisesRegex(errors.ReproduceError, '--split=tset is not a split'):
      reproduce.reproduce(output, ['mnist_vlae.gin'], reproduce.Settings(split='tset'))
    # A run directory of another config is not reported under this one.
    run_dir = os.path.join(output, 'runs', 'mnist_vlae')
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, 'config.gin'), 'w') as f:
      f.write("train.learning_rate = 0.1\ntrain.dataset = 'static_mnist'\n")
    with self.assertRaisesRegex(errors.ReproduceError, 'holds a run of another config'):
      reproduce.reproduce(output, ['mnist_vlae.gin'], reproduce.Settings(train_steps=4))

@pytest.mark.slow
def test_reproduce_two_tiny_experiments_then_resume_without_retraining(tmp_path, shared_data):
  # No image summaries: the tables never read them, and each bin/train would trace a sampler.
  settings = reproduce.Settings(
      train_steps=4, num_samples=3, max_examples=7, curve_num_samples=2, curve_max_examples=4,
      batch_size=4, data_dir=str(shared_data), gin_files=(TINY,),
      gin_params=('train.num_summary_images = 0',))
  files = ['mnist_vlae.gin', 'mnist_factorized_vae.gin']
  results = reproduce.reproduce(str(tmp_path), files, settings)

  for name in (reproduce.RESULTS_JSON, reproduce.RESULTS_MD, reproduce.CURVE_PNG):
    assert (tmp_path / name).is_file(), name
  with Image.open(tmp_path / reproduce.CURVE_PNG) as image:
    assert image.size[0] > 100 and image.size[1] > 100
  on_disk = json.loads((tmp_path / reproduce.RESULTS_JSON).read_text())
  assert [row['experiment'] for row in on_disk['rows']] == ['mnist_vlae', 'mnist_factorized_vae']
  for row in on_disk['rows']:
    assert row['trained_now']
    assert row['steps'] == 4
    assert row['num_examples'] == 7 and row['num_samples'] == 3
    assert len(row['per_image']['nll']) == 7
    assert np.isfinite(row['nll_nats']) and row['kl_bits'] >= -1e-3 * 784
    assert [point['step'] for point in row['curve']][-1] == 4
    assert row['images_per_second'] > 0 and row['commit']
  assert len(on_disk['differences']) == 1
  markdown = (tmp_path / reproduce.RESULTS_MD).read_text()
  assert '| mnist_vlae | Table 1, VLAE | 79.03 |' in markdown
  assert 'Paired differences' in markdown

  checkpoint = tmp_path / 'runs' / 'mnist_vlae' / 'ckpt-4.index'
  written = checkpoint.stat().st_mtime_ns
  again = reproduce.reproduce(str(tmp_path), files, settings)
  assert not any(row['trained_now'] for row in again['rows'])
  assert checkpoint.stat().st_mtime_ns == written
  for first, second in zip(results['rows'], again['rows']):
    assert first['nll_nats'] == second['nll_nats']

  # Model selection on valid: the row's checkpoint is the one with the best validation curve.
  selected = reproduce.reproduce(str(tmp_path), files[:1], dataclasses.replace(
      settings, select_split='valid'))
  row = selected['rows'][0]
  assert not row['trained_now'] and row['selected_on'] == 'valid'
  best = min(row['curve'], key=lambda point: point['nll_nats'])
  assert row['steps'] == best['step']
  assert list((tmp_path / 'runs' / 'mnist_vlae').glob('reproduce_curve_valid_*.json'))


def test_the_table_eta_counts_training_before_the_first_evaluation_is_timed():
  progress = table_training.TableProgress(['a', 'b'], stream=io.StringIO())
  assert progress.eta_text() == '?'  # Nothing timed yet.
  progress.remaining_steps = {'a': 3600, 'b': 0}
  progress.seconds_per_step = 1.0
  assert progress.eta_text() == '1:00:00 + 2 evaluations'
  progress.remaining_evaluations = {'b'}
  assert progress.eta_text() == '1:00:00 + 1 evaluation'
  progress.seconds_per_evaluation = 60.0
  assert progress.eta_text() == '1:01:00'
  progress.remaining_steps = {'a': 0, 'b': 0}
  progress.seconds_per_step = None
  assert progress.eta_text() == '0:01:00'
