"""Tests of the binaries and their mains: strict gin, one-line user errors, and a real run
(bin/train on static MNIST with gin/testing/tiny.gin) evaluated, sampled and exported from its
directory alone.
"""

import json
import math
import os
import re
import stat

import numpy as np
from PIL import Image
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

import binary_runs
import doubles

from vlae_tf.runs import checkpoints
from vlae_tf.cli import binaries
from vlae_tf.cli import run_binaries
from vlae_tf.evaluation import evaluator as evaluation
from vlae_tf.runs import directory
from vlae_tf.runs import opening

REPO = binary_runs.REPO
BINARIES = binary_runs.BINARIES
TINY = binary_runs.TINY
run_binary = binary_runs.run_binary
assert_one_line_error = binary_runs.assert_one_line_error


def test_binaries_are_executable_shims():
  for name in BINARIES:
    path = os.path.join(REPO, 'bin', name)
    assert os.access(path, os.X_OK), path
    with open(path) as f:
      text = f.read()
    assert text.startswith('#!/usr/bin/env python3\n')
    assert f"cli.run_binary('{name}')" in text
    assert len(text.splitlines()) <= 30


def test_installed_commands_are_namespaced():
  # setup.py's console entry points: vlae-<name> -> cli.<name>_command, for every binary.
  with open(os.path.join(REPO, 'setup.py')) as f:
    setup = f.read()
  assert 'scripts=' not in setup  # bare `eval` / `export` would be shadowed by bash builtins
  assert "f'vlae-{name}=vlae_tf.cli:{name}_command'" in setup
  for name in BINARIES:
    assert f"'{name}'" in setup, name
    assert callable(getattr(binaries, f'{name}_command')), name


@pytest.mark.slow
def test_user_errors_are_one_line(tmp_path):
  """Through the binaries: before TensorFlow loads (flags, paths) and after (benchmark's config);
  in-process: the other errors after TensorFlow loads, through the mains' guard."""
  required = {'benchmark': 'error: The config binds no train.dataset',  # needs a --gin_file
               'reproduce': '--output_dir'}
  for name in BINARIES:
    completed = run_binary(name)
    assert_one_line_error(completed, required.get(name, '--model_dir'))
  empty = tmp_path / 'empty'
  empty.mkdir()
  assert_one_line_error(run_binary('eval', f'--model_dir={empty}'),
                        'error: No config.gin in')
  assert_one_line_error(run_binary('train', f'--model_dir={tmp_path / "run"}',
                                   '--gin_file=no_such.gin'),
                        'error: gin file not found: no_such.gin')
  (empty / 'config.gin').write_text('')
  assert 'is damaged (empty)' in doubles.one_line_error(
      lambda: run_binaries.run_export(str(empty)))
  (empty / 'config.gin').write_text("train.dataset = 'static_mnist'\n")
  assert doubles.one_line_error(lambda: run_binaries.run_export(str(empty))).startswith(
      'error: No checkpoint in')
  assert doubles.one_line_error(lambda: run_binaries.run_train(
      str(tmp_path / 'run'), gin_params=['train.no_such_parameter = 1'])).startswith(
          'error: bad gin config')
  assert not (tmp_path / 'run').exists()


@pytest.fixture(scope='module')
def trained(shared_data, tmp_path_factory):
  """A run directory made by bin/train: 2 steps of the tiny VLAE on real static MNIST, a
  checkpoint after each."""
  model_dir = tmp_path_factory.mktemp('cli') / 'run'
  completed = run_binary('train', f'--model_dir={model_dir}', *TINY,
                         '--gin_param=train.train_steps = 2',
                         '--gin_param=train.checkpoint_every = 1', f'--data_dir={shared_data}',
                         quiet_cpp=False)
  assert completed.returncode == 0, completed.stderr[-5000:]
  (model_dir.parent / 'train.stderr').write_text(completed.stderr)
  assert 'step 2/2' in completed.stderr  # The progress line.
  assert 'ETA' in completed.stderr
  return model_dir


