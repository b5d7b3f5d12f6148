"""One name, one home: every gin and Keras name is its defining module's, and old names still load.

A configurable's gin name is `<defining module>.<Name>` (`encoders.BinaryResNetEncoder` lives in
models/encoders.py), and so is its Keras registration (package 'vlae_tf.encoders'). The shipped gin
files name configurables that way. Runs saved before the names were made so say
`networks.BinaryResNetEncoder`, `pixelcnn.GatedPixelCNN` or `flows.ConvAutoregressiveFlowPrior`:
`gin_parsing.current_names` reads them as today's names, so those runs load, build the same model
and resume under today's gin files. tests/testdata/config_ca73fcb_cifar10_resnet_vlae_tiny.gin is
the config.gin that commit ca73fcb (the last under the old names) wrote for
`--gin_file=cifar10_resnet_vlae.gin --gin_file=testing/tiny.gin`; the old binary networks and
decoder are in tests/testdata/run_e06a543 and the shipped pretrained model
(old_runs_test.py, packaging_test.py).
"""

import os
import pathlib
import re
import shutil

import gin
import pytest
import tf_keras as keras

from vlae_tf import errors
from vlae_tf import gin_parsing
from vlae_tf.models import context_networks
from vlae_tf.models import conv_flows
from vlae_tf.models import encoders
from vlae_tf.models import gated_pixelcnn
from vlae_tf.models import vlae as model_lib
from vlae_tf.training import configurables  # pylint: disable=unused-import  (every gin name)
from vlae_tf.runs import run_config

REPO = str(pathlib.Path(__file__).resolve().parents[2])
GIN_DIR = os.path.join(REPO, 'gin')
TESTDATA = os.path.join(REPO, 'tests', 'testdata')
OLD_CONFIG = os.path.join(TESTDATA, 'config_ca73fcb_cifar10_resnet_vlae_tiny.gin')
REGISTRY = gin.config._REGISTRY  # pylint: disable=protected-access  (gin's names, as gin_parsing)

# How the old code named today's modules in a config (written out here, apart from RENAMED).
OLD_MODULE_OF = {'blocks': 'networks', 'encoders': 'networks', 'context_networks': 'networks',
                 'gated_pixelcnn': 'pixelcnn', 'gated_resnet_pixelcnn': 'pixelcnn',
                 'conv_flows': 'flows'}
_TODAYS_MODULE = re.compile(r'(?<![\w.])(' + '|'.join(OLD_MODULE_OF) + r')\.(?=[A-Z])')


def old_names(config_text):
  """A config as the code before the renaming wrote it: `networks.X` for `encoders.X`, ..."""
  return _TODAYS_MODULE.sub(lambda match: OLD_MODULE_OF[match.group(1)] + '.', config_text)


def shipped_gin_files():
  return sorted(os.path.relpath(os.path.join(folder, name), GIN_DIR)
                for folder, _, names in os.walk(GIN_DIR) for name in names
                if name.endswith('.gin'))


def named_selectors(text):
  """The configurable selectors a gin file names with a module: `@m.Name` references and the
  `m.Name` of `m.Name.param = ...` bindings (scopes dropped)."""
  selectors = []
  for line in text.splitlines():
    line = line.split('#', 1)[0]
    if line.startswith(('import ', 'include ')):
      continue
    key = re.match(r'([A-Za-z_][\w./]*)\s*=', line)
    if key:
      selectors.append(key.group(1).rpartition('.')[0])
    selectors.extend(re.findall(r'@([A-Za-z_][\w./]*)', line))
  selectors = [selector.rpartition('/')[2] for selector in selectors]
  return [selector for selector in selectors
          if '.' in selector and not selector.startswith('gin.')]


def defining_module(configurable):
  return configurable.wrapped.__module__.rpartition('.')[2]


def test_every_gin_name_is_its_defining_modules():
  ours = [(selector, configurable) for selector, configurable in REGISTRY.items()
          if configurable.wrapped.__module__.startswith('vlae_tf.')]
  assert len(ours) > 25
  for selector, configurable in ours:
    assert selector.split('.')[-2] == defining_module(configurable), selector


def test_every_keras_name_is_its_defining_modules():
  ours = {name: cls for name, cls in keras.saving.get_custom_objects().items()
          if name.startswith('vlae_tf')}
  assert len(ours) >= 12
  for name, cls in ours.items():
    assert name == f'vlae_tf.{cls.__module__.rpartition(".")[2]}>{cls.__name__}'


@pytest.mark.parametrize('path', shipped_gin_files())
def test_shipped_gin_files_name_configurables_by_their_defining_module(path):
  with open(os.path.join(GIN_DIR, path)) as f:
    selectors = named_selectors(f.read())
  for selector in selectors:
    configurable = REGISTRY.get_match(selector)
    assert configurable is not None, f'{path}: {selector} names no configurable'
    assert selector.split('.')[-2] == defining_module(configurable), (
        f'{path}: {selector} is defined in {configurable.wrapped.__module__}')


def test_the_check_finds_an_old_name():
  assert named_selectors('VLAE.encoder = @networks.BinaryResNetEncoder()\n'
                         'enc/pixelcnn.GatedPixelCNN.filters = 3  # a comment @x.Y') == [
                             'networks.BinaryResNetEncoder', 'pixelcnn.GatedPixelCNN']


