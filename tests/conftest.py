"""Test set-up shared by every test module.

Two logical CPU devices are configured before TensorFlow initializes its runtime, so that
`tf.distribute.MirroredStrategy` runs two real replicas on a CPU-only machine.
"""

import os
import pathlib
import shutil

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

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


# A two-step run of the tiny static MNIST VLAE written before the issue 13 split (tests/testdata).
FIXTURE_RUN = pathlib.Path(__file__).resolve().parent / 'testdata' / 'run_e06a543'


@pytest.fixture
def run_dir(tmp_path):
  """A copy of the fixture run (config.gin, ckpt-2, started.json), as a str path."""
  path = tmp_path / 'run'
  shutil.copytree(FIXTURE_RUN, path)
  return str(path)


def pytest_collection_modifyitems(items):
  """tf.test.TestCase.test_session is a context manager, not a test: keep it out of the counts."""
  items[:] = [item for item in items if item.name != 'test_session']


@pytest.fixture(autouse=True)
def _fresh_gin_config():
  """Every test starts and ends with an empty, unlocked gin config (binaries finalize it)."""
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  yield
  gin.clear_config()
