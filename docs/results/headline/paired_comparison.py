"""A paired comparison of two evaluations' per-image values on the images they share
(docs/RESULTS.md, "The headline run"): bin/eval's eval_<split>_per_image.json of each (.gz too).
An image's importance noise depends on the evaluation seed and its index in the split only, so
with the same K and seed both models see the same noise on the same image.

    python docs/results/headline/paired_comparison.py BEFORE_per_image.json AFTER_per_image.json OUT.json \
        [--across=num_samples]

Both must share split, K, seed and dataset, except what --across names: the same model at two K
(the K gap) differs in K, and so in its noise, but is still paired by image.

Reports, for nll, elbo, kl and log_px_z, both means on the shared images and the mean of
AFTER - BEFORE with its standard error (the standard deviation of the differences over sqrt(n)),
and on how many images AFTER's NLL is lower.
"""

import gzip
import json
import sys

import numpy as np

from vlae_tf.data import batching

SPLIT_SIZES = {'test': 10000}  # static MNIST's test split: the subset indices depend on its size


def _load(path):
  with (gzip.open(path, 'rt') if path.endswith('.gz') else open(path)) as f:
    record = json.load(f)
  settings = record['settings']
  indices = batching.subset_indices(SPLIT_SIZES[settings['split']], settings['num_images'])
  return settings, indices, {key: np.asarray(value) for key, value in record['values'].items()}


def main(before_path, after_path, out, across=''):
  before, before_indices, before_values = _load(before_path)
  after, after_indices, after_values = _load(after_path)
  for key in ('split', 'num_samples', 'seed', 'dataset'):
    if before[key] != after[key] and key != across:
      sys.exit(f'The evaluations differ in {key}: {before[key]} and {after[key]}; a paired '
               f'comparison needs the same {key}.')
  shared, in_before, in_after = np.intersect1d(before_indices, after_indices, return_indices=True)
  report = {'before': dict(before, file=before_path), 'after': dict(after, file=after_path),
            'num_shared_images': int(len(shared))}
  for key in ('nll', 'elbo', 'kl', 'log_px_z'):
    first, second = before_values[key][in_before], after_values[key][in_after]
    differences = second - first
    report[key] = {'before': float(first.mean()), 'after': float(second.mean()),
                   'after_minus_before': float(differences.mean()),
                   'stderr': float(differences.std() / np.sqrt(len(differences)))}
  report['after_lower_nll_images'] = int(np.sum(
      after_values['nll'][in_after] < before_values['nll'][in_before]))
  with open(out, 'w') as f:
    json.dump(report, f, indent=2, sort_keys=True)
  print(json.dumps({key: report[key] for key in ('num_shared_images', 'nll', 'kl',
                                                 'after_lower_nll_images')}, indent=1))


if __name__ == '__main__':
  main(*sys.argv[1:4], *(a.split('=', 1)[1] for a in sys.argv[4:5] if a.startswith('--across=')))
