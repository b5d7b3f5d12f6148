"""bin/train, bin/eval, bin/sample and bin/export: the binaries of a run directory.

    bin/train --model_dir=DIR [--gin_file=FILE ...] [--gin_param=BINDING ...] [--data_dir=DIR]
    bin/eval --model_dir=DIR [--split=test] [--num_samples=K] [--curve] [--checkpoint=STEP]
    bin/sample --model_dir=DIR [--num_images=64] [--output=DIR]
    bin/export --model_dir=DIR [--export_dir=DIR]

`train` parses base.gin, then the --gin_file files in order, then the --gin_param bindings, all
strictly (an unknown configurable or parameter is an error). eval, sample and export take no gin:
they re-read <model_dir>/config.gin, the config the run was started with. The `run_*` functions
do the work and take plain arguments, for tests and notebooks; the `*_main`s read the flags
(`define_*_flags`) and print. TensorFlow is imported only when a run starts, so --help is fast.
"""

import os

from absl import flags
from absl import logging

from vlae_tf import errors
from vlae_tf import gin_parsing
from vlae_tf.cli import dataset_flags
from vlae_tf.cli import shared_flags
from vlae_tf.cli import user_errors

FLAGS = flags.FLAGS


def run_train(model_dir, gin_files=(), gin_params=(), data_dir=None, dataset=None,
              image_size=None, binarize=None, time_limit=None):
  """Parses gin (base.gin, files, params, then the dataset flags) and trains in `model_dir`.

  `dataset` (a name, a folder or array of one's own images, or 'tfds:NAME'), `image_size`
  ('HxW') and `binarize` are bin/train's dataset flags (dataset_flags.py); with a dataset and no
  model in the gin files, the model family that fits the pixels is chosen. `time_limit`: a
  `time_limits.TimeLimit` (--time_limit).
  """
  from vlae_tf.training import loop as training  # pylint: disable=g-import-not-at-top
  if dataset or image_size or binarize:
    dataset_flags.prepare_training_config(gin_files, gin_params, dataset, image_size, binarize)
  else:
    gin_parsing.parse_gin(gin_files, gin_params)
  return training.train(model_dir, data_dir=data_dir, time_limit=time_limit)


def run_eval(model_dir, split='test', num_samples=None, max_examples=None, data_dir=None,
             batch_size=32, curve=False, checkpoint=None, protocol=None, dataset=None,
             time_limit=None, precision=None):
  """Evaluates the run's newest intact checkpoint, or `checkpoint` (a prefix or a step); returns
  the report (also in eval_<split>.json and in TensorBoard under <model_dir>/eval).

  `protocol` ('quick' or 'paper', evaluation.PROTOCOLS) sets K and the subset that
  `num_samples` and `max_examples` leave unset; None: K by data kind, every image.

  With `curve`, evaluates every kept intact checkpoint instead and returns their reports (also in
  eval_<split>_curve.json, plotted against training time in eval_<split>_curve.png).

  `dataset` (bin/eval's --dataset): evaluate on another dataset of the run's image shape.

  Stopped by a signal or by `time_limit` (a `time_limits.TimeLimit`), an evaluation keeps the
  images done (a curve, the checkpoints done) and the same call continues it.

  `precision` (bin/eval's --precision): compute in this precision instead of the run's.
  """
  from vlae_tf.runs import run_config  # pylint: disable=g-import-not-at-top
  with run_config.reading_dataset(dataset_flags.check_reader_dataset(model_dir, dataset)):
    return _run_eval(model_dir, split, num_samples, max_examples, data_dir, batch_size, curve,
                     checkpoint, protocol, time_limit, precision)


def _run_eval(model_dir, split, num_samples, max_examples, data_dir, batch_size, curve,
              checkpoint, protocol, time_limit, precision):
  # pylint: disable=g-import-not-at-top
  from vlae_tf.evaluation import evaluator as evaluation
  from vlae_tf.data import sources
  # pylint: enable=g-import-not-at-top
  data_dir = sources.reader_data_dir(model_dir, data_dir)
  if protocol is not None:  # bin/eval's --protocol; --num_samples and --max_examples win over it.
    if protocol not in evaluation.PROTOCOLS:
      raise errors.CliError(f'--protocol={protocol}: one of {", ".join(evaluation.PROTOCOLS)}.')
    defaults = evaluation.PROTOCOLS[protocol]
    num_samples = defaults['num_samples'] if num_samples is None else num_samples
    max_examples = defaults['max_examples'] if max_examples is None else max_examples
  max_examples = shared_flags.positive_or_none(max_examples)  # 0 or less: every image
  if curve:
    if checkpoint:
      raise errors.CliError('--checkpoint and --curve exclude each other: the curve evaluates '
                            'every kept checkpoint.')
    return evaluation.evaluate_curve(model_dir, split=split, num_samples=num_samples,
                                     max_examples=max_examples, batch_size=batch_size,
                                     data_dir=data_dir, time_limit=time_limit,
                                     precision=precision)
  return evaluation.evaluate(model_dir, split=split, num_samples=num_samples,
                             max_examples=max_examples, batch_size=batch_size, data_dir=data_dir,
                             checkpoint=checkpoint, time_limit=time_limit, precision=precision)


