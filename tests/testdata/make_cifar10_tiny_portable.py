"""How tests/testdata/cifar10_tiny_run/ and cifar10_tiny_portable.vlae were made: a tiny 8-bit
VLAE (gin/cifar10_resnet_vlae.gin under testing/tiny.gin) trained for 300 steps on the real CIFAR-10
images, kept as a slim run directory (config.gin and its Polyak-averaged weights:
packaging.write_slim_run), and 4 real CIFAR-10 test images compressed once with it by the 8-bit
portable codec. tests/compression/portable_8bit_test.py decompresses the file on whatever CPU runs
the tests and checks the images against the test split: an 8-bit file, too, must decode exactly on
any machine.

    PYTHONPATH=. python tests/testdata/make_cifar10_tiny_portable.py ../shared/data
"""

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from vlae_tf.compression import codec
from vlae_tf.data import datasets
from vlae_tf.pretrained import packaging

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RUN = os.path.join(HERE, 'cifar10_tiny_run')
OUTPUT = os.path.join(HERE, 'cifar10_tiny_portable.vlae')
INDICES = (0, 250, 500, 750)  # Real CIFAR-10 test images, spread over the subset.
SETTINGS = dict(first_batch=2, largest_batch=2, growth_percent=0)  # Two batches: fast to decode.


def images(data_dir):
  test = np.stack([x.numpy() for x in datasets.load('cifar10', 'test', data_dir=data_dir)])
  return test[list(INDICES)].astype(np.uint8)


def main(data_dir):
  with tempfile.TemporaryDirectory() as folder:
    run = os.path.join(folder, 'run')
    subprocess.run([sys.executable, os.path.join(REPO, 'bin', 'train'),
                    '--gin_file=cifar10_resnet_vlae.gin', '--gin_file=testing/tiny.gin',
                    '--gin_param=TRAIN_STEPS=300', '--gin_param=train.eval_examples=0',
                    f'--model_dir={run}', f'--data_dir={data_dir}'],
                   check=True)
    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(RUN)
    packaging.write_slim_run(run, RUN)
    source = os.path.join(folder, 'images.npy')
    np.save(source, images(data_dir))
    report = codec.compress(RUN, source, OUTPUT, progress=False, coder_settings=SETTINGS)
  print(report)


if __name__ == '__main__':
  main(sys.argv[1])
