"""Packages the headline run as the shipped `static_mnist` pretrained model (docs/RESULTS.md, "The
headline run"; README, "A pretrained model"): the Polyak-averaged weights of its last checkpoint,
computing in float32 (the run trained in mixed_bfloat16, fast only on CPUs with AMX), with a
provenance record that carries the run's command, pieces and measured NLL from headline.json.

    PYTHONPATH=. python docs/results/headline/package_static_mnist.py \
        $HOME/vlae_runs/headline_mnist_vlae ../shared/data

Then regenerate the committed portable file, which was written with the shipped model:

    PYTHONPATH=. python tests/testdata/make_static_mnist_portable.py ../shared/data
"""

import json
import os
import sys

from vlae_tf.pretrained import packaging

HEADLINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, 'headline.json')


def main(model_dir, data_dir):
  with open(HEADLINE) as f:
    headline = json.load(f)
  train_pieces = [piece for piece in headline['pieces'] if piece['kind'] == 'train']
  record = packaging.package(
      model_dir, 'static_mnist', data_dir=data_dir, precision='float32',
      command=headline['command'],
      commit=train_pieces[-1]['commit'],
      gin_file='gin/mnist_vlae.gin',
      protocol='the paper\'s: trained on the 60,000 training and validation images of static '
               'MNIST, batch 128',
      seed=headline['seed'],
      train_seconds=headline['train_wall_seconds'],
      pieces=train_pieces,
      machine=train_pieces[-1]['cpu'] + ', TensorFlow 2.21.0, TCMalloc',
      evaluation={'split': headline['split'], 'num_examples': headline['num_images'],
                  'num_samples': headline['num_samples'], 'nll_nats': headline['nll'],
                  'nll_stderr_nats': headline['nll_se'], 'elbo_nats': headline['elbo'],
                  'kl_bits': headline['kl_bits'], 'precision': headline['eval_precision'],
                  'seed': headline['eval_seed'], 'commit': headline['commit']},
      evaluation_how=headline['eval_command'],
      paper={'nll_nats': headline['paper_nll'], 'kl_bits': headline['paper_kl_bits'],
             'steps': headline['paper_steps']},
      note=f'The headline run of docs/RESULTS.md: gin/mnist_vlae.gin as it ships, '
           f'{headline["steps"]:,} steps (a quarter of the paper\'s {headline["paper_steps"]:,}), '
           f'in {len(train_pieces)} pieces; {headline["nll"]:.2f} +- {headline["nll_se"]:.2f} '
           f'nats on all {headline["num_images"]:,} test images at K={headline["num_samples"]:,} '
           f'(the paper: {headline["paper_nll"]}).')
  print(json.dumps(record, indent=2, sort_keys=True))


if __name__ == '__main__':
  main(*sys.argv[1:3])
