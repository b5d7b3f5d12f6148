"""bin/reproduce: trains and evaluates a table of the paper's experiments, resumably.

    bin/reproduce --output_dir=DIR --table=mnist [--train_steps=N] [--gin_file=testing/tiny.gin]

The harness is vlae_tf/experiments/reproduce.py, imported once the flags are parsed; this prints
the table (results.md) and the paths of results.json, results.md and nll_vs_steps.png.
"""

import os

from absl import flags

from vlae_tf.cli import dataset_flags
from vlae_tf.cli import shared_flags
from vlae_tf.cli import user_errors
from vlae_tf.experiments import paper

FLAGS = flags.FLAGS


def define_reproduce_flags():
  """The flags of bin/reproduce (vlae_tf/experiments/reproduce.py)."""
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
                       'within the table; it binds each run\'s TRAIN_STEPS, as '
                       '--gin_param=TRAIN_STEPS=N does for bin/train). Default: each gin file\'s '
                       'own schedule.')
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
  shared_flags.define_time_limit('the trainings and evaluations (their state is kept)')
  dataset_flags.define_dataset_flags(of_run=False)


def reproduce_main(argv):
  """Runs the table of the flags and prints it."""
  # pylint: disable=g-import-not-at-top
  from vlae_tf.experiments import reproduce
  from vlae_tf.experiments import results_tables
  # pylint: enable=g-import-not-at-top
  if len(argv) > 1:
    raise SystemExit(f'error: unexpected arguments: {" ".join(argv[1:])}')
  settings = reproduce.Settings(
      train_steps=FLAGS.train_steps, split=FLAGS.split, num_samples=FLAGS.num_samples,
      max_examples=shared_flags.positive_or_none(FLAGS.max_examples), seed=FLAGS.seed,
      curve_num_samples=FLAGS.curve_num_samples,
      curve_max_examples=shared_flags.positive_or_none(FLAGS.curve_max_examples),
      batch_size=FLAGS.batch_size, data_dir=FLAGS.data_dir, gin_files=tuple(FLAGS.gin_file),
      gin_params=tuple(FLAGS.gin_param) + tuple(dataset_flags.dataset_bindings(FLAGS.dataset)),
      select_split=FLAGS.select_split)

  def run():
    experiment_files = reproduce.resolve_experiments(FLAGS.table, FLAGS.experiment)
    return reproduce.reproduce(FLAGS.output_dir, experiment_files, settings,
                               time_limit=shared_flags.time_limit())

  results = user_errors.guard(run)
  print(results_tables.results_markdown(results), end='')
  for name in (reproduce.RESULTS_JSON, reproduce.RESULTS_MD, reproduce.CURVE_PNG):
    print(os.path.join(FLAGS.output_dir, name))
