"""Tests of export.py: the SavedModel of a run loads without vlae_tf and serves every function.

The run is the tiny static MNIST VLAE (gin/testing/tiny.gin) initialized on a real batch and saved
the way `training.train` saves it (config.gin, a checkpoint with `averaged_model` and `step`),
without the training steps, which test_resume in loop_test.py covers.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import doubles

from vlae_tf.data import datasets
from vlae_tf import errors
from vlae_tf.export import saved_model as export
from vlae_tf import files
from vlae_tf import gin_parsing
from vlae_tf.models import vlae as model_lib
from vlae_tf.runs import run_config

STEP = 7
LATENT_SIZE = 3  # testing/tiny.gin
SIGNATURES = {'encode', 'decode', 'sample', 'log_prob', 'pixel_log_prob', 'metadata'}


@pytest.fixture(scope='module')
def run(shared_data, tmp_path_factory):
  """(model_dir, model, images): a run directory with one checkpoint at step STEP."""
  model_dir = tmp_path_factory.mktemp('run')
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'])
  files.atomic_write_text(str(model_dir / run_config.CONFIG_FILE), gin.config_str())
  model = model_lib.make_model()
  images = next(iter(datasets.load('static_mnist', 'test', data_dir=str(shared_data)).batch(4)))
  model.initialize(images)
  step = tf.Variable(STEP, dtype=tf.int64)
  checkpoint = tf.train.Checkpoint(step=step, averaged_model=model)
  tf.train.CheckpointManager(checkpoint, str(model_dir), 1, step_counter=step).save(STEP)
  return model_dir, model, images


@pytest.fixture(scope='module')
def exported(run):
  model_dir, _, _ = run
  return export.export(str(model_dir), decode_chunk_size=3)


@pytest.mark.slow
def test_export_layout(run, exported):
  model_dir, _, _ = run
  assert exported == os.path.join(str(model_dir), 'export', str(STEP))
  assert os.path.isfile(os.path.join(exported, 'saved_model.pb'))
  assert os.path.isfile(os.path.join(exported, 'assets', 'config.gin'))
  assert os.listdir(os.path.join(str(model_dir), 'export')) == [str(STEP)]  # No temporaries.


@pytest.mark.slow
def test_exported_functions_match_the_model(run, exported):
  _, model, images = run
  loaded = tf.saved_model.load(exported)
  assert set(loaded.signatures) == SIGNATURES

  encoded = loaded.encode(images)
  posterior_mean, _ = model.encode(images, tf.constant([0, 0]))
  np.testing.assert_allclose(encoded['posterior_mean'], posterior_mean, rtol=1e-5, atol=1e-5)
  assert encoded['z'].shape == (4, *model.latent_shape)
  np.testing.assert_array_equal(loaded.encode(images, seed=0)['z'], encoded['z'])
  assert not np.array_equal(loaded.encode(images, seed=1)['z'], encoded['z'])

  pixel = loaded.pixel_log_prob(images, encoded['z'])['pixel_log_prob']
  np.testing.assert_allclose(pixel, model.pixel_log_prob(images, encoded['z']), rtol=1e-5,
                             atol=1e-5)

  log_prob = loaded.log_prob(images, 3)['log_prob']
  assert log_prob.shape == (4,)
  assert np.all(np.isfinite(log_prob)) and np.all(log_prob < 0)
  np.testing.assert_array_equal(loaded.log_prob(images, 3, seed=0)['log_prob'], log_prob)

  # decode_chunk_size=3: 4 codes take two chunks.
  decoded = loaded.decode(encoded['z'])['images']
  assert decoded.shape == images.shape
  assert set(np.unique(decoded)) <= {0.0, 1.0}
  np.testing.assert_array_equal(loaded.decode(encoded['z'])['images'], decoded)
  assert loaded.sample(tf.constant(5))['images'].shape == (5, 28, 28, 1)
  # The first chunk of each is what the model draws with that chunk's seed (decode and sample
  # share one trace of the sampler in the export).
  def chunk_seed(name):
    return tf.random.experimental.stateless_fold_in(export._seed(0, export._SALTS[name]), 0)

  np.testing.assert_array_equal(
      decoded[:3], tf.function(model.decode)(encoded['z'][:3], chunk_seed('decode')))
  np.testing.assert_array_equal(loaded.sample(tf.constant(3))['images'],
                                tf.function(model.sample)(3, chunk_seed('sample')))

  metadata = {key: value.numpy() for key, value in loaded.metadata().items()}
  assert metadata['image_shape'].tolist() == [28, 28, 1]
  assert metadata['latent_shape'].tolist() == list(model.latent_shape)
  assert metadata['step'] == STEP
  assert metadata['data_kind'] == b'binary'
  assert metadata['dataset'] == b'static_mnist'
  # The signatures (TF Serving) take every input explicitly.
  signature = loaded.signatures['log_prob']
  out = signature(images=images, num_samples=tf.constant(2), seed=tf.constant(4, tf.int64))
  assert out['log_prob'].shape == (4,)


# What a process without vlae_tf does with the export: one process, one load, for the two tests
# below. It prints one JSON line {'load': ..., 'bad_inputs': ...}.
_WITHOUT_VLAE_HEADER = r'''
import json, sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
'''

# Calls that work: result['load'].
_LOAD_WITHOUT_VLAE = r'''
images = np.zeros([2, 28, 28, 1], np.float32)
images[:, 10:18, 12:16] = 1.0
encoded = loaded.encode(images)
serve = loaded.signatures
result = {
    'z': encoded['z'].shape.as_list(),
    'decode': loaded.decode(encoded['z'], seed=3)['images'].shape.as_list(),
    'sample': serve['sample'](num_images=tf.constant(2),
                              seed=tf.constant(1, tf.int64))['images'].shape.as_list(),
    'log_prob': loaded.log_prob(images, 2)['log_prob'].numpy().tolist(),
    'pixel_log_prob': loaded.pixel_log_prob(images, encoded['z'])['pixel_log_prob'].shape.as_list(),
    'modules': sorted(m for m in ('vlae_tf', 'tf_keras', 'gin') if m in sys.modules),
}
results = {'load': result}
'''


@pytest.fixture(scope='module')
def without_vlae_tf(exported):
  """Both scripts on the export in one fresh process that cannot import vlae_tf: their results."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  env.pop('PYTHONPATH', None)
  script = (_WITHOUT_VLAE_HEADER + _LOAD_WITHOUT_VLAE + _BAD_INPUTS_WITHOUT_VLAE
            + 'print(json.dumps(results))\n')
  completed = subprocess.run([sys.executable, '-c', script, exported], env=env, cwd='/',
                             capture_output=True, text=True, timeout=900, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_loads_in_a_process_without_vlae_tf(without_vlae_tf):
  result = without_vlae_tf['load']
  assert 'vlae_tf' not in result['modules']
  assert result['decode'] == [2, 28, 28, 1]
  assert result['sample'] == [2, 28, 28, 1]
  assert result['pixel_log_prob'] == [2, 28, 28, 1]
  assert np.all(np.isfinite(result['log_prob']))


# Bad inputs: result['bad_inputs'] = {case: [exception type, its text], 'ok': ..., ...}.
_BAD_INPUTS_WITHOUT_VLAE = r"""
good = np.zeros([2, 28, 28, 1], np.float32)
z = loaded.encode(good)['z']
seed = tf.constant(0, tf.int64)
cases = {
    'size': lambda: loaded.log_prob(np.zeros([2, 32, 32, 1], np.float32), num_samples=2),
    'rank': lambda: loaded.encode(np.zeros([2, 28, 28], np.float32)),
    'values': lambda: loaded.log_prob(tf.fill([2, 28, 28, 1], tf.constant(255, tf.uint8)), 2),
    'batches': lambda: loaded.pixel_log_prob(good, z[:1]),
    'z': lambda: loaded.decode(np.zeros([2, 4], np.float32)),
    'num_samples': lambda: loaded.log_prob(good, 0),
    'signature': lambda: loaded.signatures['log_prob'](
        images=tf.zeros([2, 32, 32, 1]), num_samples=tf.constant(2), seed=seed),
}
result = {}
for name, call in cases.items():
  try:
    call()
    result[name] = ['no error', '']
  except Exception as error:  # pylint: disable=broad-except
    result[name] = [type(error).__name__, str(error)]
# Other dtypes are checked, then cast; the signatures take float32.
ok = {
    'uint8': loaded.log_prob(tf.ones([2, 28, 28, 1], tf.uint8), 2, seed=1)['log_prob'],
    'float64': loaded.log_prob(tf.ones([2, 28, 28, 1], tf.float64), 2, seed=1)['log_prob'],
    'bool': loaded.log_prob(tf.ones([2, 28, 28, 1], tf.bool), 2, seed=1)['log_prob'],
    'signature': loaded.signatures['log_prob'](images=tf.ones([2, 28, 28, 1]),
        num_samples=tf.constant(2), seed=tf.constant(1, tf.int64))['log_prob'],
}
result['ok'] = {name: value.numpy().tolist() for name, value in ok.items()}
result['pixel_float64_z'] = loaded.pixel_log_prob(good, z.numpy().astype(np.float64))[
    'pixel_log_prob'].shape.as_list()
results['bad_inputs'] = result
"""

_MODEL = '(model: static_mnist, step 7)'
_IMAGES = f'images must be binary: float32 [N, 28x28x1] with every value 0 or 1 {_MODEL}; got '
_Z = f'z must be float32 [N, {LATENT_SIZE}] with finite values {_MODEL}; got '


@pytest.mark.slow
def test_bad_inputs_fail_with_one_line_in_a_process_without_vlae_tf(without_vlae_tf):
  result = without_vlae_tf['bad_inputs']
  expected = {
      'size': f'log_prob: {_IMAGES}float32 [2, 32x32x1]',
      'rank': f'encode: {_IMAGES}float32 [2, 28x28]',
      'values': f'log_prob: {_IMAGES}uint8 [2, 28x28x1] with values in [255, 255] '
                '(binarize with x > 0.5)',
      'batches': f'pixel_log_prob: images and z must hold the same number N of examples: images '
                 f'float32 [N, 28x28x1], z float32 [N, {LATENT_SIZE}] {_MODEL}; got images '
                 f'[2, 28x28x1] and z [1, {LATENT_SIZE}]',
      'z': f'decode: {_Z}float32 [2, 4]',
      'num_samples': 'log_prob: num_samples (K, the number of importance samples) must be in '
                     f'1..1048576 {_MODEL}; got 0',
      'signature': f'log_prob: {_IMAGES}float32 [2, 32x32x1]',
  }
  for case, message in expected.items():
    kind, text = result[case]
    assert kind == 'InvalidArgumentError', (case, kind, text[:2000])
    # TensorFlow frames our line ('Graph execution error:' above it, the node below it).
    assert f'assertion failed: [{message}]' in text.splitlines(), (case, text)
    assert len(text) < 800 and 'numpy=' not in text, (case, text)  # No array printed.
  ok = result['ok']
  np.testing.assert_allclose(ok['uint8'], ok['signature'], rtol=1e-6)
  np.testing.assert_allclose(ok['float64'], ok['signature'], rtol=1e-6)
  np.testing.assert_allclose(ok['bool'], ok['signature'], rtol=1e-6)
  assert result['pixel_float64_z'] == [2, 28, 28, 1]


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures(exported):
  tool = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  if not os.path.exists(tool):
    pytest.skip('saved_model_cli is not installed beside this python.')
  completed = subprocess.run([tool, 'show', '--dir', exported, '--all'], capture_output=True,
                             text=True, timeout=600, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  for name in SIGNATURES:
    assert f"signature_def['{name}']" in completed.stdout, completed.stdout[-3000:]


@pytest.mark.slow
def test_export_again_replaces_the_export(run, exported):
  model_dir, _, _ = run
  path = export.export(str(model_dir), decode_chunk_size=3)
  assert path == exported
  assert os.listdir(os.path.join(str(model_dir), 'export')) == [str(STEP)]
  assert set(tf.saved_model.load(path).signatures) == SIGNATURES


class _CountedTraces(doubles.SamplesAsTheVLAE, doubles.ConstantWeights):
  """Counts the Python calls of each model function: one per trace of the function calling it."""

  def __init__(self):
    self.traces = {}

  def _count(self, name):
    self.traces[name] = self.traces.get(name, 0) + 1

  def encode(self, images, seed):
    del seed
    self._count('encode')
    mean = tf.zeros([tf.shape(images)[0], *self.latent_shape])
    return mean, mean

  def decode(self, z, seed):
    del seed
    self._count('decode')
    return tf.zeros([tf.shape(z)[0], *self.image_shape])

  def prior_distribution(self):
    self._count('prior_distribution')
    return tfp.distributions.Sample(tfp.distributions.Normal(0.0, 1.0), self.latent_shape)

  def log_likelihood(self, images, num_samples, seed, chunk_size=64):
    self._count('log_likelihood')
    return super().log_likelihood(images, num_samples, seed, chunk_size)

  def pixel_log_prob(self, images, z):
    del z
    self._count('pixel_log_prob')
    return tf.zeros_like(images)


def test_an_export_traces_each_model_function_once(tmp_path):
  """tf.saved_model.save traces again what was traced outside a save context with its options
  (vlae_tf/export/writing.py, _traced_for_saving), and decode and sample share one trace of the
  model's sampler: each model function is traced once."""
  model = _CountedTraces()
  path = export.save_atomically(export.ServingModule(model, log_prob_chunk_size=4),
                                str(tmp_path / '3'))
  # log_prob's graph calls log_likelihood twice: the K // chunk chunks and the remainder. sample
  # draws z from the prior and decodes it with decode's trace.
  assert model.traces == {'encode': 1, 'decode': 1, 'prior_distribution': 1, 'log_likelihood': 2,
                          'pixel_log_prob': 1}
  loaded = tf.saved_model.load(path)
  assert loaded.sample(3)['images'].shape == [3, 2, 3, 1]
  np.testing.assert_allclose(loaded.log_prob(np.zeros([2, 2, 3, 1], np.uint8), 9)['log_prob'],
                             [-5.0, -5.0], rtol=1e-6)


@pytest.mark.parametrize('num_samples', [1, 3, 4, 9])
def test_log_prob_chunk_arithmetic(num_samples):
  module = export.ServingModule(doubles.ConstantWeights(), log_prob_chunk_size=4)
  log_prob = module.log_prob(tf.zeros([2, 2, 3, 1]), num_samples)['log_prob']
  np.testing.assert_allclose(log_prob, [-5.0, -5.0], rtol=1e-6)


def test_input_checks_name_the_input_the_expectation_and_the_model():
  module = export.ServingModule(doubles.ConstantWeights(), step=3, dataset='toy',
                                log_prob_chunk_size=4)
  # A saved function takes any shape (and dtype) and checks it in-graph.
  any_shape = module.log_prob.get_concrete_function(
      tf.TensorSpec(None, tf.float32), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int64))
  expected = ('log_prob: images must be binary: float32 [N, 2x3x1] with every value 0 or 1 '
              '(model: toy, step 3); got ')
  good = tf.zeros([2, 2, 3, 1])
  np.testing.assert_allclose(any_shape(good, 2, 0)['log_prob'], [-5.0, -5.0])
  for images, given in ((tf.zeros([2, 3, 3, 1]), 'float32 [2, 3x3x1]'),
                        (tf.zeros([2, 2, 3]), 'float32 [2, 2x3]'),
                        (tf.zeros([]), 'float32 []'),
                        (good + 0.5, 'float32 [2, 2x3x1] with values in [0.5, 0.5] (binarize '
                                     'with x > 0.5)')):
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
      any_shape(images, 2, 0)
    assert f'assertion failed: [{expected}{given}]' in str(raised.value).splitlines()
  # Shapes known when tracing the unsaved module: the same text, at once.
  with pytest.raises(ValueError, match=re.escape(f'{expected}float32 [2, 3x3x1]')):
    module.log_prob(tf.zeros([2, 3, 3, 1]), 2)
  with pytest.raises(TypeError, match=re.escape(f'{expected}string')):
    module.log_prob(tf.constant('x'), 2)
  # Other dtypes: checked in their own dtype, then cast.
  np.testing.assert_allclose(module.log_prob(tf.ones([2, 2, 3, 1], tf.uint8), 2)['log_prob'],
                             [-5.0, -5.0])
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
      'got float64 [2, 2x3x1] with values in [0.9999999999, 0.9999999999]')):
    module.log_prob(tf.fill([2, 2, 3, 1], tf.constant(0.9999999999, tf.float64)), 2)
  eight_bit = doubles.ConstantWeights()
  eight_bit.data_kind = '8bit'
  module = export.ServingModule(eight_bit, step=3)
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    module.log_prob(good + 0.5, 2)
  assert ('images must be 8-bit: float32 [N, 2x3x1] holding integers 0..255 (model: 8bit data, '
          'step 3); got float32 [2, 2x3x1] with values in [0.5, 0.5], not all integers]'
          in str(raised.value))
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
      'got int64 [2, 2x3x1] with values in [256, 256]')):
    module.log_prob(tf.fill([2, 2, 3, 1], tf.constant(256, tf.int64)), 2)


