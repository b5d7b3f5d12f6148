"""Tests of the models that ship with the package (vlae_tf/pretrained/): the catalogue's checks
and cache, packaging a run, --pretrained in the binaries, and the shipped model's NLL against its
provenance on real test images.
"""

import json
import os
import shutil

from absl import flags
import numpy as np
import pytest

import vlae_tf
from vlae_tf import errors
from vlae_tf.cli import binaries
from vlae_tf.evaluation import evaluator
from vlae_tf.pretrained import catalogue
from vlae_tf.pretrained import packaging

from binary_runs import assert_one_line_error
from binary_runs import run_binary
from conftest import FIXTURE_RUN


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
  """Every test caches into its own folder, never into ~/.cache."""
  monkeypatch.setenv(catalogue.ENV_CACHE, str(tmp_path / 'cache'))


@pytest.fixture(scope='module')
def _packaged_once(tmp_path_factory, shared_data):
  """The fixture run (tests/testdata/run_e06a543) packaged as 'tiny' in a root of its own."""
  run = tmp_path_factory.mktemp('run') / 'run'
  shutil.copytree(FIXTURE_RUN, run)
  root = tmp_path_factory.mktemp('root')
  record = packaging.package(str(run), 'tiny', root=str(root), data_dir=str(shared_data),
                             check_examples=4, check_samples=2, command='a test', commit='none')
  return str(root), record


@pytest.fixture
def packaged_tiny(_packaged_once, tmp_path):
  """A copy of the packaged 'tiny' root that a test may damage."""
  root, record = _packaged_once
  copy = tmp_path / 'root'
  shutil.copytree(root, copy)
  return str(copy), record


def _flip_a_byte(path):
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


def test_the_package_ships_static_mnist_with_its_provenance():
  assert 'static_mnist' in catalogue.names()
  record = catalogue.provenance('static_mnist')
  for key in ('commit', 'command', 'step', 'check', 'files', 'dataset'):
    assert key in record, key
  assert record['dataset'] == 'static_mnist'
  assert {'config.gin', 'data_source.json', 'checkpoint'} <= set(record['files'])
  folder = os.path.join(catalogue.PACKAGE_ROOT, 'static_mnist')
  size = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))
  assert size <= 20e6  # A packaged model stays under 20 MB.


def test_an_unknown_name_lists_the_known_ones():
  with pytest.raises(errors.PretrainedError,
                     match=r"Unknown pretrained model 'mnist'.*static_mnist"):
    catalogue.run_directory('mnist')
  with pytest.raises(errors.PretrainedError, match='Unknown'):
    vlae_tf.load_pretrained('nope')


def test_a_precision_binding_is_read_replaced_or_added():
  trained = "VLAE.latent_size = 4\nVLAE.precision = 'mixed_bfloat16'\nVLAE.seed = 0\n"
  assert packaging.config_precision(trained) == 'mixed_bfloat16'
  assert packaging.with_precision(trained, 'float32') == (
      "VLAE.latent_size = 4\nVLAE.precision = 'float32'\nVLAE.seed = 0\n")
  unbound = 'VLAE.latent_size = 4\n'
  assert packaging.config_precision(unbound) == 'float32'  # VLAE's default
  added = packaging.with_precision(unbound, 'mixed_bfloat16')
  assert added.startswith(unbound) and packaging.config_precision(added) == 'mixed_bfloat16'


def test_packaging_in_another_precision_rewrites_that_binding_only(tmp_path, shared_data):
  run = tmp_path / 'run'
  shutil.copytree(FIXTURE_RUN, run)
  record = packaging.package(str(run), 'tiny', root=str(tmp_path), data_dir=str(shared_data),
                             check_examples=2, check_samples=2, precision='mixed_bfloat16')
  assert (record['trained_precision'], record['precision']) == ('float32', 'mixed_bfloat16')
  with open(run / 'config.gin') as f:
    original = f.read()
  with open(tmp_path / 'tiny' / 'config.gin') as f:
    assert f.read() == packaging.with_precision(original, 'mixed_bfloat16')
  assert vlae_tf.load(str(tmp_path / 'tiny')).precision == 'mixed_bfloat16'