def run_sample(model_dir, num_images=64, output=None, num_reconstructions=8, num_decodings=7,
               split='test', data_dir=None, seed=0, checkpoint=None, dataset=None):
  """Writes samples_<step>.png and reconstructions_<step>.png to `output` (<model_dir>/samples).

  Uses the newest intact checkpoint, or `checkpoint` (a prefix or a step). Reconstructions are of
  a strided subset of `split` (so that every class shows up on sorted splits); with
  num_reconstructions=0 the data is not needed.
  """
  # pylint: disable=g-import-not-at-top
  import numpy as np
  from vlae_tf.data import batching
  from vlae_tf.data import datasets
  from vlae_tf.runs import opening
  from vlae_tf.runs import run_config
  from vlae_tf.data import sources
  from vlae_tf import image_grids
  # pylint: enable=g-import-not-at-top
  run = opening.open_run(model_dir, checkpoint)
  model, step = run.model, run.step
  output = output or os.path.join(model_dir, 'samples')
  logging.info('Sampling %s (step %d): %d samples and %d reconstructions (%d decodings each) of '
               '%s %s images, seed %d, into %s.', run.checkpoint_path, step, num_images,
               num_reconstructions, num_decodings, dataset or run.dataset, split, seed, output)
  images = None
  if num_reconstructions:
    with run_config.reading_dataset(dataset_flags.check_reader_dataset(model_dir, dataset)):
      dataset = datasets.load(run_config.run_dataset(), split,
                              data_dir=sources.reader_data_dir(model_dir, data_dir))
    subset = batching.strided_subset(dataset, num_reconstructions)
    images = np.stack([x.numpy() for x in subset])
  return image_grids.write_grids(model, output, step, num_images=num_images,
                              reconstruction_images=images, num_decodings=num_decodings,
                              seed=seed)


def run_export(model_dir, export_dir=None, checkpoint=None):
  """Exports the averaged weights of the run's newest intact checkpoint, or of `checkpoint` (a
  prefix or a step); returns the SavedModel directory."""
  from vlae_tf.export import saved_model as export_lib  # pylint: disable=g-import-not-at-top
  return export_lib.export(model_dir, export_dir=export_dir, checkpoint=checkpoint)


def define_train_flags():
  shared_flags.define_model_dir()
  flags.DEFINE_multi_string('gin_file', [], 'Gin files, parsed after base.gin, in order: a path, '
                            'or the name of a shipped config (mnist_vlae.gin, testing/tiny.gin).')
  flags.DEFINE_multi_string('gin_param', [], 'Gin bindings, parsed after the files, e.g. '
                            '"train.train_steps = 1000".')
  flags.DEFINE_string('data_dir', None, 'Where the datasets find their raw files.')
  shared_flags.define_time_limit('training (a checkpoint is saved)')
  dataset_flags.define_dataset_flags(train=True)


def define_eval_flags():
  shared_flags.define_model_dir(reading=True)
  flags.DEFINE_string('split', 'test', 'The split to evaluate: test, valid, train or train+valid.')
  flags.DEFINE_enum('protocol', 'quick', ['quick', 'paper'], 'quick: an estimate in about a '
                    'minute on a CPU (K=128 on 500 evenly spread images); paper: the paper\'s '
                    'protocol (K=4096 for binary data, 512 for 8-bit data, every image).')
  flags.DEFINE_integer('num_samples', None, 'Importance samples K (default: the --protocol\'s).')
  flags.DEFINE_integer('max_examples', None, 'Evaluate this many evenly spread images (default: '
                       'the --protocol\'s; 0 or less: all).')
  flags.DEFINE_integer('batch_size', 32, 'Images per batch.')
  flags.DEFINE_string('data_dir', None, 'Where the datasets find their raw files '
                      '(default: the run\'s own, recorded in <model_dir>/data_source.json).')
  flags.DEFINE_boolean('curve', False, 'Evaluate every kept checkpoint (same importance samples) '
                       'and plot the NLL against training time: eval_<split>_curve.json/.png.')
  shared_flags.define_time_limit('the evaluation (the images done are kept)')
  flags.DEFINE_enum('precision', None, list(shared_flags.PRECISIONS), 'Compute in this '
                    'precision (default: the run\'s VLAE.precision); e.g. float32 for a run '
                    'trained in mixed_bfloat16 on a CPU without bfloat16 instructions.')
  dataset_flags.define_dataset_flags()
  shared_flags.define_checkpoint()
  shared_flags.define_json()


