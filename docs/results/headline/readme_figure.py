"""The README's figure (docs/images/static_mnist_samples_and_reconstructions.png): bin/sample's
samples and reconstructions of the shipped model, side by side with a 24-pixel white gap.

    bin/sample --pretrained=static_mnist --output=/tmp/samples --data_dir=../shared/data
    python docs/results/headline/readme_figure.py /tmp/samples/samples_35100.png \
        /tmp/samples/reconstructions_35100.png docs/images/static_mnist_samples_and_reconstructions.png
"""

import sys

from PIL import Image

GAP = 24


def main(samples, reconstructions, output):
  left, right = Image.open(samples).convert('L'), Image.open(reconstructions).convert('L')
  figure = Image.new('L', (left.width + GAP + right.width, max(left.height, right.height)), 255)
  figure.paste(left, (0, 0))
  figure.paste(right, (left.width + GAP, 0))
  figure.save(output, optimize=True)


if __name__ == '__main__':
  main(*sys.argv[1:4])
