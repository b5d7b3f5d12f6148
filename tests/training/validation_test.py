"""Tests of validation.py: validation passes alone, with a fake evaluator over 5 tiny images.

The evaluator double sums fixed per-image ELBO terms over the real (weight 1) images of the padded
batches, as `distribution.DistributedEvaluator` does, and calls `report` after every batch.
"""

import types

import tensorflow as tf

import doubles

from vlae_tf.training import actions
from vlae_tf.training import validation

NUM_DIMS = 5 * 7 * 3


class FakeEvaluator:
  """Image i has elbo -(i + 1), kl 0.5 and log p(x|z) = elbo - kl (images hold their index)."""

  def __init__(self, on_batch=None):
    self.calls = []
    self._on_batch = on_batch

  def __call__(self, batches, report=None):
    totals = {}
    batch_count = 0
    for images, weights in batches:
      batch_count += 1
      index = images[:, 0, 0, 0]
      for key, values in (('elbo', -(index + 1.0)), ('kl', tf.fill(tf.shape(index), 0.5)),
                          ('log_px_z', -(index + 1.5))):
        totals[key] = totals.get(key, 0.0) + float(tf.reduce_sum(values * weights))
        totals[key + '/squares'] = (totals.get(key + '/squares', 0.0) +
                                    float(tf.reduce_sum(values**2 * weights)))
      totals['count'] = totals.get('count', 0.0) + float(tf.reduce_sum(weights))
      if self._on_batch is not None:
        self._on_batch()
      if report is not None:
        report(int(totals['count']))
    self.calls.append(batch_count)
    return totals


def tiny_images(count=5):
  """[5, 7, 3] images filled with their index."""
  return tf.data.Dataset.range(count).map(lambda i: tf.fill([5, 7, 3], tf.cast(i, tf.float32)))


def chunk(step, first=False, final=False):
  return actions.Chunk(step=step, num_steps=1, seconds=0.1, metrics={}, first=first, final=final)


class ValidationPassesTest(tf.test.TestCase):

  def passes(self, evaluator, stop=None, multi_worker=False, eval_every=2):
    self.directory = self.get_temp_dir()
    self.writer = tf.summary.create_file_writer(self.directory)
    return validation.ValidationPasses(
        evaluator, tiny_images(), 2, split='valid', eval_every=eval_every, final_step=5,
        writer=self.writer, num_dims=NUM_DIMS, multi_worker=multi_worker,
        stop=stop or types.SimpleNamespace(signum=None, requested=False))

  def test_passes_every_eval_every_steps_and_at_the_last_step(self):
    evaluator = FakeEvaluator()
    passes = self.passes(evaluator)
    self.assertEqual(passes.count, 5)
    with self.assertLogs('absl', 'INFO') as logs:
      passes.start(chunk(1, first=True))  # Traces on one batch.
      for step in range(1, 5):
        passes(chunk(step, first=step == 1))
      passes(chunk(5, final=True))
    self.assertEqual(evaluator.calls, [1, 3, 3, 3])  # 5 images in batches of 2: 3 batches.
    # Mean ELBO of images 0..4: -(1 + 2 + 3 + 4 + 5) / 5; 3 nats / (105 ln 2) = 0.0412 bits/dim.
    self.assertAllClose(passes.metrics, {'elbo': -3.0, 'kl': 0.5, 'log_px_z': -3.5,
                                         'nll_bound': 3.0})
    self.assertAllClose(doubles.scalars(self.directory, 'nll_bound_nats'),
                        {2: 3.0, 4: 3.0, 5: 3.0})
    messages = [record.getMessage() for record in logs.records]
    self.assertStartsWith(messages[0], 'Compiled the validation step in ')
    self.assertIn('Validation at step 2: 5 images of valid.', messages)
    self.assertIn('Final validation at step 5: 5 images of valid.', messages)
    self.assertStartsWith(messages[-1], 'validation step 5: elbo -3.000 nats (0.0412 bits/dim '
                          'bound), kl 0.500 nats, log p(x|z) -3.500 nats, 5 images in ')
    self.assertTrue(passes.final_pass(5))  # The last chunk ran it: no second pass.
    self.assertLen(evaluator.calls, 4)

  def test_final_pass_runs_when_the_last_chunk_did_not(self):
    evaluator = FakeEvaluator()
    passes = self.passes(evaluator, eval_every=0)
    passes(chunk(3))
    self.assertEqual((evaluator.calls, passes.metrics), ([], {}))
    self.assertTrue(passes.final_pass(3))
    self.assertEqual(evaluator.calls, [3])
    self.assertAllClose(passes.metrics['elbo'], -3.0)

  def test_a_signal_abandons_the_pass_between_batches(self):
    stop = types.SimpleNamespace(signum=None, requested=False)

    def signal_arrives():
      stop.signum, stop.requested = 15, True

    evaluator = FakeEvaluator(on_batch=signal_arrives)
    passes = self.passes(evaluator, stop=stop)
    with self.assertLogs('absl', 'WARNING') as logs:
      passes(chunk(2))
    self.assertEqual(evaluator.calls, [])  # Stopped in the first batch's report.
    self.assertEqual(passes.metrics, {})
    self.assertStartsWith(logs.records[0].getMessage(), 'Validation at step 2 abandoned after ')
    self.assertFalse(passes.final_pass(2))  # Stopping: no metrics.
    self.assertEqual(doubles.scalars(self.directory, 'elbo_nats'), {})
    passes(chunk(4))  # Once stopping, no pass begins.
    passes.start(chunk(1, first=True))  # Nor is anything traced.
    self.assertEqual(evaluator.calls, [])

  def test_several_workers_finish_every_pass_whatever_the_signals(self):
    stop = types.SimpleNamespace(signum=15, requested=True)
    evaluator = FakeEvaluator()
    passes = self.passes(evaluator, stop=stop, multi_worker=True)
    passes.start(chunk(1, first=True))
    passes(chunk(2))
    self.assertEqual(evaluator.calls, [1, 3])
    self.assertAllClose(passes.metrics['elbo'], -3.0)


if __name__ == '__main__':
  tf.test.main()