@pytest.mark.slow
def test_train_writes_the_run_directory(trained):
  assert (trained / 'config.gin').is_file()
  assert (trained / 'operative_config.gin').is_file()
  assert checkpoints.latest_checkpoint(str(trained)).endswith('ckpt-2')
  # bin/train ends without the interpreter's shutdown (binaries._exit_now): what it wrote last
  # is on disk, the last step's summaries and the closed hparams session included.
  assert sorted(doubles.scalars(trained / 'train', 'loss')) == [1, 2]
  assert 2 in doubles.scalars(trained / 'validation', 'elbo_nats')
  accumulator = event_accumulator.EventAccumulator(str(trained))
  accumulator.Reload()
  ended = plugin_data_pb2.HParamsPluginData.FromString(
      accumulator.PluginTagToContent('hparams')['_hparams_/session_end_info'])
  assert ended.session_end_info.status == api_pb2.STATUS_SUCCESS


@pytest.mark.slow
def test_train_writes_model_summary_json(trained):
  """The run's model_summary.json (summary_test.py's module) describes the model it trained."""
  from vlae_tf.models import summary  # pylint: disable=g-import-not-at-top
  model = opening.open_run(str(trained)).model
  with open(trained / directory.MODEL_SUMMARY_FILE) as f:
    written = json.load(f)
  assert written == summary.model_summary(model)


@pytest.mark.slow
def test_train_is_quiet(trained):
  """No TensorFlow start-up chatter, retracing warnings, gin lookups or doubled TF log lines."""
  stderr = (trained.parent / 'train.stderr').read_text()
  for noise in ('cuInit', 'oneDNN custom operations', 'cpu_feature_guard', 'retracing',
                'system_path_file_exists', 'INFO:tensorflow:', 'WARNING:tensorflow:'):
    assert noise not in stderr, (noise, stderr[-5000:])
  assert 'Using MirroredStrategy' not in stderr  # bin/train's own start-up line says it.


@pytest.mark.slow
def test_eval_history_keeps_every_setting_and_files_follow_the_umask(trained, shared_data):
  history = trained / evaluation.HISTORY_FILE
  before = history.read_text().splitlines() if history.exists() else []
  for num_samples in (2, 3):
    run_binaries.run_eval(str(trained), split='test', num_samples=num_samples, max_examples=2,
                          data_dir=str(shared_data), batch_size=2)
  lines = [json.loads(line) for line in history.read_text().splitlines()]
  assert len(lines) == len(before) + 2
  assert [line['num_samples'] for line in lines[-2:]] == [2, 3]  # the first one is kept
  assert json.loads((trained / 'eval_test.json').read_text())['num_samples'] == 3  # the latest
  mask = os.umask(0)
  os.umask(mask)
  for name in ('eval_test.json', 'config.gin', 'operative_config.gin', 'started.json'):
    assert stat.S_IMODE(os.stat(trained / name).st_mode) == 0o666 & ~mask, name


@pytest.mark.slow
def test_eval_report(trained, shared_data):
  report = run_binaries.run_eval(str(trained), split='test', num_samples=2, max_examples=4,
                                 data_dir=str(shared_data), batch_size=4)
  with open(trained / 'eval_test.json') as f:
    saved = json.load(f)
  assert saved.pop('pieces') == report.pop('pieces')  # one piece: this process's
  assert saved == pytest.approx(report)
  for key in ('nll_nats', 'bits_per_dim', 'elbo_nats', 'kl_nats', 'num_examples', 'num_samples',
              'nll_stderr_nats', 'reconstruction_nats', 'step', 'checkpoint', 'split', 'dataset'):
    assert key in saved, key
  assert saved['num_examples'] == 4
  assert saved['num_samples'] == 2
  assert saved['step'] == 2
  assert saved['dataset'] == 'static_mnist'
  assert np.isfinite(saved['nll_nats']) and saved['nll_nats'] > 0
  assert saved['bits_per_dim'] == pytest.approx(saved['nll_nats'] / (784 * math.log(2)))
  assert saved['kl_nats'] == pytest.approx(saved['elbo_nats'] * -1 - saved['reconstruction_nats'],
                                           rel=1e-4)
  assert not [name for name in os.listdir(trained) if name.startswith('.eval_test.json')]
  assert evaluation.DEFAULT_NUM_SAMPLES == {'binary': 4096, '8bit': 512}


