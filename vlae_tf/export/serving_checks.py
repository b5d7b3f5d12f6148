"""The input checks of the exported SavedModel's functions: one line per bad input.

Each check is an in-graph assert whose message names the function, the input, its expected dtype,
shape and values, the model, and what was given (dtype, shape, value range), never the values
themselves. TensorFlow raises it as an InvalidArgumentError whose text holds
'assertion failed: [<the line>]'.
"""

import tensorflow as tf

# The dtypes the Python functions of a loaded SavedModel accept (each a saved concrete function):
# checked in their own dtype, then cast to float32. Named signatures take float32 only.
IMAGE_DTYPES = (tf.float32, tf.float64, tf.float16, tf.uint8, tf.int32, tf.int64, tf.bool)
LATENT_DTYPES = (tf.float32, tf.float64)


def _dims_text(dims):
  """(28, 28, 1) -> '28x28x1'; () -> '' (a scalar per example)."""
  return 'x'.join(str(d) for d in dims)


def _shape_text(shape):
  """A static shape (list) or a dynamic one (int32 tensor) as '[N, HxWxC]' text, e.g. '[2, 28x28x1]'.

  The first dimension (the batch) is separated by a comma, the others are joined by 'x', as in the
  messages' expected shapes.
  """
  if not isinstance(shape, tf.Tensor):
    dims = ['?' if d is None else str(d) for d in shape]
    return f'[{dims[0]}, {"x".join(dims[1:])}]' if len(dims) > 1 else f'[{"".join(dims)}]'
  text = tf.strings.as_string(shape)
  first = tf.strings.reduce_join(text[:1])
  rest = tf.strings.reduce_join(text[1:], separator='x')
  return tf.strings.join(['[', first, tf.where(tf.size(shape) > 1, ', ', ''), rest, ']'])


def _number_text(value, dtype):
  """A value (given as float64) in as many digits as its original dtype has: 0.5, 255, 0.9999999."""
  digits = {tf.float16: 4, tf.float32: 7}.get(dtype, 15)
  return tf.strings.as_string(value, precision=digits, shortest=True)


def assert_that(condition, message, after=()):
  """An op failing with `message` (a string tensor) unless `condition`, run after the ops `after`.

  The error is TensorFlow's InvalidArgumentError; its text holds the line 'assertion failed:
  [<message>]' and never the input's values.
  """
  with tf.control_dependencies(list(after)):
    return tf.debugging.Assert(condition, [message], name='input_check')


def _static_shape_matches(shape, expected):
  """False when the static `shape` (a TensorShape) certainly is not [N, *expected], else True."""
  if shape.rank is None:
    return True
  return shape.rank == len(expected) + 1 and shape[1:].is_compatible_with(expected)