def test_packaging_keeps_the_averaged_weights_and_the_config(packaged_tiny, run_dir):
  root, record = packaged_tiny
  path = catalogue.run_directory('tiny', root=root)
  assert sorted(record['files']) == sorted(
      ['checkpoint', 'config.gin', 'data_source.json', 'ckpt-2.index',
       'ckpt-2.data-00000-of-00001'])
  with open(os.path.join(run_dir, 'config.gin'), 'rb') as f:
    original_config = f.read()
  with open(os.path.join(path, 'config.gin'), 'rb') as f:
    assert f.read() == original_config
  with open(os.path.join(path, 'data_source.json')) as f:
    source = json.load(f)
  assert source['data_dir'] is None and source['packaged']  # Readers use their own data.
  original = vlae_tf.load(run_dir)
  original_weights = [w.numpy() for w in original.weights]
  packaged = vlae_tf.load(path)
  assert packaged.checkpoint_step == record['step'] == 2
  assert record['precision'] == record['trained_precision'] == 'float32'
  assert len(packaged.weights) == len(original_weights) > 0
  for ours, theirs in zip(packaged.weights, original_weights):
    np.testing.assert_array_equal(ours.numpy(), theirs)
  # The slim checkpoint holds the averaged weights and the step only: smaller than the run's.
  assert (os.path.getsize(os.path.join(path, 'ckpt-2.data-00000-of-00001')) <
          os.path.getsize(os.path.join(run_dir, 'ckpt-2.data-00000-of-00001')))


def test_the_check_nll_is_recomputed_exactly_in_a_process_with_two_devices(packaged_tiny,
                                                                            shared_data):
  """The check runs on one replica: the importance noise depends on the replica, and this test
  process has two logical CPUs (conftest.py), where the default strategy has two replicas."""
  root, record = packaged_tiny
  check = record['check']
  report = evaluator.evaluate(catalogue.run_directory('tiny', root=root), split='test',
                              num_samples=check['num_samples'],
                              max_examples=check['num_examples'], data_dir=str(shared_data),
                              seed=check['seed'], strategy=packaging.check_strategy(),
                              progress=False)
  assert report['num_examples'] == check['num_examples'] == 4
  assert abs(report['nll_nats'] - check['nll_nats']) < 1e-3, (report, check)
  assert np.mean(check['per_image_nll_nats']) == pytest.approx(check['nll_nats'], abs=1e-5)
  assert len(check['per_image_kl_nats']) == 4


def test_the_cache_is_reused_and_a_damaged_copy_replaced(packaged_tiny):
  root, _ = packaged_tiny
  first = catalogue.run_directory('tiny', root=root)
  data_file = os.path.join(first, 'ckpt-2.data-00000-of-00001')
  modified = os.path.getmtime(data_file)
  assert catalogue.run_directory('tiny', root=root) == first
  assert os.path.getmtime(data_file) == modified  # Not copied again.
  _flip_a_byte(data_file)
  assert catalogue.run_directory('tiny', root=root) == first
  assert catalogue.damage(first, catalogue.provenance('tiny', root)['files']) is None


@pytest.mark.parametrize('damage', ['flip', 'remove'])
def test_a_damaged_package_is_one_line_naming_the_file(packaged_tiny, damage):
  root, _ = packaged_tiny
  path = os.path.join(root, 'tiny', 'ckpt-2.index')
  if damage == 'flip':
    _flip_a_byte(path)
  else:
    os.remove(path)
  with pytest.raises(errors.PretrainedError,
                     match=r'The packaged model tiny is damaged: ckpt-2\.index (does not match '
                           r'the sha256|is missing).*reinstall'):
    catalogue.run_directory('tiny', root=root)


def test_a_new_version_of_a_model_gets_a_new_cache_folder(packaged_tiny):
  root, _ = packaged_tiny
  first = catalogue.run_directory('tiny', root=root)
  provenance_path = os.path.join(root, 'tiny', catalogue.PROVENANCE_FILE)
  with open(provenance_path) as f:
    record = json.load(f)
  record['command'] = 'another run'
  with open(provenance_path, 'w') as f:
    json.dump(record, f)
  second = catalogue.run_directory('tiny', root=root)
  assert os.path.basename(second).startswith('tiny-') and second != first
  assert os.path.isdir(first)  # The old version's folder (and what was written there) stays.


