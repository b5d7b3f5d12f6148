"""Causal masks, shifts, masked convolutions and window arithmetic for local-window PixelCNNs.

Pixels are generated in raster order: row by row, left to right. A pixel at (i, j) may depend on
pixels (i', j') with i' < i, or i' == i and j' < j. Every decoder in `vlae_tf.pixelcnn` is built from
two kinds of causal convolution:

* masked convolutions (van den Oord et al. 2016, "PixelCNN"): a centred k x k kernel multiplied by a
  mask that keeps the rows above the centre and the pixels left of it; mask type 'A' also removes the
  centre (first layer: a pixel must not see itself), type 'B' keeps it (later layers: the centre
  holds features of earlier pixels only). The mask is applied in the op,
  `conv2d(x, kernel * mask)`, never by assigning to the variable.
* shifted convolutions (openai/pixel-cnn `down_shifted_conv2d`, `down_right_shifted_conv2d`): an
  unmasked kernel applied to an input padded so that the output at (i, j) only covers rows above,
  or pixels on the left.

A window is the set of relative offsets (drow, dcol) of the input pixels that a decoder output can
see. Windows compose by Minkowski sums: if layer f sees offsets F of its input and layer g sees
offsets G of f's output, then g(f(x)) sees F + G = {a + b : a in F, b in G}. A residual connection
adds the identity offset {(0, 0)}, and a sum of branches takes the union of their windows.
"""

from typing import FrozenSet, Iterable, Tuple

import gin
import numpy as np
import tensorflow as tf
import tf_keras as keras

Offset = Tuple[int, int]
Window = FrozenSet[Offset]

IDENTITY: Window = frozenset({(0, 0)})


def minkowski_sum(first: Iterable[Offset], second: Iterable[Offset]) -> Window:
  """Returns {a + b : a in first, b in second}: the window of two stacked layers."""
  return frozenset((a[0] + b[0], a[1] + b[1]) for a in first for b in second)


def compose(*windows: Iterable[Offset]) -> Window:
  """Window of layers applied one after another (the first argument is applied first)."""
  result = IDENTITY
  for window in windows:
    result = minkowski_sum(result, window)
  return result


def causal_mask(kernel_size: Tuple[int, int], mask_type: str) -> np.ndarray:
  """A [kh, kw] 0/1 mask over a centred kernel that keeps only raster-earlier taps.

  Example, 3x3:

      type 'A'     type 'B'
      1 1 1        1 1 1
      1 0 0        1 1 0
      0 0 0        0 0 0

  Args:
    kernel_size: (height, width), both odd, so that the kernel has a centre.
    mask_type: 'A' excludes the centre tap, 'B' keeps it.

  Returns:
    A float32 array of shape kernel_size.

  Raises:
    ValueError: for an even kernel size or an unknown mask type.
  """
  height, width = kernel_size
  if height % 2 == 0 or width % 2 == 0:
    raise ValueError(f'A masked convolution needs an odd kernel size, got {kernel_size}.')
  if mask_type not in ('A', 'B'):
    raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}.")
  mask = np.zeros([height, width], np.float32)
  centre_row, centre_col = height // 2, width // 2
  mask[:centre_row, :] = 1.0
  mask[centre_row, :centre_col] = 1.0
  if mask_type == 'B':
    mask[centre_row, centre_col] = 1.0
  return mask