class InputChecks:
  """The checks of one model's inputs: images [N, *image_shape], z [N, *latent_shape]."""

  def __init__(self, image_shape, latent_shape, data_kind, about):
    """`about` ends every message, e.g. '(model: static_mnist, step 7)'."""
    self.image_shape, self.latent_shape = tuple(image_shape), tuple(latent_shape)
    self.data_kind, self.about = data_kind, about

  def expected(self, function, name):
    """'<function>: <name> must be ... (model: ...); got ' for the images or z."""
    if name == 'images':
      shape = _dims_text(self.image_shape)
      if self.data_kind == 'binary':
        what = f'images must be binary: float32 [N, {shape}] with every value 0 or 1'
      else:
        what = f'images must be 8-bit: float32 [N, {shape}] holding integers 0..255'
    else:
      what = f'z must be float32 [N, {_dims_text(self.latent_shape)}] with finite values'
    return f'{function}: {what} {self.about}; got '

  def valid_values(self, images):
    """bool scalar: the images (of any dtype in IMAGE_DTYPES) are pixels of the model's kind."""
    if images.dtype == tf.bool:
      return tf.constant(True)
    if self.data_kind == 'binary':
      return tf.reduce_all(tf.logical_or(tf.equal(images, tf.zeros([], images.dtype)),
                                         tf.equal(images, tf.ones([], images.dtype))))
    valid = tf.logical_and(images >= tf.zeros([], images.dtype),
                           images <= tf.cast(255, images.dtype))
    if images.dtype.is_floating:
      valid = tf.logical_and(valid, tf.equal(images, tf.round(images)))
    return tf.reduce_all(valid)

  def checked(self, function, images=None, z=None):
    """The inputs cast to float32 with their static shapes, after in-graph checks.

    Each check is an assert whose message is one line: the function, the input, its expected
    dtype, shape and values, the model, and what was given (dtype, shape, value range); the checks
    run in order, so the first bad input is the one named. Shapes known when tracing (calls of the
    unsaved module) are checked then, with a ValueError of the same text.
    """
    checks, outputs = [], []
    for name, value, dims, dtypes in (('images', images, self.image_shape, IMAGE_DTYPES),
                                      ('z', z, self.latent_shape, LATENT_DTYPES)):
      if value is None:
        continue
      value = tf.convert_to_tensor(value)
      given = value.dtype.name
      expected = self.expected(function, name)
      if value.dtype not in dtypes:
        raise TypeError(f'{expected}{given} {_shape_text(value.shape.as_list())}'
                        if value.shape.rank else f'{expected}{given}')
      if not _static_shape_matches(value.shape, dims):
        raise ValueError(f'{expected}{given} {_shape_text(value.shape.as_list())}')
      shape = tf.shape(value)
      padded = tf.concat([shape, tf.fill([len(dims) + 1], -1)], 0)[:len(dims) + 1]
      shape_ok = tf.logical_and(tf.equal(tf.size(shape), len(dims) + 1),
                                tf.reduce_all(tf.equal(padded[1:], dims)))
      cast = tf.cast(value, tf.float32)
      numbers = tf.reshape(tf.cast(value, tf.float64), [-1])
      if name == 'images':
        values_ok = self.valid_values(value)
      else:
        values_ok = tf.reduce_all(tf.math.is_finite(cast))
      values_text = tf.strings.join([
          ' with values in [', _number_text(tf.reduce_min(numbers), value.dtype), ', ',
          _number_text(tf.reduce_max(numbers), value.dtype), ']'])
      if name == 'images' and self.data_kind != 'binary' and value.dtype.is_floating:
        values_text = tf.strings.join([values_text, tf.where(
            tf.reduce_all(tf.equal(numbers, tf.round(numbers))), '', ', not all integers')])
      if name == 'images' and self.data_kind == 'binary':
        values_text = tf.strings.join([values_text, ' (binarize with x > 0.5)'])
      message = tf.strings.join([expected, given, ' ', _shape_text(shape),
                                 tf.where(values_ok, '', values_text)])
      checks.append(assert_that(tf.logical_and(shape_ok, values_ok), message, checks[-1:]))
      outputs.append((cast, dims))
    if images is not None and z is not None:
      images_shape, z_shape = tf.shape(images), tf.shape(z)
      # The first dimensions, -1 for scalars (refused above; the ops run whatever their rank).
      checks.append(assert_that(
          tf.equal(tf.concat([images_shape, [-1]], 0)[0], tf.concat([z_shape, [-1]], 0)[0]),
          tf.strings.join([
              f'{function}: images and z must hold the same number N of examples: images float32 '
              f'[N, {_dims_text(self.image_shape)}], z float32 '
              f'[N, {_dims_text(self.latent_shape)}] {self.about}; got images ',
              _shape_text(images_shape), ' and z ', _shape_text(z_shape)]),
          checks[-1:]))
    # The static shape is forgotten (placeholder_with_default) before it is set to the expected
    # one: a loaded function is retraced for the shape of each call, and EnsureShape on a known,
    # wrong shape would fail while building that graph, with TensorFlow's message instead of ours.
    with tf.control_dependencies(checks):
      return [tf.ensure_shape(tf.compat.v1.placeholder_with_default(value, None), [None, *dims])
              for value, dims in outputs]
