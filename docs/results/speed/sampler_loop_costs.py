"""Tracing, first call and steady calls of `model.decode` (the cached sampler) by columns per
iteration of its column loop (docs/RESULTS.md, "Speed and precision").

    python docs/results/speed/sampler_loop_costs.py <data_dir> <columns> <images> [gin files ...]
    e.g. python docs/results/speed/sampler_loop_costs.py ../shared/data 4 16 mnist_vlae.gin

`columns` is `autoregressive_sampling.COLUMNS_PER_ITERATION` for this process (28 unrolls a
28-wide row whole, as the samplers did before 8c8aa74). The model is data-initialized on the first
16 test images of static MNIST (trainer seed 0); z is N(0, I) from stateless seed (5, 6), the
sampler's seed (1, 2).
Prints the seconds of tracing, of the first call and the median and minimum of 10 more calls, and
whether the images equal the sequential sampler's.
"""

import sys
import time

import numpy as np
import tensorflow as tf

from vlae_tf import gin_parsing
from vlae_tf.data import datasets
from vlae_tf.models import autoregressive_sampling
from vlae_tf import distribution
from vlae_tf.training import trainer as trainer_lib


def main(data_dir, columns, num_images, *gin_files):
  autoregressive_sampling.COLUMNS_PER_ITERATION = int(columns)
  gin_parsing.parse_gin(list(gin_files) or ['mnist_vlae.gin'])
  images = next(iter(datasets.load('static_mnist', 'test', data_dir=data_dir).batch(16)))
  trainer = trainer_lib.make_trainer(distribution.make_strategy(), global_batch_size=16, seed=0)
  trainer.initialize(images)
  model = trainer.model
  z = tf.random.stateless_normal([int(num_images), *model.latent_shape], [5, 6])
  seed = tf.constant([1, 2])
  decode = tf.function(model.decode, autograph=False, input_signature=[
      tf.TensorSpec([None, *model.latent_shape], tf.float32), tf.TensorSpec([2], tf.int32)])

  start = time.time()
  decode.get_concrete_function()
  print(f'trace: {time.time() - start:.2f} s')
  start = time.time()
  fast = decode(z, seed).numpy()
  print(f'first call: {time.time() - start:.2f} s')
  seconds = []
  for _ in range(10):
    start = time.time()
    decode(z, seed).numpy()
    seconds.append(time.time() - start)
  print(f'calls: median {np.median(seconds):.3f} s, min {min(seconds):.3f} s')
  sequential = tf.function(lambda: model.decode(z, seed, method='sequential'), autograph=False)()
  print('equal to the sequential sampler:', bool(np.array_equal(fast, sequential.numpy())))


if __name__ == '__main__':
  main(*sys.argv[1:])
