"""Tests of configurables.py: one import registers everything a gin config can name."""

import os
import pathlib
import subprocess
import sys

import gin

from vlae_tf import configs

ROOT = str(pathlib.Path(__file__).resolve().parents[2])


def test_one_import_parses_every_shipped_config():
  """In a fresh process, importing vlae_tf.training.configurables alone is enough for every gin file."""
  names = sorted(n for n in os.listdir(os.path.join(ROOT, 'gin')) if n.endswith('.gin'))
  script = ('import gin, sys\n'
            'from vlae_tf import configs\nfrom vlae_tf.training import configurables\n'
            'gin.add_config_file_search_path(configs.search_path())\n'
            'for name in sys.argv[1:]:\n'
            '  gin.clear_config()\n'
            "  gin.parse_config_files_and_bindings(['base.gin', name, 'testing/tiny.gin'], [],\n"
            '                                      skip_unknown=False)\n'
            "print('parsed', len(sys.argv) - 1)\n")
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
             TF_CPP_MIN_LOG_LEVEL='3')
  result = subprocess.run([sys.executable, '-c', script] + names, capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == f'parsed {len(names)}'


def test_the_roots_and_the_soft_free_bits_are_configurable():
  import vlae_tf.training.configurables  # pylint: disable=g-import-not-at-top,unused-import
  gin.add_config_file_search_path(configs.search_path())
  for name in ('train', 'make_trainer', 'make_model', 'make_strategy', 'VLAE', 'SoftFreeBits'):
    assert gin.config._REGISTRY.get_match(name) is not None, name  # pylint: disable=protected-access
