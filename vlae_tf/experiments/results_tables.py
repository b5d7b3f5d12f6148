"""The results harness's tables: paired differences between runs and results.md (bin/reproduce)."""

import math

import numpy as np

from vlae_tf import progress as progress_lib


def paired_difference(first: dict, second: dict, key: str = 'nll') -> dict:
  """mean(first - second) of a per-image value and its paired standard error."""
  a = np.asarray(first['per_image'][key], np.float64)
  b = np.asarray(second['per_image'][key], np.float64)
  if a.shape != b.shape:
    raise ValueError(f'Cannot pair {a.shape[0]} images with {b.shape[0]}.')
  difference = a - b
  return {'mean': float(difference.mean()),
          'stderr': float(difference.std(ddof=1) / math.sqrt(len(difference)))
                    if len(difference) > 1 else float('nan')}


def _number(value, digits=2, missing='-'):
  return missing if value is None else f'{value:.{digits}f}'


def results_markdown(results: dict) -> str:
  """results.md: the table beside the paper's numbers, then the paired differences."""
  rows = results['rows']
  settings = results['settings']
  lines = [
      '| experiment | paper row | paper | ours: NLL +- s.e. | -ELBO | KL bits (paper) | K | '
      f'{settings["split"]} images | steps | wall time | images/s | seed | commit |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for row in rows:
    unit = row['paper_unit']
    if unit == 'bits/dim':
      ours = f'{row["bits_per_dim"]:.3f} bits/dim'
      bound = f'{row["nll_bound_bits_per_dim"]:.3f} bits/dim'
    else:
      ours = f'{row["nll_nats"]:.2f} +- {row["nll_stderr_nats"]:.2f}'
      bound = f'{row["nll_bound_nats"]:.2f}'
    paper = '-' if row['paper_nll'] is None else f'{row["paper_nll"]:g}'
    wall = ('-' if row['train_seconds'] is None else
            progress_lib.format_duration(row['train_seconds']))
    steps = str(row['steps'])
    if row.get('selected_on'):
      steps += f' (best on {row["selected_on"]} of {row["trained_steps"]})'

    lines.append(
        f'| {row["experiment"]} | {row["paper_row"] or "-"} | {paper} | {ours} | '
        f'{bound} | {row["kl_bits"]:.1f} ({_number(row["paper_kl_bits"], 1)})'
        f' | {row["num_samples"]} | {row["num_examples"]} | {steps} | {wall} | '
        f'{_number(row["images_per_second"], 0)} | {row["seed"]} | {row["commit"] or "-"} |')
  lines += ['', f'NLL in nats per image (bits/dim for CIFAR-10 rows) on {settings["split"]} '
            '(importance-weighted, K samples, '
            f'evaluation seed {settings["seed"]}, the same evenly spread images for every row); '
            'KL = E_q[log q(z|x) - log p(z)] in bits per image.']
  if results['differences']:
    lines += ['', 'Paired differences (first - second; same images, same importance samples):',
              '', '| first | second | NLL nats | -ELBO nats | KL nats |', '|---|---|---|---|---|']
    for difference in results['differences']:
      cells = [f'{difference[key]["mean"]:+.2f} +- {difference[key]["stderr"]:.2f}'
               for key in ('nll_nats', 'nll_bound_nats', 'kl_nats')]
      lines.append(f'| {difference["first"]} | {difference["second"]} | ' + ' | '.join(cells) +
                   ' |')
  return '\n'.join(lines) + '\n'
