"""bin/benchmark: one JSON line per measurement of a gin config's model on this machine.

    bin/benchmark --gin_file=mnist_vlae.gin [--what=train,eval,sample,profile] [--batch_size=N]
        [--precisions=float32,mixed_bfloat16,mixed_float16] [--jit_compile=false,true]

Parses gin like bin/train (base.gin, the files, the bindings, strictly); the measurements are
vlae_tf/experiments/benchmark.py's, imported once the flags are parsed.
"""

from absl import flags

from vlae_tf import gin_parsing
from vlae_tf.cli import shared_flags
from vlae_tf.cli import user_errors

FLAGS = flags.FLAGS


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
  flags.DEFINE_integer('peak_repeats', 5, 'Timed repetitions of the 2048^3 matmuls.')
  flags.DEFINE_list('precisions', None, 'Values of gin VLAE.precision to measure, each in turn '
                    '(float32, mixed_bfloat16, mixed_float16; default: the one bound in gin). '
                    'Every line has a "precision" key.')
  flags.DEFINE_list('jit_compile', None, 'Values of gin train.jit_compile to measure train and '
                    'eval with, each in turn (auto, true, false; default: the one bound in gin, '
                    'auto: XLA on GPUs only). Every line has an "xla" key.')


def benchmark_main(argv):
  """Parses gin like bin/train and prints one JSON line per measurement."""
  from vlae_tf.experiments import benchmark  # pylint: disable=g-import-not-at-top
  shared_flags.no_positional(argv)

  def run():
    gin_parsing.parse_gin(FLAGS.gin_file, FLAGS.gin_param)
    benchmark.run(what=FLAGS.what, batch_size=FLAGS.batch_size, data_dir=FLAGS.data_dir,
                  repeats=FLAGS.repeats, warmup=FLAGS.warmup, steps_per_chunk=FLAGS.steps_per_chunk,
                  eval_batch_size=FLAGS.eval_batch_size, num_samples=FLAGS.num_samples,
                  chunk_size=FLAGS.chunk_size, sample_methods=FLAGS.sample_methods,
                  naive_repeats=FLAGS.naive_repeats, peak_repeats=FLAGS.peak_repeats,
                  jit=FLAGS.jit, precisions=FLAGS.precisions,
                  jit_compiles=[benchmark.parse_jit_compile(value)
                                for value in FLAGS.jit_compile or ()],
                  emit=lambda result: print(benchmark.to_json_line(result), flush=True))

  user_errors.guard(run)
