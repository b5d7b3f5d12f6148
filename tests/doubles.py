"""Test doubles shared by several test modules."""

import tensorflow as tf


class ConstantWeights:
  """A model stand-in whose importance weights all equal exp(-5): the K-sample estimate is -5 for
  every K exactly when the chunk arithmetic counts K samples."""

  image_shape = (2, 3, 1)
  latent_shape = (2,)
  num_dims = 6
  data_kind = 'binary'
  variables = ()

  def log_likelihood(self, images, num_samples, seed, chunk_size=64):
    del num_samples, seed, chunk_size
    return tf.fill([tf.shape(images)[0]], -5.0)
