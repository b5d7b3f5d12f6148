"""Test set-up shared by every test module.

Two logical CPU devices are configured before TensorFlow initializes its runtime, so that
`tf.distribute.MirroredStrategy` runs two real replicas on a CPU-only machine.
"""

import os
import pathlib
import shutil

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# As the binaries start (cli/startup.py): tf.keras is tf_keras, and Keras 3 is never imported
# (2.3 s of CPU per process, in every test process and every binary the tests start).
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from vlae_tf import errors
from vlae_tf import allocator  # pylint: disable=g-import-not-at-top


_cpus = tf.config.list_physical_devices('CPU')
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

# ../shared/data beside the clone, unless VLAE_DATA_DIR says otherwise.
SHARED_DATA = pathlib.Path(
    os.environ.get('VLAE_DATA_DIR',
                   pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data'))


@pytest.fixture(scope='session')
def shared_data():
  """The real data directory; fails loudly (never skips) when it is missing."""
  if not SHARED_DATA.is_dir():
    pytest.fail(f'Real test data not found at {SHARED_DATA}. Put shared/data beside the clone '
                'or set VLAE_DATA_DIR to its path.')
  return SHARED_DATA


# A two-step run of the tiny static MNIST VLAE written by commit e06a543, before the training
# loop was split into modules (tests/testdata).
FIXTURE_RUN = pathlib.Path(__file__).resolve().parent / 'testdata' / 'run_e06a543'


@pytest.fixture
def run_dir(tmp_path):
  """A copy of the fixture run (config.gin, ckpt-2, started.json), as a str path."""
  path = tmp_path / 'run'
  shutil.copytree(FIXTURE_RUN, path)
  return str(path)


# The files that take longest, longest first: xdist starts them first (pytest_configure).
SLOWEST_FILES = (  # By their sums of --durations on the full suite (December 2026).
    'reliability_test.py',
    'checkpoints_test.py',
    'saved_model_test.py',
    'binaries_test.py',
    'multiworker_test.py',
    'own_images_run_test.py',
    'reproduce_test.py',
    'precision_test.py',
    'portable_test.py',
    'portable_8bit_test.py',
    'codec_test.py',
    'loop_test.py',
    'benchmark_test.py',
    'accelerators_test.py',
    'loss_scaling_test.py',
    'signals_anytime_test.py',
    'disk_full_test.py',
    'first_hour_test.py',
    'gated_resnet_pixelcnn_test.py',
    'bitsback_test.py',
    'evaluator_test.py',
    'old_runs_test.py',
    'inspection_test.py',
)


def _preload_the_binaries_allocator(config):
  """Under xdist, the workers run on the allocator the binaries choose (vlae_tf/allocator.py).

  pytest-xdist starts its workers after pytest_configure, with this process's environment: with
  the chosen library in LD_PRELOAD, their in-process training, evaluation and export allocate as
  the binaries do (on glibc's malloc a worker spent its time faulting fresh activation pages in),
  and the binaries they start inherit it instead of re-executing themselves (cli_test.py starts
  its binaries without it, as a user does). Without TCMalloc they get glibc's tuned settings
  (allocator.GLIBC_TUNED). Without workers nothing changes: an allocator can only be chosen before
  a process starts. VLAE_TF_ALLOCATOR=system keeps glibc's malloc as it is.
  """
  if not getattr(config.option, 'numprocesses', None) or 'PYTEST_XDIST_WORKER' in os.environ:
    return
  try:
    library = allocator.library_to_preload()
  except errors.AllocatorError as error:
    raise pytest.UsageError(f'error: {error}') from None
  if library == allocator.GLIBC:  # No TCMalloc: glibc's malloc tuned, as the binaries run.
    os.environ.update(allocator.GLIBC_TUNED)
  elif library:
    os.environ['LD_PRELOAD'] = ' '.join([library, *os.environ.get('LD_PRELOAD', '').split()])


def pytest_configure(config):
  """Under `-n 2 --dist loadfile` (the README's command), files go to the workers in collection
  order, not xdist's default order by number of tests; and they run on TCMalloc
  (_preload_the_binaries_allocator).

  A file runs on one worker, so the suite ends when the worker that started the last long file
  finishes it. Ordered by number of tests, the files with a few slow tests (SLOWEST_FILES) came
  last and one worker ran them alone; collected first (pytest_collection_modifyitems), they run
  while the many small files fill the other worker.
  """
  if hasattr(config.option, 'loadscopereorder'):  # pytest-xdist's --[no-]loadscope-reorder.
    config.option.loadscopereorder = False
  _preload_the_binaries_allocator(config)


def pytest_collection_modifyitems(items):
  """tf.test.TestCase.test_session is a context manager, not a test: keep it out of the counts.

  SLOWEST_FILES come first, in that order; every file keeps the order of its tests.
  """
  items[:] = [item for item in items if item.name != 'test_session']
  rank = {name: index for index, name in enumerate(SLOWEST_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable.


@pytest.fixture(autouse=True)
def _fresh_gin_config():
  """Every test starts and ends with an empty, unlocked gin config (binaries finalize it)."""
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  yield
  gin.clear_config()
