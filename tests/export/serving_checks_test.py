"""Tests of serving_checks.py: each bad input is one line naming the function, the input, what it
must be, the model and what was given; good inputs come out as float32 of the expected shape."""

import re

import numpy as np
import pytest
import tensorflow as tf

from vlae_tf.export import serving_checks

ABOUT = '(model: static_mnist, step 7)'


def _checks(data_kind='binary'):
  return serving_checks.InputChecks((5, 7, 1), (3,), data_kind, ABOUT)


def _run(function, **inputs):
  """The checked inputs, through a graph (as in the SavedModel), or the error's text."""
  checks = _checks()

  @tf.function(autograph=False)
  def checked(images, z):
    return checks.checked(function, images=images, z=z)

  try:
    return [t.numpy() for t in checked(**inputs)]
  except tf.errors.InvalidArgumentError as error:
    return str(error)


def test_good_inputs_are_cast_and_shaped():
  images, z = _run('pixel_log_prob', images=np.ones((2, 5, 7, 1), np.uint8),
                   z=np.zeros((2, 3), np.float64))
  assert images.dtype == np.float32 and images.shape == (2, 5, 7, 1)
  assert z.dtype == np.float32 and z.shape == (2, 3)


@pytest.mark.parametrize('images, z, line', [
    (np.full((2, 5, 7, 1), 0.5, np.float32), np.zeros((2, 3), np.float32),
     'pixel_log_prob: images must be binary: float32 [N, 5x7x1] with every value 0 or 1 ' + ABOUT +
     '; got float32 [2, 5x7x1] with values in [0.5, 0.5] (binarize with x > 0.5)'),
    (np.ones((2, 5, 7, 1), np.float32), np.zeros((1, 3), np.float32),
     'pixel_log_prob: images and z must hold the same number N of examples: images float32 '
     '[N, 5x7x1], z float32 [N, 3] ' + ABOUT + '; got images [2, 5x7x1] and z [1, 3]'),
    (np.ones((2, 5, 7, 1), np.float32), np.full((2, 3), np.nan, np.float32),
     'pixel_log_prob: z must be float32 [N, 3] with finite values ' + ABOUT),
])
def test_bad_inputs_are_one_line(images, z, line):
  text = _run('pixel_log_prob', images=tf.constant(images), z=tf.constant(z))
  # TensorFlow wraps the message (here with the Python stack; a loaded SavedModel has none).
  message = re.search(r'assertion failed: \[(.*)\]\n', text).group(1)
  assert message.startswith(line), message
  assert 'numpy' not in message and len(message) < 400


def test_a_known_wrong_shape_fails_while_tracing_with_the_same_line():
  with pytest.raises(ValueError, match=r'encode: images must be binary: .*; got float32 \[2, 4x4x1\]'):
    _checks().checked('encode', images=tf.zeros([2, 4, 4, 1]))
