"""A new user's first hour: --help, early path and flag errors, a quiet console,
validated budgets and shapes, the run's recorded data source, results once on stdout, intervals
that scale with the budget. Subprocess tests reuse cli_test's helpers; results once on stdout and a
quiet console, on cli_test's trained run, are cli_test's."""

import dataclasses
import subprocess
import sys

import pytest

from binary_runs import BINARIES
from binary_runs import REPO
from binary_runs import run_binary


def _broken_tensorflow(tmp_path):
  """A path entry whose `tensorflow` cannot be imported: proves a binary did not load it."""
  broken = tmp_path / 'tensorflow'
  broken.mkdir(exist_ok=True)
  (broken / '__init__.py').write_text('raise ImportError("tensorflow was imported")\n')
  return [str(tmp_path)]


@pytest.fixture(scope='module')
def helps(tmp_path_factory):
  """{name: bin/<name> --help} for every binary, run with a path entry first whose `tensorflow`
  and `vlae_tf` cannot be imported (--help must not load TensorFlow; a checkout's binaries must run
  its own vlae_tf, not another one earlier on the path)."""
  path = tmp_path_factory.mktemp('broken')
  other = path / 'vlae_tf'
  other.mkdir()
  (other / '__init__.py').write_text('raise ImportError("another vlae_tf was imported")\n')
  return {name: run_binary(name, '--help', python_path=_broken_tensorflow(path), timeout=120)
          for name in BINARIES}


def test_help_exits_0_and_lists_configs_and_datasets(helps):
  for name in BINARIES:
    completed = helps[name]
    assert completed.returncode == 0, (name, completed.stderr[-2000:])
    assert 'static_mnist' in completed.stdout and 'cifar10' in completed.stdout, name
    assert 'A shim' not in completed.stdout and 'usage: bin/' + name in completed.stdout, name
    if name in ('train', 'reproduce', 'benchmark'):
      assert 'mnist_vlae.gin' in completed.stdout and 'TRAIN_STEPS' in completed.stdout, name


def test_help_lists_the_flags_without_loading_tensorflow(helps):
  # --help must not need TensorFlow (it took ~10 s to load): `helps` ran with a broken one.
  expected = {'train': '--gin_file', 'eval': '--num_samples', 'sample': '--num_images',
              'export': '--export_dir', 'benchmark': '--what', 'reproduce': '--table',
              'inspect': '--compare_model_dir', 'compress': '--input', 'decompress': '--output'}
  for name in BINARIES:
    completed = helps[name]
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert 'tensorflow was imported' not in completed.stderr, name
    assert expected[name] in completed.stdout, (name, completed.stdout[-2000:])


def test_a_checkouts_binaries_run_its_own_code(helps):
  # Another vlae_tf earlier on the path (an installed copy, another checkout) must not be the one
  # bin/<name> runs: `helps` ran with one that cannot be imported.
  for name in BINARIES:
    completed = helps[name]
    assert 'another vlae_tf' not in completed.stderr, (name, completed.stderr[-3000:])
    assert completed.returncode == 0 and f'usage: bin/{name}' in completed.stdout, name
  assert '--gin_file' in helps['train'].stdout


def test_installed_command_help_is_the_checkouts_help(helps):
  env_path = {'PYTHONPATH': REPO}
  for name in ('train', 'eval'):
    installed = subprocess.run(
        [sys.executable, '-c', f'from vlae_tf import cli; cli.{name}_command()', '--help'],
        env=env_path, capture_output=True, text=True, timeout=60, check=False)
    assert installed.returncode == 0 and installed.stdout == helps[name].stdout, installed.stderr


def test_path_and_flag_mistakes_are_reported_before_tensorflow_loads(tmp_path):
  broken = _broken_tensorflow(tmp_path)
  cases = [
      (('eval', f'--model_dir={tmp_path / "nope"}'), 'error: No such run directory'),
      (('sample', f'--model_dir={tmp_path}'), 'error: No config.gin in'),
      (('train', f'--model_dir={tmp_path / "run"}', '--gin_file=mnist_vla.gin'),
       'did you mean mnist_vlae.gin'),
      (('train', f'--model_dir={tmp_path / "run"}', '--gin_file=mnist_vlae.gin',
        f'--data_dir={tmp_path / "no_data"}'), 'error: --data_dir='),
      (('train', f'--model_dir={tmp_path / "run"}', '--train_steps=5'),
       '--gin_param=TRAIN_STEPS=N'),
      (('eval', '--model_dri=x'), "Unknown command line flag 'model_dri'"),
  ]
  # A TensorFlow that cannot be imported is first on the path: the one-line answers prove that
  # nothing imported it (what that saves in seconds is bin/benchmark's to say, not a timed test's).
  for args, expected in cases:
    completed = run_binary(*args, python_path=broken, timeout=60)
    assert completed.returncode == 1, (args, completed.stderr)
    assert expected in completed.stderr, (args, completed.stderr)
    assert 'tensorflow was imported' not in completed.stderr and 'Traceback' not in (
        completed.stderr), (args, completed.stderr)
  assert not (tmp_path / 'run').exists()


