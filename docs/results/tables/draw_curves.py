"""Draws the test NLL against training steps of the paper rows in docs/RESULTS.md.

    python docs/results/tables/draw_curves.py     (from the checkout's root; writes docs/images/)

Reads the curves that bin/reproduce stored with each row (K = 32 importance samples on the same 100
evenly spread test images at every kept checkpoint, evaluation seed 0) and draws them with the
package's own plotting code (vlae_tf/evaluation/plots.py).
"""

import json
import os

from vlae_tf.evaluation import plots

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, '..', '..', 'images')

FIGURES = {
    'table1_authors_decoder_nll_vs_steps.png': (
        'Table 1, static MNIST, the first author\'s decoder: test NLL (K=32, 100 images; bars: standard errors)', {
            'VLAE (AF prior)': 'table1_authors_decoder_static_mnist_vlae_6000_steps.json',
            'IAF VAE': 'table1_authors_decoder_static_mnist_iaf_vae_6000_steps.json'}),
    'table3_authors_decoder_nll_vs_steps.png': (
        'Table 3, dynamic MNIST, the first author\'s decoder: test NLL (K=32, 100 images; bars: standard errors)', {
            'AF prior (VLAE)': 'table3_authors_decoder_dynamic_mnist_vlae_6000_steps.json',
            'Gaussian prior': 'table3_authors_decoder_dynamic_mnist_gaussian_prior_6000_steps.json',
            'no z (PixelCNN)': 'table3_authors_decoder_dynamic_mnist_pixelcnn_6000_steps.json'}),
}


def curve(file_name):
  with open(os.path.join(HERE, file_name)) as f:
    [row] = json.load(f)['rows']
  return [(point['step'], point['nll_nats'], point['nll_stderr_nats']) for point in row['curve']]


def main():
  for image, (title, rows) in FIGURES.items():
    series = {label: curve(file_name) for label, file_name in rows.items()}
    path = os.path.join(IMAGES, image)
    plots.write_lines_plot(path, series, x_label='training step', y_label='test NLL (nats)',
                           title=title)
    print(os.path.normpath(path))


if __name__ == '__main__':
  main()
