"""How tests/testdata/checkpoint_keys_e06a543.json.gz was made (kept for the record; API of e06a543).

For every shipped experiment under gin/testing/tiny.gin: the names, shapes and dtypes of every
tensor a training checkpoint of commit e06a543 holds (step, model, averaged model, Adamax slots,
soft free bits' gamma), as `tf.train.list_variables` reports them. A checkpoint restores into a
model only if these keys match, so tests/behaviour/old_runs_test.py checks that today's code writes
the same keys for every experiment (the values are checked by the run directory run_e06a543/).

    python tests/testdata/make_checkpoint_keys_e06a543.py   # at commit e06a543, from the root
"""

import gzip
import json
import os
import tempfile

import gin
import tensorflow as tf
import tf_keras as keras

from vlae_tf import cli
from vlae_tf import objectives
from vlae_tf import training

HERE = os.path.dirname(os.path.abspath(__file__))
GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'gin')


def _soft_free_bits():
  try:
    return gin.query_parameter('train.soft_free_bits')
  except ValueError:
    return False


def checkpoint_keys(experiment):
  cli.parse_gin([experiment, 'testing/tiny.gin'])
  strategy = training.make_strategy(['/cpu:0'])
  with strategy.scope():
    model = training.make_model()
    averaged_model = training.make_model()
    optimizer = keras.optimizers.Adamax(learning_rate=1e-3)
    soft = objectives.SoftFreeBits(model.num_dims) if _soft_free_bits() else None
  trainer = training.Trainer(strategy, model, averaged_model, optimizer, global_batch_size=4,
                             free_bits_lambda=0.01, ema_decay=0.9, seed=0, soft_free_bits=soft)
  with strategy.scope():
    training.create_variables(model)
    training.create_variables(averaged_model)
    trainer.build()
  with tempfile.TemporaryDirectory() as directory:
    path = trainer.checkpoint().save(os.path.join(directory, 'ckpt'))
    reader = tf.train.load_checkpoint(path)
    dtypes = reader.get_variable_to_dtype_map()
    return sorted(f'{name} {shape} {dtypes[name].name}'
                  for name, shape in reader.get_variable_to_shape_map().items())


def main():
  experiments = sorted(n for n in os.listdir(GIN_DIR) if n.endswith('.gin') and n != 'base.gin')
  listing = {}
  for experiment in experiments:
    gin.clear_config()
    listing[experiment] = checkpoint_keys(experiment)
    print(experiment, len(listing[experiment]), flush=True)
  text = json.dumps(listing, indent=0, sort_keys=True) + '\n'
  with open(os.path.join(HERE, 'checkpoint_keys_e06a543.json.gz'), 'wb') as f:
    f.write(gzip.compress(text.encode(), mtime=0))


if __name__ == '__main__':
  main()