def define_sample_flags():
  shared_flags.define_model_dir(reading=True)
  flags.DEFINE_integer('num_images', 64, 'Samples in the sample grid.')
  flags.DEFINE_integer('num_reconstructions', 8, 'Test images in the reconstruction grid '
                       '(0: none, and no data is read).')
  flags.DEFINE_integer('num_decodings', 7, 'Decodings of each test image\'s z.')
  flags.DEFINE_string('output', None, 'Output directory (default: <model_dir>/samples).')
  flags.DEFINE_string('data_dir', None, 'Where the datasets find their raw files '
                      '(default: the run\'s own, recorded in <model_dir>/data_source.json).')
  flags.DEFINE_integer('seed', 0, 'Seed of the samples.')
  dataset_flags.define_dataset_flags()
  shared_flags.define_checkpoint()
  shared_flags.define_json()


def define_export_flags():
  shared_flags.define_model_dir(reading=True)
  flags.DEFINE_string('export_dir', None, 'Base directory; the SavedModel goes to '
                      '<export_dir>/<step> (default: <model_dir>/export/<step>).')
  shared_flags.define_checkpoint()
  shared_flags.define_json()


def train_main(argv):
  shared_flags.no_positional(argv)
  user_errors.guard(lambda: run_train(FLAGS.model_dir, FLAGS.gin_file, FLAGS.gin_param,
                                      FLAGS.data_dir, FLAGS.dataset, FLAGS.image_size,
                                      FLAGS.binarize, shared_flags.time_limit()))


def eval_main(argv):
  shared_flags.no_positional(argv)
  result = user_errors.guard(lambda: run_eval(
      FLAGS.model_dir, FLAGS.split, FLAGS.num_samples, FLAGS.max_examples, FLAGS.data_dir,
      FLAGS.batch_size, FLAGS.curve, FLAGS.checkpoint, protocol=FLAGS.protocol,
      dataset=FLAGS.dataset, time_limit=shared_flags.time_limit(), precision=FLAGS.precision))
  for report in result if FLAGS.curve else [result]:
    shared_flags.print_result(eval_line(report), report)
  if not FLAGS.curve and result.get('partial'):
    raise SystemExit(130)


def eval_line(report):
  """One line of an evaluation report for people."""
  minutes = report.get('train_seconds')
  when = '' if minutes is None else f', {minutes / 60:.1f} min of training'
  partial = (f' (interrupted: {report["num_examples"]} of {report["num_examples_planned"]} '
             f'images, kept in {report["progress_file"]}; the same command continues)'
             if report.get('partial') else '')
  return (f'{report["split"]}: NLL {report["nll_nats"]:.3f} +- {report["nll_stderr_nats"]:.3f} '
          f'nats ({report["bits_per_dim"]:.4f} bits/dim), ELBO {report["elbo_nats"]:.3f} nats, '
          f'KL {report["kl_nats"]:.3f} nats, {report["num_examples"]} images, '
          f'K={report["num_samples"]}, step {report["step"]}{when}{partial}')


def sample_main(argv):
  shared_flags.no_positional(argv)
  paths = user_errors.guard(lambda: run_sample(
      FLAGS.model_dir, FLAGS.num_images, FLAGS.output, FLAGS.num_reconstructions,
      FLAGS.num_decodings, data_dir=FLAGS.data_dir, seed=FLAGS.seed, checkpoint=FLAGS.checkpoint,
      dataset=FLAGS.dataset))
  shared_flags.print_result('\n'.join(paths.values()), paths)


def export_main(argv):
  shared_flags.no_positional(argv)
  path = user_errors.guard(lambda: run_export(FLAGS.model_dir, FLAGS.export_dir,
                                              FLAGS.checkpoint))
  shared_flags.print_result(path, {'export_dir': path})