@pytest.mark.slow
def test_eval_curve(trained, shared_data):
  completed = run_binary('eval', f'--model_dir={trained}', '--curve', '--num_samples=2',
                         '--max_examples=4', '--batch_size=4', f'--data_dir={shared_data}')
  assert completed.returncode == 0, completed.stderr[-5000:]
  lines = [line for line in completed.stdout.splitlines() if line.startswith('test: NLL')]
  assert len(lines) == 2 and all('min of training' in line for line in lines), completed.stdout
  with open(trained / 'eval_test_curve.json') as f:
    curve = json.load(f)
  assert [report['step'] for report in curve] == [1, 2]
  assert 0 < curve[0]['train_seconds'] <= curve[1]['train_seconds']
  assert curve[1]['train_seconds'] == pytest.approx(
      curve[1]['checkpoint_time'] - directory.run_start_time(str(trained)))
  assert curve[1]['checkpoint'] == checkpoints.latest_checkpoint(str(trained))
  assert curve[0]['nll_nats'] != curve[1]['nll_nats']  # Each point has its own weights.
  with Image.open(trained / 'eval_test_curve.png') as image:
    assert image.size == (720, 480)


@pytest.mark.slow
def test_sample_grids(trained, shared_data, tmp_path, monkeypatch):
  said = []
  monkeypatch.setattr(run_binaries.logging, 'info', lambda text, *args: said.append(text % args))
  paths = run_binaries.run_sample(str(trained), num_images=3, output=str(tmp_path),
                                  num_reconstructions=2, num_decodings=2,
                                  data_dir=str(shared_data))
  assert said[0] == (f'Sampling {trained}/ckpt-2 (step 2): 3 samples and 2 reconstructions (2 '
                     f'decodings each) of static_mnist test images, seed 0, into {tmp_path}.')
  assert paths['samples'] == str(tmp_path / 'samples_2.png')
  with Image.open(paths['samples']) as image:
    # 3 samples on a 2x2 grid, 1 pixel borders (59 pixels), enlarged 5 times to 295 >= 256.
    assert image.size == (5 * (2 * 29 + 1), 5 * (2 * 29 + 1))
  with Image.open(paths['reconstructions']) as image:
    # 2 rows: the image and 2 decodings (88 pixels wide), enlarged 3 times to 264.
    assert image.size == (3 * (3 * 29 + 1), 3 * (2 * 29 + 1))
    pixels = np.asarray(image)[::3, ::3]
  original = pixels[1:29, 1:29]
  assert set(np.unique(original)) <= {0, 255}


@pytest.fixture(scope='module')
def exported_by_binary(trained):
  """bin/export of the trained run, as a user runs it (TensorFlow's C++ log level not set)."""
  return run_binary('export', f'--model_dir={trained}', quiet_cpp=False)


@pytest.mark.slow
def test_export_binary(trained, exported_by_binary):
  completed = exported_by_binary
  assert completed.returncode == 0, completed.stderr[-5000:]
  path = completed.stdout.strip().splitlines()[-1]
  assert path == str(trained / 'export' / '2')
  assert os.path.isfile(os.path.join(path, 'saved_model.pb'))


# A new user's first hour (the rest is in first_hour_test.py): a quiet console, results once on
# stdout (a line, or --json), eval in TensorBoard.

_ABSL_PREFIX = re.compile(r'^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]')


@pytest.mark.slow
def test_results_once_on_stdout_and_a_quiet_console(trained, exported_by_binary):
  completed = run_binary('eval', f'--model_dir={trained}', '--num_samples=2', '--max_examples=4',
                         '--batch_size=4', quiet_cpp=False)  # no --data_dir: the run's record
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert len(completed.stdout.splitlines()) == 1 and completed.stdout.startswith('test: NLL')
  assert "'nll_nats'" not in completed.stderr  # No second copy as a Python dict.
  for line in completed.stderr.splitlines():
    assert not _ABSL_PREFIX.match(line), line
  assert 'Using MirroredStrategy' not in completed.stderr
  assert list((trained / 'eval').glob('events.out.tfevents.*'))  # The NLL in TensorBoard.
  # --json's stdout, the report alone: packaging_test.py (bin/eval --pretrained ... --json).
  exported = exported_by_binary
  assert exported.returncode == 0, exported.stderr[-3000:]
  assert exported.stdout.strip() == str(trained / 'export' / '2')
  for chatter in ('Assets written', 'fingerprint', '.tmp-', 'Using MirroredStrategy'):
    assert chatter not in exported.stderr, (chatter, exported.stderr)
