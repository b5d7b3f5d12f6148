"""docs/results/headline.json from the headline run's own records (docs/RESULTS.md, "The headline
run"): its training pieces (pieces.jsonl, and the first piece's record, written by hand before
pieces.jsonl existed) and its evaluation report (bin/eval's eval_test.json, which lists the
evaluation's pieces).

    python docs/results/headline/make_headline_json.py \
        --model_dir=$HOME/vlae_runs/headline_mnist_vlae \
        --first_piece=$HOME/vlae_runs/headline_piece1.json \
        --eval_report=docs/results/headline/headline_mnist_vlae_35100_steps_k1024_n10000.json \
        [--k_gap_report=...k4096_n1000.json --k_gap_paired=...k_gap_1024_against_4096_n1000.json] \
        --output=docs/results/headline.json

The K gap: bin/eval's report at K = 4,096 on 1,000 evenly spread test images, and
paired_comparison.py's K = 1,024 against K = 4,096 on those images.

Pieces that ran before pieces recorded their commit take it from --commits (piece number=commit,
training pieces first, then the evaluation's).
"""

import argparse
import json
import math
import os

TRAIN_COMMAND = (
    'bin/train --gin_file=gin/mnist_vlae.gin --gin_param=TRAIN_STEPS=35100 '
    '--gin_param="VLAE.precision=\'mixed_bfloat16\'" --gin_param=train.checkpoint_every=500 '
    '--gin_param=train.max_checkpoints_to_keep=100 --gin_param=train.eval_every=0 '
    '--model_dir=$HOME/vlae_runs/headline_mnist_vlae --data_dir=/work/shared/data '
    '--time_limit=DURATION')
EVAL_COMMAND = (
    'bin/eval --model_dir=$HOME/vlae_runs/headline_mnist_vlae --num_samples=1024 '
    '--max_examples=0 --batch_size=50 --precision=float32 --time_limit=DURATION')


def _lines(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def main(args):
  commits = dict(item.split('=', 1) for item in args.commits.split(',') if item)
  first = _lines(args.first_piece)
  train = [{'steps': p['last_step'] - p['first_step'], 'first_step': p['first_step'],
            'last_step': p['last_step'], 'wall_seconds': p.get('wall_seconds'),
            'cpu': p['cpu'], 'precision': p['precision'],
            'ended': p.get('ended_by', p.get('ended')),
            'commit': p.get('commit')}
           for p in first + _lines(os.path.join(args.model_dir, 'pieces.jsonl'))]
  if train[0]['wall_seconds'] is None:  # The hand-written record has start and end times.
    from datetime import datetime  # pylint: disable=import-outside-toplevel
    times = [datetime.fromisoformat(first[0][key].replace('Z', '+00:00'))
             for key in ('started', 'ended')]
    train[0]['wall_seconds'] = (times[1] - times[0]).total_seconds()
  with open(args.eval_report) as f:
    report = json.load(f)
  evaluation = [{'images': p['images'], 'wall_seconds': p['wall_seconds'], 'cpu': p['cpu'],
                 'precision': report['precision'], 'commit': p.get('commit')}
                for p in report['pieces']]
  pieces = train + evaluation
  for number, piece in enumerate(pieces, start=1):
    piece['kind'] = 'train' if 'steps' in piece else 'eval'
    if not piece['commit']:
      piece['commit'] = commits[str(number)]
  assert sum(p['steps'] for p in train) == report['step'], 'the pieces do not add up to the step'
  assert sum(p['images'] for p in evaluation) == report['num_examples']
  headline = {
      'dataset': report['dataset'], 'split': report['split'],
      'nll': report['nll_nats'], 'nll_se': report['nll_stderr_nats'],
      'num_images': report['num_examples'], 'num_samples': report['num_samples'],
      'steps': report['step'], 'elbo': report['elbo_nats'], 'kl_bits': report['kl_bits'],
      'paper_nll': 79.03, 'paper_kl_bits': 19.2, 'paper_steps': 140400,
      'seed': 0, 'eval_seed': report['seed'], 'eval_precision': report['precision'],
      'commit': evaluation[-1]['commit'], 'command': TRAIN_COMMAND, 'eval_command': EVAL_COMMAND,
      'train_wall_seconds': round(sum(p['wall_seconds'] for p in train), 1),
      'eval_wall_seconds': round(sum(p['wall_seconds'] for p in evaluation), 1),
      'pieces': pieces,
  }
  headline['wall_seconds'] = round(headline['train_wall_seconds'] +
                                   headline['eval_wall_seconds'], 1)
  if args.k_gap_report:
    with open(args.k_gap_report) as f:
      gap = json.load(f)
    headline['k_gap'] = {'num_images': gap['num_examples'], 'num_samples': gap['num_samples'],
                         'nll': gap['nll_nats'], 'nll_se': gap['nll_stderr_nats'],
                         'wall_seconds': gap['seconds'],
                         'commit': gap['pieces'][-1]['commit'], 'cpu': gap['pieces'][-1]['cpu']}
  if args.k_gap_paired:
    with open(args.k_gap_paired) as f:
      paired = json.load(f)['nll']
    headline['k_gap'].update(nll_k1024_same_images=paired['before'],
                             k4096_minus_k1024=paired['after_minus_before'],
                             k4096_minus_k1024_se=paired['stderr'])
  assert all(math.isfinite(headline[key]) for key in ('nll', 'nll_se', 'elbo', 'kl_bits'))
  with open(args.output, 'w') as f:
    json.dump(headline, f, indent=2, sort_keys=True)
    f.write('\n')


if __name__ == '__main__':
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model_dir', required=True)
  parser.add_argument('--first_piece', required=True)
  parser.add_argument('--eval_report', required=True)
  parser.add_argument('--k_gap_report')
  parser.add_argument('--k_gap_paired')
  parser.add_argument('--commits', default='')
  parser.add_argument('--output', required=True)
  main(parser.parse_args())