def test_a_half_packaged_model_is_not_listed(packaged_tiny):
  root, _ = packaged_tiny
  shutil.copytree(os.path.join(root, 'tiny'), os.path.join(root, '.tiny-x1y2'))
  assert catalogue.names(root) == ['tiny']
  assert catalogue.names(os.path.join(root, 'no such folder')) == []


def test_inspect_takes_a_pretrained_model_as_one_more_run(packaged_tiny, monkeypatch):
  """bin/inspect's --model_dir is a list: --pretrained adds to it, alone or beside others."""
  root, _ = packaged_tiny
  monkeypatch.setattr(catalogue, 'PACKAGE_ROOT', root)
  for given in ([], ['/some/run']):
    flag_values = flags.FlagValues()
    flags.DEFINE_multi_string('model_dir', None, '', flag_values=flag_values)
    flags.DEFINE_string('pretrained', None, '', flag_values=flag_values)
    flag_values(['inspect', *[f'--model_dir={path}' for path in given], '--pretrained=tiny'])
    assert binaries._use_pretrained(flag_values) is None  # pylint: disable=protected-access
    assert flag_values.model_dir == [*given, catalogue.run_directory('tiny', root=root)]


@pytest.mark.parametrize('name, args, words', [
    ('eval', ['--pretrained=nope'],
     "Unknown pretrained model 'nope'; the pretrained models: static_mnist"),
    ('sample', [], 'give --model_dir=DIR (a bin/train run) or --pretrained=NAME'),
    ('eval', ['--pretrained=static_mnist', '--model_dir=/tmp'], 'both name the model to read'),
    ('train', ['--pretrained=static_mnist'],
     'error: --pretrained is for the binaries that read a trained model'),
])
def test_the_binaries_refuse_a_bad_choice_in_one_line(name, args, words):
  completed = run_binary(name, *args)
  assert_one_line_error(completed, words)


@pytest.mark.slow
def test_bin_eval_reads_the_pretrained_model(shared_data, tmp_path):
  completed = run_binary('eval', '--pretrained=static_mnist', '--max_examples=2',
                         '--num_samples=2', '--json', f'--data_dir={shared_data}')
  assert completed.returncode == 0, completed.stderr[-3000:]
  report = json.loads(completed.stdout)  # --json: stdout is the report alone.
  assert report['step'] == catalogue.provenance('static_mnist')['step']
  assert report['num_examples'] == 2 and report['dataset'] == 'static_mnist'
  # It wrote into the cached copy in $VLAE_TF_CACHE, not into the package.
  assert os.path.dirname(report['checkpoint']).startswith(str(tmp_path / 'cache'))
  assert not os.path.exists(os.path.join(catalogue.PACKAGE_ROOT, 'static_mnist', 'eval_test.json'))


@pytest.mark.slow
def test_the_shipped_model_gives_the_nll_of_its_provenance(shared_data):
  """The packaged weights' values on the first 20 images of the check set, recomputed, against
  provenance.json's per-image values (the importance noise of an image is a function of its index:
  a part of the check set gives its images' values)."""
  check = catalogue.provenance('static_mnist')['check']
  model = vlae_tf.load_pretrained('static_mnist')
  assert model.checkpoint_step == catalogue.provenance('static_mnist')['step']
  assert check['num_examples'] == len(check['per_image_nll_nats']) == 100
  assert abs(np.mean(check['per_image_nll_nats']) - check['nll_nats']) < 1e-5
  assert abs(np.mean(check['per_image_kl_nats']) - check['kl_nats']) < 1e-5
  part = evaluator.CheckpointEvaluator(
      os.path.dirname(model.checkpoint_path), check['split'], check['num_samples'],
      check['num_examples'], batch_size=20, data_dir=str(shared_data), chunk_size=None,
      seed=check['seed'], strategy=packaging.check_strategy())
  part.restore(part.checkpoint)
  first = next(part.batches())
  # Same images, same importance noise: equal but for float summation order on another CPU.
  np.testing.assert_allclose(first['nll'], check['per_image_nll_nats'][:20], atol=0.01)
  np.testing.assert_allclose(first['kl'], check['per_image_kl_nats'][:20], atol=0.01)