def test_reproduce_rejects_a_negative_budget_before_tensorflow_loads(tmp_path):
  completed = run_binary('reproduce', f'--output_dir={tmp_path / "table"}', '--table=mnist',
                         '--train_steps=-5', python_path=_broken_tensorflow(tmp_path), timeout=60)
  assert completed.returncode == 1
  assert completed.stderr.strip() == 'error: --train_steps=-5: the budget must be at least 1 step.'
  assert not (tmp_path / 'table').exists()


# 2. A quiet console.

def test_startup_drops_chatter_at_default_verbosity():
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  from vlae_tf.cli import startup  # pylint: disable=g-import-not-at-top
  quiet = startup._DropQuietRecords()  # pylint: disable=protected-access

  def record(path, level, message, *args):
    return std_logging.LogRecord('tensorflow', level, path, 1, message, args, None)

  dropped = [
      record('/x/mirrored_strategy.py', std_logging.INFO, 'Using MirroredStrategy with devices %s',
             ('CPU:0',)),
      record('/x/builder_impl.py', std_logging.INFO, 'Assets written to: %s', '/r/.5.tmp-x/a'),
      record('/x/fingerprinting.py', std_logging.INFO, 'Writing fingerprint to %s', '/r/.tmp'),
      record('/x/polymorphic_function.py', std_logging.WARNING,
             '5 out of the last 5 calls to %s triggered tf.function retracing.', 'f'),
  ]
  assert not any(quiet.filter(r) for r in dropped)
  kept = record('/x/actions.py', std_logging.INFO, 'step 1/20 loss 1.0')
  assert quiet.filter(kept)


# 3. Validated budgets and shapes.

def test_train_settings_validate_budget_and_intervals():
  from vlae_tf import errors  # pylint: disable=g-import-not-at-top
  from vlae_tf.training import settings  # pylint: disable=g-import-not-at-top
  settings.TrainSettings(dataset='static_mnist')
  for bad, named in ((dict(train_steps=-5), 'TRAIN_STEPS'), (dict(train_steps=0), 'train_steps'),
                     (dict(batch_size=0), 'BATCH_SIZE'), (dict(eval_every=-1), 'eval_every'),
                     (dict(checkpoint_every=-2), 'checkpoint_every'),
                     (dict(summary_every=1.5), 'summary_every'),
                     (dict(eval_examples=-1), 'eval_examples')):
    with pytest.raises(errors.CliError, match=named):
      settings.TrainSettings(dataset='static_mnist', **bad)


@pytest.mark.slow
def test_bad_budget_and_shape_are_one_line_and_write_nothing(shared_data, tmp_path):
  """The shape through bin/train (stderr is that one line); the budget through the same main."""
  from binary_runs import TINY  # pylint: disable=g-import-not-at-top
  from vlae_tf.cli import run_binaries  # pylint: disable=g-import-not-at-top
  import doubles  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / 'run'
  completed = run_binary('train', f'--model_dir={model_dir}', *TINY,
                         '--gin_param=IMAGE_SHAPE=(32, 32, 1)', f'--data_dir={shared_data}')
  assert completed.returncode == 1, completed.stderr[-3000:]
  assert completed.stderr.strip().splitlines()[-1].startswith(
      "error: The config's image shape is 32x32x1 (IMAGE_SHAPE) but static_mnist images are "
      '28x28x1'), completed.stderr
  assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
  assert not model_dir.exists()
  message = doubles.one_line_error(lambda: run_binaries.run_train(
      str(model_dir), ['mnist_vlae.gin', 'testing/tiny.gin'], ['TRAIN_STEPS=-5'],
      str(shared_data)))
  assert message.startswith('error: train.train_steps = -5: it must be an integer >= 1 '
                            '(--gin_param=TRAIN_STEPS=N).'), message
  assert not model_dir.exists()


