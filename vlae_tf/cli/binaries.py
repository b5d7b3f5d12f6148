"""The flags and mains of every binary, and the installed commands.

    bin/<name> --flags ...          in a checkout (the README's commands)
    vlae-<name> --flags ...         after `pip install` (console entry points, see setup.py)

with <name> one of train, eval, sample, export, benchmark, reproduce, inspect, compress and
decompress. Each binary defines
its own flags (`define_*_flags`) and runs one `*_main` with absl `app.run`; `run_binary(name)` does
both. The `run_*` functions do the work and take plain arguments, for tests and notebooks.

Flags are program-level only; every hyperparameter is gin. `train` parses base.gin, then the
--gin_file files in order, then the --gin_param bindings, all strictly (an unknown configurable or
parameter is an error). eval, sample and export take no gin: they re-read <model_dir>/config.gin,
the config the run was started with. Gin files are found by name from anywhere (vlae_tf/configs.py).

This module imports TensorFlow only when a main runs, so `--help` is fast; it then hides
TensorFlow's start-up chatter (its C++ INFO lines and, on machines without a GPU, the failed CUDA
probe) unless `--verbosity=1` or more asks for everything.

A user error (no --model_dir, no checkpoint, an unknown gin file or binding, missing data, an
incompatible or unwritable run directory, too many non-finite steps, no intact checkpoint, a
damaged config.gin) ends the program with one line on stderr and exit status 1, without a
traceback. A damaged newest checkpoint is not an error when an older one is intact: bin/train moves
it aside and resumes from the older one, the readers use the older one, each saying so in one
warning line. SIGTERM or SIGINT during bin/train saves a
checkpoint, prints one line, and exits with status 128 + the signal number (143 for SIGTERM, 130
for SIGINT); running the same command again resumes. See docs/reliability.md.
"""

import importlib
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging

from vlae_tf import errors
from vlae_tf.cli import gin_parsing
from vlae_tf.experiments import paper
from vlae_tf.cli import startup

FLAGS = flags.FLAGS


# ---------------------------------------------------------------------------------------------
# Library-level entry points.


def run_train(model_dir, gin_files=(), gin_params=(), data_dir=None):
  """Parses gin (base.gin, files, params) and trains in `model_dir`."""
  from vlae_tf.training import loop as training  # pylint: disable=g-import-not-at-top
  gin_parsing.parse_gin(gin_files, gin_params)
  return training.train(model_dir, data_dir=data_dir)


def run_eval(model_dir, split='test', num_samples=None, max_examples=None, data_dir=None,
             batch_size=32, curve=False, checkpoint=None):
  """Evaluates the run's newest intact checkpoint, or `checkpoint` (a prefix or a step); returns
  the report (also in eval_<split>.json).

  With `curve`, evaluates every kept intact checkpoint instead and returns their reports (also in
  eval_<split>_curve.json, plotted against training time in eval_<split>_curve.png).
  """
  from vlae_tf.evaluation import evaluator as evaluation  # pylint: disable=g-import-not-at-top
  if curve:
    if checkpoint:
      raise errors.CliError('--checkpoint and --curve exclude each other: the curve evaluates '
                            'every kept checkpoint.')
    return evaluation.evaluate_curve(model_dir, split=split, num_samples=num_samples,
                                     max_examples=max_examples, batch_size=batch_size,
                                     data_dir=data_dir)
  return evaluation.evaluate(model_dir, split=split, num_samples=num_samples,
                             max_examples=max_examples, batch_size=batch_size, data_dir=data_dir,
                             checkpoint=checkpoint)


