"""One checkpoint evaluated in float32 and in a low precision (mixed_bfloat16, or mixed_float16) on
the same images and importance samples: the paired difference of the bound, and the time of each.

    python docs/results/precision/eval_precision.py MODEL_DIR DATA_DIR OUT.json [K] [IMAGES] \
        [float32,mixed_float16]

bin/eval computes in the precision the run was trained in; this script overrides gin
`VLAE.precision` after the run's config.gin is parsed, restores the same averaged weights and
evaluates with the same seed (evaluation.CheckpointEvaluator with per_example=True), so the two
passes see the same images and the same noise, and differ only in the arithmetic.
"""

import json
import sys
import time

import gin
import numpy as np

from vlae_tf.evaluation import evaluator
from vlae_tf.experiments import results_tables
from vlae_tf.runs import run_config

PRECISIONS = ('float32', 'mixed_bfloat16')


BINDING = 'vlae.VLAE.precision'


def evaluate(model_dir, data_dir, precision, num_samples, max_examples, trained):
  """(report, per-image values, seconds) of the newest checkpoint computed in `precision`; appends
  the precision config.gin binds (the trained one) to `trained`."""
  parse = run_config.load_run_config

  def load_with_precision(directory):
    parse(directory)
    try:
      trained.append(gin.query_parameter(BINDING))
    except ValueError:  # Not bound: the default.
      trained.append('float32')
    with gin.unlock_config():
      gin.bind_parameter(BINDING, precision)

  run_config.load_run_config = load_with_precision
  try:
    checkpoint_evaluator = evaluator.CheckpointEvaluator(
        model_dir, 'test', num_samples, max_examples, 32, data_dir, None, 0, None,
        per_example=True)
  finally:
    run_config.load_run_config = parse
  began = time.time()
  report, values = checkpoint_evaluator(checkpoint_evaluator.checkpoint, progress=False)
  return report, values, time.time() - began


def paired(first, second, key):
  """results_tables.paired_difference (mean, paired s.e.) and the largest per-image difference."""
  difference = results_tables.paired_difference({'per_image': first}, {'per_image': second}, key)
  difference['max_abs'] = float(np.abs(np.asarray(first[key]) - np.asarray(second[key])).max())
  return difference


def main(model_dir, data_dir, output, num_samples=128, max_examples=1000, precisions=PRECISIONS):
  result = {'model_dir': model_dir, 'num_samples': num_samples, 'max_examples': max_examples,
            'seed': 0}
  values, trained = {}, []
  for precision in precisions:
    report, values[precision], seconds = evaluate(model_dir, data_dir, precision, num_samples,
                                                  max_examples, trained)
    result[precision] = {'nll_nats': report['nll_nats'], 'elbo_nats': report['elbo_nats'],
                         'kl_nats': report['kl_nats'], 'seconds': seconds,
                         'step': report['step']}
  low = precisions[-1]
  difference = f'{low}_minus_float32'
  result[difference] = {key: paired(values[low], values['float32'], key)
                        for key in ('nll', 'elbo', 'kl')}
  result['trained_precision'] = trained[0]
  result['elbo_within_0.05_nats'] = abs(result[difference]['elbo']['mean']) <= 0.05
  result['nll_within_0.05_nats'] = abs(result[difference]['nll']['mean']) <= 0.05
  with open(output, 'w') as f:
    json.dump(result, f, indent=1)
  print(json.dumps(result, indent=1))


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2], sys.argv[3], *[int(a) for a in sys.argv[4:6]],
       *[tuple(sys.argv[6].split(','))][:len(sys.argv) - 6])
