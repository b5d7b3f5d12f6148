"""What a binary does before TensorFlow loads: its --help, and the checks of its paths and flags.

`--help` (also -h, -?, --helpshort, --helpfull) prints the binary's description, usage and
example, its flags, the shipped gin configs and the datasets on stdout and exits with status 0,
the same text for bin/<name> and the installed vlae-<name> (it does not depend on the __main__
module's docstring). `check_paths(name, flags)` reports a missing run directory, gin file, data
directory or input file as one `error:` line before TensorFlow loads (under a second instead of
8-17 s), with the messages the run itself would give. `flag_hint(name, argv)` turns a
hyperparameter passed as a flag (`--train_steps=200`) into a pointer to its gin binding.

Imports nothing heavy: no TensorFlow, no gin.
"""

import difflib
import os
import sys
import textwrap

from vlae_tf import configs
from vlae_tf import errors
from vlae_tf import time_limits

HELP_ARGS = ('--help', '-help', '-h', '-?', '--helpshort', '--helpfull')

# name: (what it does, usage, example)
DESCRIPTIONS = {
    'train': (
        'Trains a VLAE, resuming from the run directory\'s latest checkpoint. On one\'s own '
        'images: bin/train --dataset=FOLDER --model_dir=DIR (the model is chosen to fit them).',
        'bin/train --model_dir=DIR [--gin_file=FILE ...] [--gin_param=BINDING ...] '
        '[--data_dir=DIR] [--dataset=NAME_OR_PATH [--image_size=HxW] [--binarize=threshold]]',
        'bin/train --model_dir=runs/mnist --gin_file=mnist_vlae.gin '
        '--gin_param=TRAIN_STEPS=200 --data_dir=../shared/data'),
    'eval': (
        'Evaluates a run: importance-weighted NLL, ELBO and KL; writes <model_dir>/eval_<split>'
        '.json and the NLL to TensorBoard (<model_dir>/eval). By default a quick estimate '
        '(K=128 on 500 evenly spread images); --protocol=paper is the paper\'s (K=4096 for '
        'binary data, 512 for 8-bit data, every image of the split).',
        'bin/eval (--model_dir=DIR | --pretrained=NAME) [--protocol=quick|paper] [--split=test] '
        '[--num_samples=K] [--max_examples=N] [--checkpoint=DIR/ckpt-N or N] [--json]',
        'bin/eval --model_dir=runs/mnist'),
    'sample': (
        'Writes PNG grids of samples and lossy reconstructions of a run.',
        'bin/sample (--model_dir=DIR | --pretrained=NAME) [--num_images=64] [--output=DIR] '
        '[--checkpoint=N]',
        'bin/sample --model_dir=runs/mnist --num_images=64'),
    'export': (
        'Exports a run\'s averaged weights as a SavedModel in <export_dir>/<step>.',
        'bin/export (--model_dir=DIR | --pretrained=NAME) [--export_dir=BASE] '
        '[--checkpoint=DIR/ckpt-N or N]',
        'bin/export --model_dir=runs/mnist'),
    'benchmark': (
        'Measures training, evaluation and sampling throughput: one JSON line per measurement.',
        'bin/benchmark --gin_file=FILE [--gin_param=BINDING ...] '
        '[--what=train,eval,sample,profile] [--batch_size=N] [--data_dir=DIR]',
        'bin/benchmark --gin_file=mnist_vlae.gin --data_dir=../shared/data'),
    'reproduce': (
        'Trains and evaluates a group of the paper\'s experiments alike, and writes the results '
        'table (results.json, results.md, nll_vs_steps.png).',
        'bin/reproduce --output_dir=DIR (--table=NAME | --experiment=FILE.gin ...) '
        '[--train_steps=N] [--num_samples=K] [--max_examples=N] [--data_dir=DIR]',
        'bin/reproduce --table=mnist --train_steps=6000 --num_samples=128 '
        '--output_dir=runs/table1 --data_dir=../shared/data'),
    'inspect': (
        'What the lossy code of a run keeps: rate and distortion, a linear probe on z, '
        'per-pixel maps; writes <model_dir>/inspect/.',
        'bin/inspect (--model_dir=DIR | --pretrained=NAME) [--max_examples=N] '
        '[--compare_model_dir=DIR]\n'
        '       bin/inspect --model_dir=A --model_dir=B ... --output_dir=DIR   (runs side by side)',
        'bin/inspect --model_dir=runs/mnist'),
    'compress': (
        'Compresses binary or 8-bit images losslessly through a trained VLAE (bits-back coding '
        'with ANS). IMAGES: an .amat/.amat.gz file (binary), a .npy array or a directory of PNG '
        'files.',
        'bin/compress (--model_dir=DIR | --pretrained=NAME) --input=IMAGES --output=FILE '
        '[--checkpoint=N] [--first_batch=N] [--json]',
        'bin/compress --model_dir=runs/mnist --input=test.amat.gz --output=/tmp/test.vlae'),
    'decompress': (
        'Restores the images of a file written by bin/compress, bit for bit.',
        'bin/decompress (--model_dir=DIR | --pretrained=NAME) --input=FILE --output=IMAGES '
        '[--checkpoint=N] [--json]',
        'bin/decompress --model_dir=runs/mnist --input=/tmp/test.vlae --output=/tmp/test.amat.gz'),
}

