"""Tests of vlae_tf/benchmark.py: one tiny run of every benchmark, and the FLOP counter."""

import json
import math

import gin
import pytest
import tensorflow as tf

from vlae_tf.experiments import benchmark
from vlae_tf import errors
from vlae_tf import gin_parsing

TINY = ['mnist_vlae.gin', 'testing/tiny.gin']
DEPTH_LIMITED = ['mnist_vlae.gin', 'models/depth_limited_decoder.gin', 'testing/tiny.gin']

REQUIRED_KEYS = {
    'train': ('images_per_s', 'flops_per_image', 'peak_flops', 'fraction_of_peak', 'batch_size',
              'replicas', 'peak_rss_mb'),
    'eval': ('importance_samples_per_s', 'peak_flops', 'batch_size', 'replicas', 'peak_rss_mb'),
    'sample': ('naive_seconds_per_100', 'fast_seconds_per_100', 'peak_flops', 'replicas',
               'peak_rss_mb'),
}


def _positive_finite(value):
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


class CountFlopsTest(tf.test.TestCase):

  def test_conv_and_matmul_by_formula(self):
    # batch 2, height 5, width 7, 3 -> 4 channels, 3x3 kernel; then a [2, 4] x [4, 6] product.
    kernel = tf.zeros([3, 3, 3, 4])
    weights = tf.zeros([4, 6])

    def forward(images):
      features = tf.nn.conv2d(images, kernel, strides=1, padding='SAME')
      return tf.linalg.matmul(tf.reduce_mean(features, [1, 2]), weights)

    graph = tf.function(forward).get_concrete_function(tf.TensorSpec([2, 5, 7, 3])).graph
    counts = benchmark.count_flops(graph)
    self.assertEqual(counts['matmul_conv'], 2 * (2 * 5 * 7 * 4) * (3 * 3 * 3) + 2 * 2 * 6 * 4)

  def test_counts_inside_nested_functions(self):
    inner = tf.function(lambda x: tf.linalg.matmul(x, x))
    graph = tf.function(lambda x: inner(x) + 1.0).get_concrete_function(
        tf.TensorSpec([3, 3])).graph
    counts = benchmark.count_flops(graph)
    self.assertEqual(counts['matmul_conv'], 2 * 3 * 3 * 3)
    self.assertEqual(counts['function_calls'], 1)


def _check_line(result):
  result = json.loads(benchmark.to_json_line(result))
  for key in REQUIRED_KEYS[result['what']]:
    assert _positive_finite(result[key]), f'{result["what"]} {key}: {result}'
  assert result['tf_version'] == tf.__version__
  assert len(result['load_average']) == 3
  return result


@pytest.mark.slow
def test_train_and_eval_lines_and_counted_flops(shared_data):
  data_dir = str(shared_data)
  # The depth-limited decoder, whose masked convolution's FLOPs have the closed form below.
  gin_parsing.parse_gin(DEPTH_LIMITED, ['pixelcnn.DepthLimitedPixelCNN.filters = 3'])
  lines = benchmark.run(
      what=('train', 'eval'), batch_size=4, data_dir=data_dir, repeats=1, warmup=1,
      steps_per_chunk=1, eval_batch_size=2, num_samples=3, chunk_size=2, peak_repeats=1,
      precisions=('float32', 'mixed_bfloat16'))
  # One line per benchmark and precision, the precisions of one benchmark next to each other.
  assert [(line['what'], line['precision']) for line in lines] == [
      ('train', 'float32'), ('train', 'mixed_bfloat16'),
      ('eval', 'float32'), ('eval', 'mixed_bfloat16')]
  for line in lines:
    _check_line(line)
    assert line['peak_flops'] == line['peak_flops_' + line['compute_dtype']]
    assert line['compute_dtype'] == {'float32': 'float32',
                                     'mixed_bfloat16': 'bfloat16'}[line['precision']]
  train, mixed_train, evaluation, _ = lines
  assert _positive_finite(train['peak_flops_bfloat16'])
  assert mixed_train['fraction_of_peak'] == pytest.approx(
      mixed_train['achieved_flops'] / mixed_train['peak_flops_bfloat16'])
  # The same model in both precisions: the same trainable parameters and counted FLOPs.
  assert mixed_train['trainable_parameters'] == train['trainable_parameters']
  assert mixed_train['flops_per_image'] == train['flops_per_image']
  # The bound precision is restored afterwards.
  assert benchmark.bound_precision() == 'float32'
  assert train['replicas'] == 2  # conftest: two logical CPU devices.
  # The count exceeds the decoder's first masked conv alone (3x3, 1 -> 3 filters at 28x28) and
  # includes the backward pass (about 3x the forward).
  first_conv = 2 * 28 * 28 * 3 * (3 * 3 * 1)
  assert train['flops_per_image'] > first_conv
  assert 2.0 < train['flops_per_image'] / train['forward_flops_per_image'] < 3.5

  # Wider decoder: the forward count grows by at least the formula of the tied masked 3x3 conv
  # (num_masked_layers - 1 = 1 application) going from 3 to 5 filters.
  gin_parsing.parse_gin(DEPTH_LIMITED, ['pixelcnn.DepthLimitedPixelCNN.filters = 5'])
  model = benchmark.initialized_model(benchmark.real_batch(4, data_dir))
  wider = benchmark.train_step_flops(model, 4, 0.01, backward=False)['matmul_conv']
  masked_growth = 2 * 28 * 28 * 9 * (5 * 5 - 3 * 3)
  assert wider - train['forward_flops_per_image'] > masked_growth


