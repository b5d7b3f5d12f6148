"""The 8-bit portable codec's decoder: gated_pixelcnn.GatedPixelCNN (the CIFAR-10 family, an
exact A x B window) in fixed point (`fixed_point`), the same integers on every machine.

Line by line as the float network (gated_pixelcnn.py):

    v = vertical stack of gated `ShiftedConv2D`s (+ 1x1 of the context), rows above only
    h = horizontal stack (pixels on the left), u = 1x1(v) + h
    repeat: u = u + 1x1(gate(1x1(elu(u)) + 1x1(context)))
    params = 1x1(elu(u))                       # at 2^-24 (`PARAMS_BITS`) for `mixture_masses`

with gate(a, b) = tanh(a) * sigmoid(b) from the tables, weight norm folded into the weights, and
every shifted convolution an explicit zero padding, 'valid' patches and one `fixed_point.Linear`.

Decoding (`decode_pixels`) reuses exactness instead of a cache: at row i the vertical stack is the
parallel pass on rows i - B .. i only (its value at row i sees exactly the B rows above, and the
rows it reads are real ones), at column j the horizontal stack the parallel pass on columns
j - L .. j of row i, and the 1x1 blocks one pixel: the same integers as `params` on the whole
image, which the tests check.
"""

import numpy as np

from vlae_tf import errors
from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import integer_networks

PARAMS_BITS = 24   # The last layer's output: mixture parameters at 2^-24.


def network_input(pixels):
  """round((x / 127.5 - 1) * 2^12) of pixels 0..255, by exact integer division."""
  pixels = np.asarray(pixels, np.int64)
  return np.floor_divide((2 * pixels - 255) * 2 * fxp.ONE + 255, 510).astype(np.float64)


class _Conv1x1:
  """A weight-normed 1x1 Conv2D (or Dense) in fixed point."""

  def __init__(self, layer, output_bits=fxp.FRACTION_BITS):
    kernel, bias, activation = integer_networks._weight_normed(layer)  # pylint: disable=protected-access
    if activation != 'linear':
      raise errors.UnsupportedModelError(f'the portable codec expects no activation in {layer}.')
    self.linear = fxp.Linear(kernel.reshape(-1, kernel.shape[-1]), bias, output_bits)

  def __call__(self, x):
    return self.linear(x)


class _ShiftedConv:
  """masked.ShiftedConv2D: pad rows_above on top, cols_left / max(cols_right, 0) at the sides,
  'valid' [kh, kw] patches, a `Linear`, then the crop to the input's size."""

  def __init__(self, layer):
    kernel, bias, _ = integer_networks._weight_normed(layer.conv)  # pylint: disable=protected-access
    self.kernel_shape = kernel.shape[:2]
    self.pads = (layer.rows_above, layer.cols_left, max(layer.cols_right, 0))
    self.linear = fxp.Linear(kernel.reshape(-1, kernel.shape[-1]), bias)

  def __call__(self, x):
    batch, height, width, _ = x.shape
    top, left, right = self.pads
    padded = np.pad(x, ((0, 0), (top, 0), (left, right), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, self.kernel_shape, axis=(1, 2))
    windows = np.moveaxis(windows[:, :height, :width], 3, 5)  # [B, H, W, kh, kw, C]
    return self.linear(windows.reshape(batch, height, width, -1))


def _gate(pre_activation):
  """decoder_ops.gate: tanh(a) * sigmoid(b) for [a, b]."""
  half = pre_activation.shape[-1] // 2
  return fxp.product(fxp.tanh(pre_activation[..., :half]), fxp.sigmoid(pre_activation[..., half:]))


class GatedPixelCNN:
  """gated_pixelcnn.GatedPixelCNN in fixed point (module docstring)."""

  def __init__(self, decoder, image_shape):
    if decoder.grayscale and image_shape[-1] != 1:
      raise errors.UnsupportedModelError(
          'the portable codec has no grayscale window for colour images (grayscale=True).')
    self.shape = tuple(image_shape)
    self.window_height = decoder.window_size[1]
    self.vertical = [_ShiftedConv(conv) for conv in decoder.vertical_convs]
    self.horizontal = [_ShiftedConv(conv) for conv in decoder.horizontal_convs]
    self.vertical_context = [_Conv1x1(conv) for conv in decoder.vertical_context]
    self.horizontal_context = [_Conv1x1(conv) for conv in decoder.horizontal_context]
    self.vertical_to_horizontal = _Conv1x1(decoder.vertical_to_horizontal)
    self.blocks = [(_Conv1x1(conv), _Conv1x1(context), _Conv1x1(output)) for conv, context, output
                   in zip(decoder.block_convs, decoder.block_context, decoder.block_outputs)]
    self.output = _Conv1x1(decoder.output_conv, PARAMS_BITS)

  @staticmethod
  def _stack(inputs, convs, context_convs, context):
    hidden = None
    for conv, context_conv in zip(convs, context_convs):
      update = _gate(conv(inputs if hidden is None else hidden) + context_conv(context))
      hidden = update if hidden is None else hidden + update
    return hidden

  def _vertical(self, inputs, context):
    return self.vertical_to_horizontal(
        self._stack(inputs, self.vertical, self.vertical_context, context))

  def _horizontal(self, inputs, context):
    return self._stack(inputs, self.horizontal, self.horizontal_context, context)

  def _head(self, hidden, context):
    for conv, context_conv, output in self.blocks:
      hidden = hidden + output(_gate(conv(fxp.elu(hidden)) + context_conv(context)))
    return self.output(fxp.elu(hidden))

  def params(self, pixels, context):
    """Every pixel's mixture parameters [B, H, W, P] at 2^-24 from known pixels 0..255."""
    inputs = network_input(pixels)
    hidden = self._vertical(inputs, context)
    if self.horizontal:
      hidden = hidden + self._horizontal(inputs, context)
    return self._head(hidden, context)

  def decode_pixels(self, context, choose_pixel):
    """Pixels in raster order, `choose_pixel(params [B, P] at 2^-24, row, col) -> [B, C]`."""
    batch = len(context)
    height, width, channels = self.shape
    inputs = np.zeros((batch, height, width, channels))
    pixels = np.zeros((batch, height, width, channels), np.int64)
    span = len(self.horizontal)
    for row in range(height):
      top = max(row - self.window_height, 0)
      vertical = self._vertical(inputs[:, top:row + 1], context[:, top:row + 1])[:, -1]  # [B, W, F]
      for col in range(width):
        hidden = vertical[:, col]
        if self.horizontal:
          left = max(col - span, 0)
          hidden = hidden + self._horizontal(inputs[:, row:row + 1, left:col + 1],
                                             context[:, row:row + 1, left:col + 1])[:, 0, -1]
        params = self._head(hidden, context[:, row, col])
        pixel = np.asarray(choose_pixel(params, row, col), np.int64).reshape(batch, channels)
        pixels[:, row, col] = pixel
        inputs[:, row, col] = network_input(pixel)
    return pixels