# Binaries that read an existing run directory (--model_dir must hold config.gin).
_READERS = ('eval', 'sample', 'export', 'inspect', 'compress', 'decompress')

# Hyperparameters a user may pass as flags, and their gin bindings.
_GIN_HINTS = {'train_steps': 'TRAIN_STEPS=N', 'batch_size': 'BATCH_SIZE=N'}


def wants_help(argv):
  return any(arg in HELP_ARGS for arg in argv[1:])


def _experiment_configs():
  """The shipped configs a user passes as --gin_file: the experiments and testing/."""
  return [name for name in configs.names()
          if os.sep not in name and name != configs.BASE_GIN or name.startswith('testing')]


def _dataset_names():
  from vlae_tf.data import catalogue  # pylint: disable=g-import-not-at-top  (numpy only)
  return catalogue.NAMES


def _flag_lines(flag):
  text = f'  --{"[no]" if flag.boolean else ""}{flag.name}'
  help_text = flag.help or ''
  if flag.default is not None and flag.default != [] and not flag.boolean or flag.boolean:
    help_text += f' (default: {flag.default_as_str or flag.default})'
  lines = [text]
  lines += textwrap.wrap(help_text, 96, initial_indent='      ', subsequent_indent='      ')
  return lines


def help_text(name, key_flags):
  """The --help of binary `name`: description, usage, example, flags, configs, datasets."""
  description, usage, example = DESCRIPTIONS[name]
  lines = textwrap.wrap(description, 100)
  lines += ['', f'usage: {usage}', f'  e.g. {example}', '', 'flags:']
  for flag in sorted(key_flags, key=lambda f: f.name):
    lines += _flag_lines(flag)
  lines += ['  --verbosity', '      1 or more: TensorFlow\'s start-up messages and the absl prefix '
            'of every log line', '      (--log_dir=DIR: log files too). --helpfull: every flag.']
  if name in ('train', 'benchmark', 'reproduce'):
    lines += ['', 'Every hyperparameter is gin: --gin_param=TRAIN_STEPS=N, --gin_param=BATCH_SIZE=N, '
              '--gin_param="train.<setting> = value".',
              'shipped configs (--gin_file=NAME, from any directory):']
    lines += textwrap.wrap(', '.join(_experiment_configs()), 96, initial_indent='  ',
                           subsequent_indent='  ')
  lines += ['', 'datasets (train.dataset; files under --data_dir or $VLAE_DATA_DIR):',
            '  ' + ', '.join(_dataset_names()),
            '  or one\'s own images: --dataset=FOLDER (PNG/JPEG/BMP/GIF), --dataset=FILE.npy/.npz, '
            '--dataset=tfds:NAME']
  return '\n'.join(lines) + '\n'


