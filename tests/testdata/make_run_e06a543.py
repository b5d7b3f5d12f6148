"""How tests/testdata/run_e06a543/ was made (kept for the record; it imports the API of that commit).

The run directory is two steps of a tiny static-MNIST VLAE written by commit e06a543, before the
training loop was split into modules:

    bin/train --gin_file=mnist_vlae.gin --gin_file=testing/tiny.gin --gin_param=TRAIN_STEPS=2 \
        --model_dir=RUN --data_dir=DATA
    cp RUN/{checkpoint,ckpt-2.index,ckpt-2.data-00000-of-00001,config.gin,started.json} run_e06a543/

This script then recorded, with the same commit, what that checkpoint gives (expected.json):
the averaged model's ELBO terms, importance-weighted log-likelihood and fast samples on fixed
inputs, bin/eval's report of 4 test images (two replicas), and one more training step of the restored full state (weights, Adamax slots, step, Polyak
averages) on one replica. tests/behaviour/old_runs_test.py checks that the code of today restores
the directory and reproduces these numbers.

    python tests/testdata/make_run_e06a543.py   # at commit e06a543, from the checkout's root
"""

import json
import os

import numpy as np
import tensorflow as tf

_cpus = tf.config.list_physical_devices('CPU')
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import gin  # pylint: disable=g-import-not-at-top
import tf_keras as keras  # pylint: disable=g-import-not-at-top

from vlae_tf import evaluation  # pylint: disable=g-import-not-at-top
from vlae_tf import training  # pylint: disable=g-import-not-at-top

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, 'run_e06a543')


def fixed_images(count=3):
  rng = np.random.default_rng(13)
  return tf.constant((rng.uniform(size=(count, 28, 28, 1)) < 0.3).astype(np.float32))


def main():
  expected = {}
  images = fixed_images()
  training.load_run_config(RUN)
  model, step, _ = training.restore_averaged_model(RUN)
  expected['step'] = step
  outputs = model.elbo(images, tf.constant([1, 2]), training=False)
  expected['averaged_elbo'] = {k: v.numpy().tolist() for k, v in outputs.items()}
  expected['averaged_log_likelihood_k8'] = model.log_likelihood(
      images, 8, tf.constant([3, 4])).numpy().tolist()
  samples = model.sample(2, tf.constant([5, 6]), method='fast').numpy()
  expected['averaged_fast_samples'] = ''.join(str(int(v)) for v in samples.reshape(-1))

  # The full training state, built as training.train builds it on resume, one replica.
  strategy = training.make_strategy(['/cpu:0'])
  batch_size = gin.query_parameter('train.batch_size')
  batch_size = gin.query_parameter('%BATCH_SIZE') if not isinstance(batch_size, int) else batch_size
  free_bits_lambda = gin.query_parameter('train.free_bits_lambda')
  with strategy.scope():
    model = training.make_model()
    averaged_model = training.make_model()
    optimizer = keras.optimizers.Adamax(learning_rate=gin.query_parameter('train.learning_rate'))
  trainer = training.Trainer(strategy, model, averaged_model, optimizer,
                             global_batch_size=batch_size, free_bits_lambda=free_bits_lambda,
                             ema_decay=gin.query_parameter('train.ema_decay'),
                             seed=gin.query_parameter('train.seed'),
                             ema_warmup=gin.query_parameter('train.ema_warmup'))
  checkpoint = trainer.checkpoint()
  with strategy.scope():
    training.create_variables(model)
    training.create_variables(averaged_model)
    trainer.build()
    checkpoint.restore(os.path.join(RUN, 'ckpt-2')).assert_existing_objects_matched()
  expected['optimizer_iterations'] = int(optimizer.iterations.numpy())
  batch = fixed_images(batch_size)
  metrics = trainer.train_loop(iter(tf.data.Dataset.from_tensors(batch).repeat()), 1)
  expected['next_step_metrics'] = {k: metrics[k] for k in ('loss', 'elbo', 'kl', 'log_px_z',
                                                            'gradient_norm')}
  expected['after_step'] = int(trainer.step.numpy())
  outputs = averaged_model.elbo(images, tf.constant([1, 2]), training=False)
  expected['averaged_elbo_after_step'] = outputs['elbo'].numpy().tolist()
  # bin/eval's numbers (4 evenly spread test images, K = 4), without writing into the fixture.
  report = evaluation.CheckpointEvaluator(
      RUN, 'test', 4, 4, 4, os.environ['VLAE_DATA_DIR'], None, 0,
      training.make_strategy(['/cpu:0', '/cpu:1']))(os.path.join(RUN, 'ckpt-2'), progress=False)
  expected['eval_test_k4_n4'] = {k: report[k] for k in ('nll_nats', 'elbo_nats', 'kl_nats',
                                                         'num_examples')}
  with open(os.path.join(RUN, 'expected.json'), 'w') as f:
    json.dump(expected, f, indent=1, sort_keys=True)
    f.write('\n')


if __name__ == '__main__':
  main()
