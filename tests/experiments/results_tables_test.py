"""Tests of results_tables.py: results.md and paired differences."""

import numpy as np
from absl.testing import absltest

from vlae_tf.experiments import results_tables


class ResultsTablesTest(absltest.TestCase):

  def test_markdown_shows_model_selection_and_units(self):
    row = {'experiment': 'caltech101_vlae', 'paper_row': 'Table 5, VLAE', 'paper_nll': 77.36,
           'paper_unit': 'nats', 'paper_kl_bits': None, 'nll_nats': 80.123,
           'nll_stderr_nats': 0.5, 'bits_per_dim': 0.1, 'nll_bound_nats': 82.0,
           'nll_bound_bits_per_dim': 0.15, 'kl_bits': 20.0,
           'num_samples': 128, 'num_examples': 1000, 'steps': 4000, 'trained_steps': 8000,
           'selected_on': 'valid', 'train_seconds': 3725.0, 'images_per_second': 500.0,
           'seed': 0, 'commit': 'abc1234'}
    text = results_tables.results_markdown({'rows': [row], 'differences': [],
                                       'settings': {'split': 'test', 'seed': 0}})
    self.assertIn('| caltech101_vlae | Table 5, VLAE | 77.36 | 80.12 +- 0.50 | 82.00 | 20.0 (-) |'
                  ' 128 | 1000 | 4000 (best on valid of 8000) | 1:02:05 | 500 | 0 | abc1234 |',
                  text)

  def test_paired_difference(self):
    first = {'per_image': {'nll': [1.0, 2.0, 4.0]}}
    second = {'per_image': {'nll': [0.5, 2.0, 3.0]}}
    difference = results_tables.paired_difference(first, second)
    self.assertAlmostEqual(difference['mean'], 0.5)
    self.assertAlmostEqual(difference['stderr'], np.std([0.5, 0.0, 1.0], ddof=1) / np.sqrt(3))



if __name__ == '__main__':
  absltest.main()