def test_current_names_rewrites_whole_selectors_only():
  old = ('VLAE.decoder = @pixelcnn.GatedResNetPixelCNN\n'
         'VLAE.encoder = @vlae_tf.networks.BinaryResNetEncoder()\n'
         'scope/networks.ResNetBlock.filters = 3\n'
         'flows.ConvAutoregressiveFlowPrior.num_steps = 2\n'
         'flows.ConvAutoregressiveFlow.x = 1\n'
         'datasets.user_images.binarize = True\n'
         'vlae_tf.VLAE.precision = "float32"\n')
  assert gin_parsing.current_names(old) == (
      'VLAE.decoder = @gated_resnet_pixelcnn.GatedResNetPixelCNN\n'
      'VLAE.encoder = @vlae_tf.encoders.BinaryResNetEncoder()\n'
      'scope/blocks.ResNetBlock.filters = 3\n'
      'conv_flows.ConvAutoregressiveFlowPrior.num_steps = 2\n'
      'conv_flows.ConvAutoregressiveFlow.x = 1\n'
      'user_images.user_images.binarize = True\n'
      'vlae.VLAE.precision = "float32"\n')
  # Today's names, and the old names that did not change, come back as they are.
  today = ('VLAE.decoder = @gated_resnet_pixelcnn.GatedResNetPixelCNN\n'
           'pixelcnn.DepthLimitedPixelCNN.filters = 3\nflows.AutoregressiveFlowPrior.x = 1\n'
           'a = @vlae_tf.pixelcnn.FactorizedDecoder\n')
  assert gin_parsing.current_names(today) == today
  for old_name, new_name in gin_parsing.RENAMED.items():
    assert REGISTRY.get_match(new_name) is not None, new_name
    assert REGISTRY.get_match(old_name) is None, old_name


def test_an_old_runs_config_and_old_bindings_are_read_as_given_to_bin_train(tmp_path):
  """As a run may be resumed: --gin_file=<model_dir>/config.gin, --gin_param with an old name."""
  gin_parsing.parse_gin([OLD_CONFIG], ['networks.SpatialResNetEncoder.blocks = (2, 1, 1)'])
  assert gin.query_parameter('VLAE.encoder').configurable.wrapped is encoders.SpatialResNetEncoder
  assert gin.query_parameter('encoders.SpatialResNetEncoder.blocks') == (2, 1, 1)
  assert gin.query_parameter('VLAE.decoder').configurable.wrapped is gated_pixelcnn.GatedPixelCNN
  # An included file is read the same way; gin's errors still name the file.
  (tmp_path / 'own.gin').write_text(f'include "{OLD_CONFIG}"\nnetworks.NoSuchNetwork.x = 1\n')
  with pytest.raises(errors.CliError, match=r'own.gin.*NoSuchNetwork'):
    gin_parsing.parse_gin([str(tmp_path / 'own.gin')])


def test_a_config_saved_by_the_old_code_loads(tmp_path):
  shutil.copyfile(OLD_CONFIG, tmp_path / run_config.CONFIG_FILE)
  with open(OLD_CONFIG) as f:
    assert '@networks.SpatialResNetEncoder()' in f.read()
  run_config.load_run_config(str(tmp_path))
  assert gin.query_parameter('VLAE.encoder').configurable.wrapped is encoders.SpatialResNetEncoder
  assert (gin.query_parameter('VLAE.context_network').configurable.wrapped is
          context_networks.SpatialResNetDecoder)
  assert gin.query_parameter('VLAE.decoder').configurable.wrapped is gated_pixelcnn.GatedPixelCNN
  assert (gin.query_parameter('VLAE.prior').configurable.wrapped is
          conv_flows.ConvAutoregressiveFlowPrior)
  assert gin.query_parameter('encoders.SpatialResNetEncoder.blocks') == (1, 1, 1)
  assert gin.query_parameter('conv_flows.ConvAutoregressiveFlowPrior.num_steps') == 2


def variables_of_the_configured_model():
  """The shapes of the model's variables in the order it makes them (names are numbered)."""
  model = model_lib.make_model()
  model_lib.create_variables(model)
  return [tuple(v.shape) for v in model.variables]


@pytest.mark.parametrize('experiment', ['mnist_vlae.gin', 'cifar10_resnet_vlae.gin'])
def test_a_config_with_old_names_builds_the_same_model(experiment, tmp_path):
  gin_parsing.parse_gin([experiment, 'testing/tiny.gin'])
  today = gin.config_str()
  expected = variables_of_the_configured_model()
  old = old_names(today)
  assert old != today
  (tmp_path / run_config.CONFIG_FILE).write_text(old)
  run_config.load_run_config(str(tmp_path))
  assert gin.config_str() == today
  assert variables_of_the_configured_model() == expected


def test_a_run_started_under_the_old_names_resumes_under_todays_gin_files(run_dir):
  config_path = os.path.join(run_dir, run_config.CONFIG_FILE)  # Beside ckpt-2: checked.
  for experiment in ('mnist_vlae.gin', 'cifar10_resnet_vlae.gin', 'mnist_iaf_vae.gin'):
    gin_parsing.parse_gin([experiment, 'testing/tiny.gin'])
    today = gin.config_str()
    assert run_config.config_differences(old_names(today), today) == []
    with open(config_path, 'w') as f:
      f.write(old_names(today).replace('TRAIN_STEPS = 3', 'TRAIN_STEPS = 2'))
    run_config.check_resumable(run_dir, today)
  # A real difference is still refused, under today's name.
  gin_parsing.parse_gin(['cifar10_resnet_vlae.gin', 'testing/tiny.gin'],
                        ['conv_flows.ConvAutoregressiveFlowPrior.num_steps = 3'])
  shutil.copyfile(OLD_CONFIG, config_path)
  with pytest.raises(errors.IncompatibleRunError, match=r'differ: '
                     r'ConvAutoregressiveFlowPrior.num_steps: 2 -> 3'):
    run_config.check_resumable(run_dir, gin.config_str())
