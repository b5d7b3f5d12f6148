"""The share of sampled values that another seed changes, for sampling_test.py's tiny models.

Run from the repository root (reads ../shared/data):
    python docs/results/reliability/sample_seed_mismatch.py
"""
import os, sys
os.environ['TF_USE_LEGACY_KERAS']='1'; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'
import numpy as np, tensorflow as tf
from vlae_tf import gin_parsing, seeds
from vlae_tf.models import vlae as model_lib
from vlae_tf.data import datasets
for experiment, dataset in [('mnist_vlae.gin','static_mnist'),('cifar10_resnet_vlae.gin','cifar10')]:
  import gin; gin.clear_config()
  gin_parsing.parse_gin([experiment, 'testing/tiny.gin'])
  model = model_lib.make_model()
  test = datasets.load(dataset, 'test', data_dir='../shared/data')
  model.initialize(np.stack([x.numpy() for x in test.take(4)]))
  f = tf.function(model.sample, input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int32)])
  a = f(3, seeds.stateless_seed(5, 0)).numpy(); b = f(3, seeds.stateless_seed(5, 2)).numpy()
  print(experiment, 'other seed differs in', np.mean(a != b))