# 4. The run directory records its data source.

def test_readers_use_the_recorded_data_source(tmp_path, monkeypatch):
  from vlae_tf.data import sources  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv('VLAE_DATA_DIR', raising=False)
  data = tmp_path / 'data'
  data.mkdir()
  assert sources.reader_data_dir(str(tmp_path)) is None  # No record: as before.
  sources.record_data_source(str(tmp_path), 'static_mnist', str(data))
  assert sources.recorded_data_source(str(tmp_path)) == {
      'dataset': 'static_mnist', 'data_dir': str(data)}
  assert sources.reader_data_dir(str(tmp_path)) == str(data)
  other = tmp_path / 'other'
  said = []  # What it logs (caplog misses absl records once a binary's start-up has run here).
  monkeypatch.setattr(sources.logging, 'info', lambda message, *args: said.append(
      message % args))
  assert sources.reader_data_dir(str(tmp_path), str(other)) == str(other)
  assert said == [f'Using --data_dir={other}; the run was trained on {data}.']


def test_a_packaged_model_takes_the_readers_data_quietly(tmp_path, monkeypatch):
  """A packaged model records no directory ("packaged": true): --data_dir is used without the
  line that would claim it was trained on tensorflow-datasets."""
  from vlae_tf.data import sources  # pylint: disable=g-import-not-at-top
  (tmp_path / sources.DATA_SOURCE_FILE).write_text(
      '{"dataset": "static_mnist", "data_dir": null, "packaged": true}\n')
  said = []
  monkeypatch.setattr(sources.logging, 'info', lambda message, *args: said.append(
      message % args))
  assert sources.reader_data_dir(str(tmp_path), str(tmp_path / 'mine')) == str(tmp_path / 'mine')
  assert said == []


# 6. Short runs worth looking at.

def test_intervals_scale_with_the_budget():
  from vlae_tf.training import settings  # pylint: disable=g-import-not-at-top
  base = settings.TrainSettings(dataset='static_mnist', summary_every=100, eval_every=5000,
                                checkpoint_every=1000)
  short = dataclasses.replace(base, train_steps=200).for_budget()
  assert (short.summary_every, short.eval_every, short.checkpoint_every) == (20, 50, 50)
  long = dataclasses.replace(base, train_steps=100_000).for_budget()
  assert long == dataclasses.replace(base, train_steps=100_000)
  tiny = dataclasses.replace(base, train_steps=3, summary_every=1, eval_every=2,
                             checkpoint_every=2, ).for_budget()
  assert (tiny.summary_every, tiny.eval_every, tiny.checkpoint_every) == (1, 2, 2)
  assert dataclasses.replace(base, train_steps=200, eval_every=0).for_budget().eval_every == 0


def test_hparams_session_is_closed_with_its_status(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.hparams import plugin_data_pb2  # pylint: disable=g-import-not-at-top
  from vlae_tf.training import summaries  # pylint: disable=g-import-not-at-top
  summaries.end_hparams_session(str(tmp_path), 'success')
  accumulator = event_accumulator.EventAccumulator(str(tmp_path))
  accumulator.Reload()
  content = accumulator.PluginTagToContent('hparams')
  data = plugin_data_pb2.HParamsPluginData.FromString(content['_hparams_/session_end_info'])
  assert data.session_end_info.status == 1  # STATUS_SUCCESS


# 1. A quick look: Ctrl-C during an evaluation gives the partial result.

def test_an_interrupted_evaluation_keeps_the_batches_done():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vlae_tf import distribution  # pylint: disable=g-import-not-at-top
  evaluator = distribution.DistributedEvaluator(
      tf.distribute.get_strategy(), lambda x, seed: {'value': tf.reduce_sum(x, axis=[1, 2, 3])})
  batches = [(tf.ones([2, 1, 1, 1]) * i, tf.ones([2])) for i in (1, 2, 3)]

  def ctrl_c_after_two(count):
    if count >= 4:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):  # Not asked for: Ctrl-C stays Ctrl-C.
    evaluator(batches, progress=ctrl_c_after_two)
  evaluator.partial_on_interrupt = True
  totals = evaluator(batches, progress=ctrl_c_after_two)
  assert evaluator.interrupted and totals['count'] == 4 and totals['value'] == 6.0