def flag_hint(argv, defined):
  """A one-line error for a hyperparameter (or --pretrained) passed as a flag the binary does not
  define, or None."""
  for arg in argv[1:]:
    if not arg.startswith('-'):
      continue
    flag = arg.lstrip('-').split('=', 1)[0]
    if flag in _GIN_HINTS and flag not in defined:
      return (f'error: --{flag} is not a flag of this binary: every hyperparameter is gin; pass '
              f'--gin_param={_GIN_HINTS[flag]} (or --gin_param="train.{flag} = N").')
    if flag == 'pretrained' and flag not in defined:
      return ('error: --pretrained is for the binaries that read a trained model (eval, sample, '
              'export, inspect, compress, decompress); this one needs --model_dir=DIR.')
  return None


def _exists(path):
  return path is None or os.path.exists(os.path.expanduser(path))


def check_paths(name, values):
  """The one-line error for a path given to binary `name` that cannot work, or None.

  `values` maps flag names to their values. Checks what is cheap and certain: --time_limit, the
  run directory of the readers (and its config.gin), gin files, the data directory, bin/train's
  own images (data/early_checks.py) and --image_size, an input file, the header and checksums of
  bin/decompress's input.
  """
  if values.get('time_limit') is not None:
    try:
      time_limits.parse_duration(values['time_limit'])
    except errors.CliError as error:
      return f'error: {error}'
  if name in _READERS:
    model_dirs = values.get('model_dir') or []
    for model_dir in [model_dirs] if isinstance(model_dirs, str) else model_dirs:
      if not os.path.isdir(model_dir):
        return (f'error: No such run directory: {model_dir} (pass the --model_dir of a bin/train '
                'run).')
      if not os.path.isfile(os.path.join(model_dir, 'config.gin')):
        return (f'error: No config.gin in {model_dir}: not a training run directory (pass the '
                '--model_dir of a bin/train run).')
  for gin_file in values.get('gin_file') or []:
    if configs.resolve(gin_file) is None:
      close = difflib.get_close_matches(gin_file, configs.names(), n=3)
      hint = f'; did you mean {", ".join(close)}?' if close else '; see --help for the shipped configs'
      return (f'error: gin file not found: {gin_file} (looked in . and {configs.search_path()})'
              f'{hint}')
  for flag in ('data_dir', 'compare_model_dir'):
    if not _exists(values.get(flag)):
      return f'error: --{flag}={values[flag]}: no such directory.'
  dataset = values.get('dataset')
  if (dataset and dataset not in _dataset_names() and not dataset.startswith('tfds:')
      and not _exists(dataset)):
    return (f'error: --dataset={dataset}: no such folder or file, and not a dataset name '
            f'({", ".join(_dataset_names())}); give a folder of images, a .npy/.npz file or '
            'tfds:NAME.')
  if name == 'train' and dataset and dataset not in _dataset_names() and not dataset.startswith(
      'tfds:'):  # One's own images: their listing, headers and arrays (numpy and Pillow only).
    from vlae_tf.data import early_checks  # pylint: disable=g-import-not-at-top
    try:
      early_checks.check_source(dataset, values.get('image_size'))
    except errors.DatasetError as error:
      return f'error: {error}'
  train_steps = values.get('train_steps')
  if train_steps is not None and train_steps < 1:
    return f'error: --train_steps={train_steps}: the budget must be at least 1 step.'
  if name in ('compress', 'decompress') and not _exists(values.get('input')):
    return f'error: --input={values["input"]}: no such file or directory.'
  if name == 'decompress':  # The file's header and checksums, before TensorFlow loads.
    from vlae_tf.compression import codec  # pylint: disable=g-import-not-at-top  (no TensorFlow)
    try:
      codec.unpack(values['input'])
    except errors.CodecError as error:
      return f'error: {error}'
  return None


def print_help(name, key_flags, full_help=None):
  sys.stdout.write(help_text(name, key_flags))
  if full_help:
    sys.stdout.write('\nall flags:\n' + full_help + '\n')
  sys.stdout.flush()