@pytest.mark.slow
def test_model_without_latent_serves_p_of_x(shared_data, tmp_path):
  gin_parsing.parse_gin(['dynamic_mnist_pixelcnn.gin', 'testing/tiny.gin'])
  model = model_lib.make_model()
  images = next(iter(datasets.load('static_mnist', 'test', data_dir=str(shared_data)).batch(2)))
  model.initialize(images)
  module = export.ServingModule(model, log_prob_chunk_size=2)
  assert not hasattr(module, 'encode') and not hasattr(module, 'decode')
  pixel = module.pixel_log_prob(images)['pixel_log_prob']
  assert pixel.shape == images.shape
  # Without z, the importance-weighted estimate is exact whatever K: log p(x) = sum of pixels.
  log_prob = module.log_prob(images, 3)['log_prob']
  np.testing.assert_allclose(log_prob, tf.reduce_sum(pixel, [1, 2, 3]), rtol=1e-5)
  # Saved, with its checks.
  path = str(tmp_path / 'pixelcnn')
  export.save_atomically(module, path)
  loaded = tf.saved_model.load(path)
  np.testing.assert_allclose(loaded.pixel_log_prob(tf.cast(images, tf.uint8))['pixel_log_prob'],
                             pixel, rtol=1e-5)
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    loaded.signatures['pixel_log_prob'](images=images[:, :, :27])
  assert ('assertion failed: [pixel_log_prob: images must be binary: float32 [N, 28x28x1] with every '
          'value 0 or 1 (model: binary data, step 0); got float32 [2, 28x27x1]]'
          in str(raised.value).splitlines())


@pytest.mark.slow
def test_readme_example_runs_without_vlae_tf(exported):
  env = {key: value for key, value in os.environ.items()
         if key not in ('PYTHONPATH', 'TF_CPP_MIN_LOG_LEVEL')}  # as a user runs it
  example = os.path.join(str(pathlib.Path(__file__).resolve().parents[2]), 'examples',
                         'use_saved_model.py')
  completed = subprocess.run([sys.executable, example, exported], env=env, cwd='/',
                             capture_output=True, text=True, timeout=900, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  for noise in ('absl::InitializeLog', 'oneDNN custom operations', 'cuda drivers'):
    assert noise not in completed.stderr  # TensorFlow's start-up lines
  lines = completed.stdout.strip().splitlines()
  assert "'dataset': b'static_mnist'" in lines[0]
  assert lines[-1] == (f'assertion failed: [log_prob: {_IMAGES}float32 [4, 27x28x1]]')