@pytest.mark.slow
def test_sample_line_times_both_samplers_exactly(shared_data):
  gin_parsing.parse_gin(TINY)
  (sample,) = benchmark.run(what=('sample',), batch_size=4, data_dir=str(shared_data),
                            repeats=1, warmup=1, naive_repeats=1, peak_repeats=1)
  assert _check_line(sample)['what'] == 'sample'
  assert sample['precision'] == 'float32'  # The bound one (base.gin) when none is asked for.
  assert sample['naive_extrapolated'] is False
  assert sample['naive_decoder_passes'] == 28 * 28


@pytest.mark.slow
def test_precisions_and_xla_on_and_off_in_one_run(shared_data):
  """What docs/gpu.md's command measures, on the tiny PixelCNN without z: train and eval in
  mixed_float16 (float32 and bfloat16 lines are the test above's), each without and with XLA,
  every line naming its device."""
  gin_parsing.parse_gin(['dynamic_mnist_pixelcnn.gin', 'testing/tiny.gin'])
  lines = benchmark.run(
      what=('train', 'eval'), batch_size=4, data_dir=str(shared_data), repeats=1, warmup=1,
      steps_per_chunk=1, eval_batch_size=2, num_samples=1, chunk_size=1, peak_repeats=1,
      precisions=('mixed_float16',), jit_compiles=(False, True))
  assert [(line['what'], line['precision'], line['xla']) for line in lines] == [
      ('train', 'mixed_float16', False), ('train', 'mixed_float16', True),
      ('eval', 'mixed_float16', False), ('eval', 'mixed_float16', True)]
  for line in lines:
    _check_line(line)
    assert line['jit_compile'] is line['xla']
    assert (line['device_name'], line['device_peak_memory_mb']) == ('cpu', None)  # No GPU here.
    assert line['peak_flops'] == line['peak_flops_' + line['compute_dtype']]
  assert {line['compute_dtype'] for line in lines} == {'float16'}
  assert lines[0]['peak_flops_float32'] > 0 and lines[0]['peak_flops_bfloat16'] > 0
  # The bindings are restored afterwards.
  assert benchmark.bound_precision() == 'float32'
  assert gin.query_parameter('train.jit_compile') == 'auto'


def test_unknown_xla_values_are_one_line():
  with pytest.raises(errors.CliError, match=r"Unknown --jit_compile value 'maybe'; expected "
                     r'some of auto,true,false\.'):
    benchmark.parse_jit_compile('maybe')
  assert [benchmark.parse_jit_compile(v) for v in ('AUTO', 'true', 'False')] == ['auto', True,
                                                                                 False]


def test_unknown_precisions_are_refused():
  gin_parsing.parse_gin(TINY)
  with pytest.raises(errors.CliError, match='Unknown precision'):
    benchmark.run(what=('eval',), precisions=('float16',))


if __name__ == '__main__':
  tf.test.main()
