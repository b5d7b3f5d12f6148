"""bin/inspect: what a run's latent code carries (rate/distortion, a linear probe, pixel maps).

    bin/inspect --model_dir=DIR [--split=test] [--compare_model_dir=DIR]
    bin/inspect --model_dir=A --model_dir=B --output_dir=DIR      (a comparison of runs)

The analyses are vlae_tf/experiments/inspection.py's, imported once the flags are parsed; this
prints a summary line per run (and the comparison's table) and the paths it wrote.
"""

import os

from absl import flags

from vlae_tf.cli import dataset_flags
from vlae_tf.cli import shared_flags
from vlae_tf.cli import user_errors

FLAGS = flags.FLAGS


def define_inspect_flags():
  """The flags of bin/inspect (vlae_tf/experiments/inspection.py)."""
  flags.DEFINE_multi_string('model_dir', None, 'The run directory to inspect (its averaged '
                            'weights); repeat it to compare runs (needs --output_dir).')
  shared_flags.define_pretrained()  # One more run to inspect (binaries.py).
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
  flags.DEFINE_string('data_dir', None, 'Where the datasets find their raw files '
                      '(default: the run\'s own, recorded in <model_dir>/data_source.json).')
  flags.DEFINE_integer('seed', 0, 'Seed of the posterior and prior draws.')
  shared_flags.define_checkpoint()
  dataset_flags.define_dataset_flags()


def inspect_main(argv):
  """Inspects every --model_dir; with several, compares them in --output_dir."""
  # pylint: disable=g-import-not-at-top
  from vlae_tf.experiments import inspection
  from vlae_tf.runs import run_config
  from vlae_tf.data import sources
  # pylint: enable=g-import-not-at-top
  if len(argv) > 1:
    raise SystemExit(f'error: unexpected arguments: {" ".join(argv[1:])}')
  model_dirs = FLAGS.model_dir
  if len(model_dirs) > 1 and not FLAGS.output_dir:
    raise SystemExit('error: several --model_dir need --output_dir for the comparison.')
  if len(model_dirs) > 1 and FLAGS.checkpoint and not str(FLAGS.checkpoint).isdigit():
    raise SystemExit(f'error: --checkpoint={FLAGS.checkpoint} names one run\'s checkpoint; with '
                     'several --model_dir, give a step N (--checkpoint=N: ckpt-N of each run).')

  def run(model_dir):
    dataset = user_errors.guard(
        lambda: dataset_flags.check_reader_dataset(model_dir, FLAGS.dataset))
    with run_config.reading_dataset(dataset):
      return _inspect(model_dir)

  def _inspect(model_dir):
    return user_errors.guard(lambda: inspection.inspect(
        model_dir, split=FLAGS.split, max_examples=shared_flags.positive_or_none(
            FLAGS.max_examples),
        probe_train_examples=shared_flags.positive_or_none(FLAGS.probe_train_examples),
        num_maps=FLAGS.num_maps, num_reconstructions=FLAGS.num_reconstructions,
        num_decodings=FLAGS.num_decodings, compare_model_dir=FLAGS.compare_model_dir,
        data_dir=sources.reader_data_dir(model_dir, FLAGS.data_dir), seed=FLAGS.seed,
        reuse=len(model_dirs) > 1, checkpoint=FLAGS.checkpoint))

  reports = [run(model_dir) for model_dir in model_dirs]
  for report in reports:
    _print_summary(report, inspection.INSPECT_DIR, inspection.REPORT_FILE)
  if len(reports) > 1:
    paths = inspection.compare(reports, FLAGS.output_dir)
    with open(paths['markdown']) as f:
      print(f.read(), end='')
    for path in paths.values():
      if path:
        print(path)


def _print_summary(report, inspect_dir, report_file):
  """One line of a run's rate, distortion and probe accuracy, then the path of its report."""
  rate_distortion = report['rate_distortion']
  rate, distortion = rate_distortion['rate_bits'], rate_distortion['distortion_bits']
  line = (f'{report["dataset"]} {report["split"]} step {report["step"]}: rate '
          f'{rate["mean"]:.2f} +- {rate["stderr"]:.2f} bits, distortion '
          f'{distortion["mean"]:.2f} +- {distortion["stderr"]:.2f} bits')
  probe = report['probe']
  if 'latent' in probe and 'accuracy' in probe['latent']:
    line += (f', probe accuracy on z {probe["latent"]["accuracy"]:.4f} (pixels '
             f'{probe["pixels"]["accuracy"]:.4f})')
  print(line)
  print(os.path.join(report['model_dir'], inspect_dir, report_file))
