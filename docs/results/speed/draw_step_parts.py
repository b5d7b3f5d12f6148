"""Draws where a training step goes, part by part, in float32 and in mixed_bfloat16.

    pip install -e '.[plots]'                       # matplotlib
    python docs/results/speed/draw_step_parts.py    (from the checkout's root; writes docs/images/)

Reads the `bin/benchmark --what=profile --precisions=float32,mixed_bfloat16` lines of
profile_parts_by_precision_xeon_amx.jsonl (a line per precision; batch 128, one replica, a 2-core
Xeon with AMX) and draws the forward+backward milliseconds of each part of the loss, the two
precisions side by side, so that a reader sees at once which part bfloat16 speeds up.
"""

import json
import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

HERE = os.path.dirname(os.path.abspath(__file__))
LINES = os.path.join(HERE, 'profile_parts_by_precision_xeon_amx.jsonl')
IMAGE = os.path.join(HERE, '..', '..', 'images', 'step_parts_by_precision_xeon_amx.png')
PARTS = (('decoder', 'the first author\'s decoder'), ('context_network', 'context network'),
         ('encoder_posterior', 'encoder + posterior sample'), ('prior_log_prob', 'AF prior log p(z)'),
         ('likelihood', 'Bernoulli likelihood'))
COLOURS = {'float32': '#1f77b4', 'mixed_bfloat16': '#ff7f0e'}


def main():
  with open(LINES) as f:
    lines = [json.loads(line) for line in f if line.strip()]
  figure, axes = plt.subplots(figsize=(8, 4.2), dpi=110)
  height = 0.8 / len(lines)
  for index, line in enumerate(lines):
    offsets = [row + (index - (len(lines) - 1) / 2) * height for row in range(len(PARTS))]
    values = [1000 * line[f'{key}_forward_backward_seconds'] for key, _ in PARTS]
    axes.barh(offsets, values, height=height * 0.9, color=COLOURS[line['precision']],
              label=line['precision'])
  axes.set_yticks(range(len(PARTS)))
  axes.set_yticklabels([label for _, label in PARTS])
  axes.invert_yaxis()
  axes.set_xlabel('forward + backward, milliseconds per batch of 128 (median)')
  axes.set_title('Where a training step of gin/mnist_vlae.gin goes (2-core Xeon with AMX)')
  axes.legend(loc='lower right', frameon=False)
  axes.grid(axis='x', alpha=0.3)
  figure.tight_layout()
  figure.savefig(IMAGE)
  print(os.path.normpath(IMAGE))


if __name__ == '__main__':
  main()
