"""Where the first call of a traced function goes, for the tiny VLAE (docs/RESULTS.md, "Speed
and precision").

    python docs/results/speed/tracing_costs.py step  <data_dir>
    python docs/results/speed/tracing_costs.py grids <model_dir>   # a run of gin/testing/tiny.gin
    python docs/results/speed/tracing_costs.py decode <model_dir>

`step`: the trainer's train loop as bin/train builds it (one replica, batch 4): seconds to trace it,
its graph's node count (top level, inside its functions, number of functions), the first call
(Grappler, kernel instantiation and the step) and the second. `grids`: the first and second sample
grid and reconstruction grid of `image_grids.GridRenderer`. `decode`: tracing `model.decode` with
autograph on and off, and the first call of each.
"""

import sys
import time

import numpy as np
import tensorflow as tf

from vlae_tf import gin_parsing
from vlae_tf.data import datasets
from vlae_tf import image_grids
from vlae_tf import distribution
from vlae_tf.runs import opening
from vlae_tf.training import trainer as trainer_lib


def timed(label, function):
  start = time.time()
  result = function()
  print(f'{label}: {time.time() - start:.2f} s', flush=True)
  return result


def step(data_dir):
  gin_parsing.parse_gin(['mnist_vlae.gin', 'testing/tiny.gin'])
  strategy = distribution.make_strategy()
  images = next(iter(datasets.load('static_mnist', 'test', data_dir=data_dir).batch(4)))
  trainer = trainer_lib.make_trainer(strategy, global_batch_size=4, seed=0)
  trainer.initialize(images)
  iterator = iter(tf.data.Dataset.from_tensors(images).repeat())
  train_loop = trainer._train_loop  # pylint: disable=protected-access
  concrete = timed('trace', lambda: train_loop.get_concrete_function(
      iterator, tf.constant(1), tf.constant(10, tf.int64)))
  graph = concrete.graph.as_graph_def()
  print('nodes (top, in functions, functions):', len(graph.node),
        sum(len(f.node_def) for f in graph.library.function), len(graph.library.function))
  timed('first call', lambda: trainer.train_loop(iterator, 1))
  timed('second call', lambda: trainer.train_loop(iterator, 1))


def restored(model_dir):
  return opening.open_run(model_dir).model


def grids(model_dir):
  renderer = image_grids.GridRenderer(restored(model_dir))
  images = np.zeros([2, *renderer.model.image_shape], np.float32)
  for call in ('first', 'second'):
    timed(f'sample grid, {call}', lambda: renderer.sample_grid(2, 0))
  for call in ('first', 'second'):
    timed(f'reconstruction grid, {call}', lambda: renderer.reconstruction_grid(images, 7, 0))


def decode(model_dir):
  model = restored(model_dir)
  signature = [tf.TensorSpec([None, *model.latent_shape], tf.float32), tf.TensorSpec([2], tf.int32)]
  z = tf.zeros([2, *model.latent_shape])
  for autograph in (True, False):
    function = tf.function(model.decode, input_signature=signature, autograph=autograph)
    timed(f'trace, autograph={autograph}', function.get_concrete_function)
    timed(f'first call, autograph={autograph}', lambda: function(z, tf.constant([1, 2])))


if __name__ == '__main__':
  {'step': step, 'grids': grids, 'decode': decode}[sys.argv[1]](sys.argv[2])