def run_sample(model_dir, num_images=64, output=None, num_reconstructions=8, num_decodings=7,
               split='test', data_dir=None, seed=0, checkpoint=None):
  """Writes samples_<step>.png and reconstructions_<step>.png to `output` (<model_dir>/samples).

  Uses the newest intact checkpoint, or `checkpoint` (a prefix or a step). Reconstructions are of
  a strided subset of `split` (so that every class shows up on sorted splits); with
  num_reconstructions=0 the data is not needed.
  """
  # pylint: disable=g-import-not-at-top
  import numpy as np
  from vlae_tf.data import batching
  from vlae_tf.training import checkpoints
  from vlae_tf.data import datasets
  from vlae_tf.training import run_directory
  from vlae_tf.models import sampling
  # pylint: enable=g-import-not-at-top
  run_directory.load_run_config(model_dir)
  checkpoint = checkpoints.resolve_checkpoint(model_dir, checkpoint)
  model, step, _ = run_directory.restore_averaged_model(model_dir, checkpoint)
  images = None
  if num_reconstructions:
    dataset = datasets.load(run_directory.run_dataset(), split, data_dir=data_dir)
    subset = batching.strided_subset(dataset, num_reconstructions)
    images = np.stack([x.numpy() for x in subset])
  output = output or os.path.join(model_dir, 'samples')
  return sampling.write_grids(model, output, step, num_images=num_images,
                              reconstruction_images=images, num_decodings=num_decodings,
                              seed=seed)


def run_export(model_dir, export_dir=None, checkpoint=None):
  """Exports the averaged weights of the run's newest intact checkpoint, or of `checkpoint` (a
  prefix or a step); returns the SavedModel directory."""
  from vlae_tf.export import saved_model as export_lib  # pylint: disable=g-import-not-at-top
  return export_lib.export(model_dir, export_dir=export_dir, checkpoint=checkpoint)


def run_compress(model_dir, input_path, output_path, checkpoint=None):
  """Compresses binary images losslessly through the run's model (bits-back ANS); a report."""
  from vlae_tf.compression import codec  # pylint: disable=g-import-not-at-top
  return codec.compress(model_dir, input_path, output_path, checkpoint=checkpoint)


def run_decompress(model_dir, input_path, output_path, checkpoint=None):
  """Restores the images of a file of bin/compress; a report."""
  from vlae_tf.compression import codec  # pylint: disable=g-import-not-at-top
  return codec.decompress(model_dir, input_path, output_path, checkpoint=checkpoint)


# ---------------------------------------------------------------------------------------------
# Flags and absl mains.


def _define_model_dir():
  flags.DEFINE_string('model_dir', None, 'The run directory (checkpoints, config.gin, summaries).')
  flags.mark_flag_as_required('model_dir')


def _define_checkpoint():
  flags.DEFINE_string('checkpoint', None, 'The checkpoint to use: a prefix such as '
                      '<model_dir>/ckpt-2000, or a step such as 2000 (default: the newest intact '
                      'checkpoint).')


def define_train_flags():
  _define_model_dir()
  flags.DEFINE_multi_string('gin_file', [], 'Gin files, parsed after base.gin, in order: a path, '
                            'or the name of a shipped config (mnist_vlae.gin, testing/tiny.gin).')
  flags.DEFINE_multi_string('gin_param', [], 'Gin bindings, parsed after the files, e.g. '
                            '"train.train_steps = 1000".')
  flags.DEFINE_string('data_dir', None, 'Where the datasets find their raw files.')


def define_eval_flags():
  _define_model_dir()
  flags.DEFINE_string('split', 'test', 'The split to evaluate: test, valid, train or train+valid.')
  flags.DEFINE_integer('num_samples', None, 'Importance samples (default: 4096 for binary data, '
                       '512 for 8-bit data).')
  flags.DEFINE_integer('max_examples', None, 'Evaluate a strided subset of this many images.')
  flags.DEFINE_integer('batch_size', 32, 'Images per batch.')
  flags.DEFINE_string('data_dir', None, 'Where the datasets find their raw files.')
  flags.DEFINE_boolean('curve', False, 'Evaluate every kept checkpoint (same importance samples) '
                       'and plot the NLL against training time: eval_<split>_curve.json/.png.')
  _define_checkpoint()


def define_sample_flags():
  _define_model_dir()
  flags.DEFINE_integer('num_images', 64, 'Samples in the sample grid.')
  flags.DEFINE_integer('num_reconstructions', 8, 'Test images in the reconstruction grid '
                       '(0: none, and no data is read).')
  flags.DEFINE_integer('num_decodings', 7, 'Decodings of each test image\'s z.')
  flags.DEFINE_string('output', None, 'Output directory (default: <model_dir>/samples).')
  flags.DEFINE_string('data_dir', None, 'Where the datasets find their raw files.')
  flags.DEFINE_integer('seed', 0, 'Seed of the samples.')
  _define_checkpoint()