def mask_offsets(mask: np.ndarray) -> Window:
  """The window of a centred masked kernel: offsets (drow, dcol) of its non-zero taps."""
  height, width = mask.shape
  rows, cols = np.nonzero(mask)
  return frozenset((int(r) - height // 2, int(c) - width // 2) for r, c in zip(rows, cols))


def shifted_offsets(rows: Tuple[int, int], cols: Tuple[int, int]) -> Window:
  """The window of a shifted convolution covering rows[0]..rows[1] and cols[0]..cols[1]."""
  return frozenset((r, c) for r in range(rows[0], rows[1] + 1)
                   for c in range(cols[0], cols[1] + 1))


def down_shift(x: tf.Tensor, rows: int = 1) -> tf.Tensor:
  """Moves the image down by `rows`, filling the top with zeros: out[i] = x[i - rows]."""
  # [batch, height, width, channels]
  height = tf.shape(x)[1]
  padded = tf.pad(x, [[0, 0], [rows, 0], [0, 0], [0, 0]])
  return padded[:, :height]


def right_shift(x: tf.Tensor, cols: int = 1) -> tf.Tensor:
  """Moves the image right by `cols`, filling the left with zeros: out[:, j] = x[:, j - cols]."""
  width = tf.shape(x)[2]
  padded = tf.pad(x, [[0, 0], [0, 0], [cols, 0], [0, 0]])
  return padded[:, :, :width]


@gin.register(module='vlae_tf.masked')
class MaskedConv2D(keras.layers.Conv2D):
  """A 'same'-padded 2D convolution whose kernel is multiplied by a causal mask in the op.

  It is a `keras.layers.Conv2D`, so `tfp.layers.weight_norm.WeightNorm` can wrap it: the wrapper
  replaces `kernel` by its normalised form and this layer masks whatever kernel it is given.
  Weights are tied across layers by calling one instance several times.
  """

  def __init__(self, filters: int, kernel_size=3, mask_type: str = 'B', **kwargs):
    kwargs.pop('padding', None)
    super().__init__(filters, kernel_size, padding='same', **kwargs)
    self.mask_type = mask_type
    causal_mask(self.kernel_size, mask_type)  # Validates early.

  def build(self, input_shape):
    super().build(input_shape)
    mask = causal_mask(self.kernel_size, self.mask_type)
    # [kh, kw, 1, 1]: the same spatial mask for every input and output channel.
    self.mask = tf.constant(mask[:, :, None, None])

  def convolution_op(self, inputs, kernel):
    return super().convolution_op(inputs, kernel * tf.cast(self.mask, kernel.dtype))

  def window(self) -> Window:
    return mask_offsets(causal_mask(self.kernel_size, self.mask_type))

  def get_config(self):
    config = super().get_config()
    config.pop('padding', None)
    config['mask_type'] = self.mask_type
    return config


@gin.register(module='vlae_tf.masked')
class ShiftedConv2D(keras.layers.Layer):
  """An unmasked convolution padded so that output (i, j) sees exactly a given causal block.

  The block covers rows i - rows_above .. i - rows_above + kernel_height - 1 and columns
  j - cols_left .. j + cols_right. With `rows_above >= kernel_height` the block lies strictly above
  row i (a vertical-stack input layer); with `rows_above == kernel_height - 1` it ends at row i (a
  vertical-stack layer applied to features that already see only rows above, or a horizontal layer
  of height 1). `cols_right = 0` with `rows_above = 0` and a shift keeps a horizontal stack causal.

  Attributes:
    conv: the inner 'valid' `keras.layers.Conv2D` (exposed so weight norm can wrap it).
  """

  def __init__(self, filters: int, kernel_height: int, cols_left: int, cols_right: int,
               rows_above: int, make_conv=None, **kwargs):
    super().__init__(**kwargs)
    if rows_above < kernel_height - 1:
      raise ValueError(f'rows_above={rows_above} < kernel_height - 1={kernel_height - 1}: '
                       'the block would reach rows below the current one.')
    self.filters = filters
    self.kernel_height = kernel_height
    self.cols_left = cols_left
    self.cols_right = cols_right
    self.rows_above = rows_above
    if cols_left + cols_right + 1 < 1:
      raise ValueError(f'Empty block: cols_left={cols_left}, cols_right={cols_right}.')
    conv = keras.layers.Conv2D(filters, (kernel_height, cols_left + cols_right + 1),
                               padding='valid')
    self.conv = make_conv(conv) if make_conv is not None else conv

  def call(self, inputs, training=None):
    # [batch, height, width, channels]
    height, width = tf.shape(inputs)[1], tf.shape(inputs)[2]
    # Output (i, j) covers padded rows i..i+kh-1, i.e. input rows i - rows_above.., and padded
    # columns j..j+kw-1, i.e. input columns j - cols_left..j + cols_right. A negative cols_right
    # (a block ending left of column j) needs no right padding: the output is then wider than the
    # input and is cropped, as it is taller when the block ends above row i.
    padded = tf.pad(inputs, [[0, 0], [self.rows_above, 0],
                             [self.cols_left, max(self.cols_right, 0)], [0, 0]])
    outputs = self.conv(padded)
    return outputs[:, :height, :width]

  def window(self) -> Window:
    top = -self.rows_above
    return shifted_offsets((top, top + self.kernel_height - 1), (-self.cols_left, self.cols_right))

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_height=self.kernel_height,
                  cols_left=self.cols_left, cols_right=self.cols_right,
                  rows_above=self.rows_above)
    return config
