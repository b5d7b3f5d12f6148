"""Test doubles shared by several test modules."""

import pytest
import tensorflow as tf

from vlae_tf import cli


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


def one_line_error(run):
  """Runs `run` as a binary's main does (cli._guard); returns its one-line error message."""
  with pytest.raises(SystemExit) as raised:
    cli._guard(run)  # pylint: disable=protected-access
  message = str(raised.value.code)
  assert message.startswith('error: ') and '\n' not in message, message
  return message