def define_export_flags():
  _define_model_dir()
  flags.DEFINE_string('export_dir', None, 'Base directory; the SavedModel goes to '
                      '<export_dir>/<step> (default: <model_dir>/export/<step>).')
  _define_checkpoint()


def define_compress_flags():
  _define_model_dir()
  flags.DEFINE_string('input', None, 'Binary images: an .amat or .amat.gz file, a .npy array or '
                      'a directory of PNG files.')
  flags.DEFINE_string('output', None, 'The compressed file to write.')
  flags.mark_flags_as_required(['input', 'output'])
  _define_checkpoint()


def define_decompress_flags():
  _define_model_dir()
  flags.DEFINE_string('input', None, 'A file written by bin/compress.')
  flags.DEFINE_string('output', None, 'Where the images go: an .amat/.amat.gz or .npy file, or a '
                      'new directory of PNG files.')
  flags.mark_flags_as_required(['input', 'output'])
  _define_checkpoint()


def _one_line(error):
  """The error's message on one line, without gin's "In call to configurable ..." suffix."""
  message = ' '.join(str(error).split())
  return re.sub(r"\s*In call to configurable '[^']+' \(<[^>]*>\)", '', message)


def _guard(run):
  """Runs `run()`, turning user errors (the `errors.VlaeError` family) into one line on stderr and
  exit status 1.

  A training run stopped by SIGTERM / SIGINT (after its final checkpoint) prints one line and exits
  with 128 + the signal number.
  """
  try:
    return run()
  except errors.TrainingInterrupted as interrupted:
    print(f'stopped: {_one_line(interrupted)}', file=sys.stderr, flush=True)
    raise SystemExit(128 + interrupted.signum) from None
  except errors.VlaeError as error:
    raise SystemExit(f'error: {_one_line(error)}') from None


def _no_positional(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')


def train_main(argv):
  _no_positional(argv)
  _guard(lambda: run_train(FLAGS.model_dir, FLAGS.gin_file, FLAGS.gin_param, FLAGS.data_dir))


def eval_main(argv):
  _no_positional(argv)
  result = _guard(lambda: run_eval(FLAGS.model_dir, FLAGS.split, FLAGS.num_samples,
                                   FLAGS.max_examples, FLAGS.data_dir, FLAGS.batch_size,
                                   FLAGS.curve, FLAGS.checkpoint))
  for report in result if FLAGS.curve else [result]:
    logging.info('%s', report)
    minutes = report.get('train_seconds')
    when = '' if minutes is None else f', {minutes / 60:.1f} min of training'
    print(f'{report["split"]}: NLL {report["nll_nats"]:.3f} +- {report["nll_stderr_nats"]:.3f} '
          f'nats ({report["bits_per_dim"]:.4f} bits/dim), ELBO {report["elbo_nats"]:.3f} nats, '
          f'KL {report["kl_nats"]:.3f} nats, {report["num_examples"]} images, '
          f'K={report["num_samples"]}, step {report["step"]}{when}')


def compress_main(argv):
  _no_positional(argv)
  report = _guard(lambda: run_compress(FLAGS.model_dir, FLAGS.input, FLAGS.output,
                                       FLAGS.checkpoint))
  logging.info('compressed %d images into %s: %d bytes, %.2f bits/image, %.4f bits/pixel (of '
               'which %d one-off initial bits; the stream alone %.2f bits/image) with the model '
               'of step %d in %.1f s', report['images'], FLAGS.output, report['bytes'],
               report['bits_per_image'], report['bits_per_pixel'], report['initial_bits'],
               report['payload_bits_per_image'], report['step'], report['seconds'])


def decompress_main(argv):
  _no_positional(argv)
  report = _guard(lambda: run_decompress(FLAGS.model_dir, FLAGS.input, FLAGS.output,
                                         FLAGS.checkpoint))
  logging.info('decompressed %d images into %s (checksum verified) in %.1f s', report['images'],
               FLAGS.output, report['seconds'])


def sample_main(argv):
  _no_positional(argv)
  paths = _guard(lambda: run_sample(FLAGS.model_dir, FLAGS.num_images, FLAGS.output,
                                    FLAGS.num_reconstructions, FLAGS.num_decodings,
                                    data_dir=FLAGS.data_dir, seed=FLAGS.seed,
                                    checkpoint=FLAGS.checkpoint))
  for path in paths.values():
    print(path)


def export_main(argv):
  _no_positional(argv)
  print(_guard(lambda: run_export(FLAGS.model_dir, FLAGS.export_dir, FLAGS.checkpoint)))


def define_benchmark_flags():
  """The flags of bin/benchmark (program-level only; the model is the gin config)."""
  flags.DEFINE_multi_string('gin_file', [], 'Gin files, parsed after base.gin, in order.')
  flags.DEFINE_multi_string('gin_param', [], 'Gin bindings, parsed after the files.')
  flags.DEFINE_string('data_dir', None, 'Where the datasets find their raw files '
                      '(default: $VLAE_DATA_DIR).')
  flags.DEFINE_list('what', ['train', 'eval', 'sample'],
                    'Benchmarks, a subset of train, eval, sample, profile.')
  flags.DEFINE_integer('batch_size', None, 'Global training batch (default: gin train.batch_size).')
  flags.DEFINE_integer('repeats', 3, 'Timed repetitions per measurement (median reported).')
  flags.DEFINE_integer('warmup', 1, 'Untimed repetitions before timing.')
  flags.DEFINE_integer('steps_per_chunk', 20, 'Training steps per timed train_loop call.')
  flags.DEFINE_integer('eval_batch_size', 8, 'Images in the timed log_likelihood call.')
  flags.DEFINE_integer('num_samples', 4096, 'Importance samples K of the timed log_likelihood.')
  flags.DEFINE_integer('chunk_size', 64, 'Importance samples per decoder pass.')
  flags.DEFINE_list('sample_methods', ['sequential', 'fast'],
                    'Samplers: sequential (naive), fast, fixed_point.')
  flags.DEFINE_integer('naive_repeats', 1, 'Timed runs of the naive sampler.')
  flags.DEFINE_boolean('jit', True, 'Also time the profile under XLA.')
  flags.DEFINE_integer('peak_repeats', 5, 'Timed repetitions of the 2048^3 matmul.')


def define_reproduce_flags():
  """The flags of bin/reproduce (vlae_tf/reproduce.py)."""
  tables = paper.TABLES
  flags.DEFINE_string('output_dir', None, 'Where results.json, results.md, nll_vs_steps.png, the '
                      'training logs and the run directories (runs/<experiment>) go.')
  flags.mark_flag_as_required('output_dir')
  flags.DEFINE_enum('table', None, list(tables), 'A named group of experiments: ' + '; '.join(
      f'{name} = {", ".join(paper.experiment_name(f) for f in files)}'
      for name, files in tables.items()) + '.')
  flags.DEFINE_multi_string('experiment', [], 'Experiment gin files (e.g. mnist_vlae.gin), after '
                            'those of --table.')
  flags.DEFINE_integer('train_steps', None, 'The training budget of every run, in steps (equal '
                       'within the table). Default: each gin file\'s own schedule.')
  flags.DEFINE_string('split', 'test', 'The split every run is evaluated on.')
  flags.DEFINE_integer('num_samples', None, 'Importance samples K of the table\'s NLL (default: '
                       '4096 for binary data, 512 for CIFAR-10).')
  flags.DEFINE_integer('max_examples', 1000, 'Evaluate on this many evenly spread images of the '
                       'split (0 or less: all).')
  flags.DEFINE_integer('seed', 0, 'Seed of the importance samples (the same for every run).')
  flags.DEFINE_integer('curve_num_samples', 32, 'K of the NLL-against-steps curve.')
  flags.DEFINE_integer('curve_max_examples', 100, 'Images per point of the curve.')
  flags.DEFINE_integer('batch_size', 50, 'Evaluation batch.')
  flags.DEFINE_string('select_split', None, 'Model selection: evaluate every kept checkpoint on '
                      'this split (e.g. valid) with the curve\'s K and images, and report the '
                      'best one on --split (default: the checkpoint at the budget).')
  flags.DEFINE_multi_string('gin_file', [], 'Gin files added after every experiment file, e.g. '
                            'testing/tiny.gin.')
  flags.DEFINE_multi_string('gin_param', [], 'Gin bindings added to every run.')
  flags.DEFINE_string('data_dir', None, 'Where the datasets find their raw files.')


def define_inspect_flags():
  """The flags of bin/inspect (vlae_tf/inspection.py)."""
  flags.DEFINE_multi_string('model_dir', None, 'The run directory to inspect (its averaged '
                            'weights); repeat it to compare runs (needs --output_dir).')
  flags.mark_flag_as_required('model_dir')
  flags.DEFINE_string('output_dir', None, 'With several --model_dir: where comparison.md, '
                      'rate_vs_window.png and the side-by-side reconstructions.png go.')
  flags.DEFINE_string('split', 'test', 'The split of the rate/distortion, probe scores and maps.')
  flags.DEFINE_integer('max_examples', 1000, 'Evenly spread images of the split (0: all).')
  flags.DEFINE_integer('probe_train_examples', 10000, 'Evenly spread training images the probe '
                       'is fitted on (0: all).')
  flags.DEFINE_integer('num_maps', 6, 'Test images in pixel_maps.png.')
  flags.DEFINE_integer('num_reconstructions', 8, 'Test images in reconstructions.png.')
  flags.DEFINE_integer('num_decodings', 7, 'Decodings of each test image\'s z.')
  flags.DEFINE_string('compare_model_dir', None, 'A second run (e.g. the PixelCNN without z) '
                      'whose per-pixel map replaces the map under z from the prior.')
  flags.DEFINE_string('data_dir', None, 'Where the datasets find their raw files.')
  flags.DEFINE_integer('seed', 0, 'Seed of the posterior and prior draws.')


# ---------------------------------------------------------------------------------------------
# Start-up: TensorFlow, loaded quietly once the flags are parsed.

def _lazy_main(module, function='main'):
  """A main that starts TensorFlow quietly, then runs vlae_tf.<module>.<function>(argv)."""

  def main(argv):
    startup.start_tensorflow()
    return getattr(importlib.import_module(f'vlae_tf.experiments.{module}'), function)(argv)

  return main


def _started(main):
  def started_main(argv):
    startup.start_tensorflow()
    return main(argv)
  return started_main


_BINARIES = {
    'train': (define_train_flags, _started(train_main)),
    'eval': (define_eval_flags, _started(eval_main)),
    'sample': (define_sample_flags, _started(sample_main)),
    'export': (define_export_flags, _started(export_main)),
    'benchmark': (define_benchmark_flags, _lazy_main('benchmark')),
    'reproduce': (define_reproduce_flags, _lazy_main('reproduce')),
    'inspect': (define_inspect_flags, _lazy_main('inspection')),
    'compress': (define_compress_flags, _started(compress_main)),
    'decompress': (define_decompress_flags, _started(decompress_main)),
}
COMMANDS = tuple(_BINARIES)


def run_binary(name):
  """Defines the flags of binary `name` and runs its main on sys.argv: what bin/<name> does.

  Also for subprocesses (`python -c "from vlae_tf import cli; cli.run_binary('train')" --flags`),
  which must not depend on where bin/ is.
  """
  define_flags, main = _BINARIES[name]
  define_flags()
  # absl's --help lists the key flags of the program (sys.argv[0]); these are defined here.
  for flag in flags.FLAGS.get_key_flags_for_module(__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(main)


# The installed commands (setup.py's console entry points): vlae-train, vlae-eval, ...
def train_command():
  run_binary('train')


def eval_command():
  run_binary('eval')


def sample_command():
  run_binary('sample')


def export_command():
  run_binary('export')


def benchmark_command():
  run_binary('benchmark')


def reproduce_command():
  run_binary('reproduce')


def inspect_command():
  run_binary('inspect')


def compress_command():
  run_binary('compress')


def decompress_command():
  run_binary('decompress')
