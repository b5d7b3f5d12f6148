"""Tests of causal masks, shifted convolutions and window arithmetic."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from vlae_tf.layers import masked


def measured_window(layer, height=9, width=11, channels=3, row=5, col=6):
  """Offsets of the input pixels whose perturbation changes the output at (row, col)."""
  inputs = tf.random.stateless_normal([2, height, width, channels], seed=[1, 2])
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    outputs = layer(inputs)
    projection = tf.random.stateless_normal([outputs.shape[-1]], seed=[3, 4])
    target = tf.reduce_sum(outputs[:, row, col, :] * projection)
  gradient = tape.gradient(target, inputs).numpy()  # [batch, height, width, channels]
  rows, cols = np.nonzero(np.abs(gradient).sum(axis=(0, 3)))
  return frozenset((int(r) - row, int(c) - col) for r, c in zip(rows, cols))


class MaskTest(tf.test.TestCase, parameterized.TestCase):

  def test_mask_a_and_b_3x3(self):
    self.assertAllEqual(masked.causal_mask((3, 3), 'A'), [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    self.assertAllEqual(masked.causal_mask((3, 3), 'B'), [[1, 1, 1], [1, 1, 0], [0, 0, 0]])

  @parameterized.parameters((3, 5, 'A'), (5, 3, 'B'), (1, 3, 'A'))
  def test_mask_keeps_exactly_raster_earlier_taps(self, kh, kw, mask_type):
    mask = masked.causal_mask((kh, kw), mask_type)
    for r in range(kh):
      for c in range(kw):
        offset = (r - kh // 2, c - kw // 2)
        earlier = offset < (0, 0) or (offset == (0, 0) and mask_type == 'B')
        self.assertEqual(bool(mask[r, c]), earlier, msg=str(offset))

  def test_bad_masks_are_rejected(self):
    with self.assertRaisesRegex(ValueError, 'odd kernel size'):
      masked.causal_mask((2, 3), 'A')
    with self.assertRaisesRegex(ValueError, "mask_type must be 'A' or 'B'"):
      masked.causal_mask((3, 3), 'C')

  def test_minkowski_sum_and_compose(self):
    self.assertEqual(masked.minkowski_sum({(0, 1)}, {(1, 0), (2, 2)}), {(1, 1), (2, 3)})
    self.assertEqual(masked.compose(), masked.IDENTITY)
    self.assertEqual(masked.compose({(-1, 0)}, {(-1, 0)}), {(-2, 0)})


class LayerWindowTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters('A', 'B')
  def test_masked_conv_measured_window_equals_computed(self, mask_type):
    layer = masked.MaskedConv2D(4, 3, mask_type=mask_type)
    self.assertEqual(measured_window(layer), layer.window())

  def test_masked_conv_5x3_kernel(self):
    layer = masked.MaskedConv2D(4, (5, 3), mask_type='A')
    self.assertEqual(measured_window(layer), layer.window())
    self.assertIn((-2, 1), layer.window())
    self.assertNotIn((0, 0), layer.window())

  @parameterized.parameters(
      dict(kernel_height=2, rows_above=2, cols_left=1, cols_right=1),   # vertical input layer
      dict(kernel_height=2, rows_above=1, cols_left=2, cols_right=1),   # later vertical layer
      dict(kernel_height=1, rows_above=1, cols_left=0, cols_right=0),
      dict(kernel_height=1, rows_above=0, cols_left=1, cols_right=-1),  # horizontal input layer
      dict(kernel_height=1, rows_above=0, cols_left=1, cols_right=0),   # later horizontal layer
  )
  def test_shifted_conv_measured_window_equals_computed(self, **settings):
    layer = masked.ShiftedConv2D(5, **settings)
    self.assertEqual(measured_window(layer), layer.window())
    self.assertEqual(layer(tf.zeros([2, 9, 11, 3])).shape, [2, 9, 11, 5])

  def test_shifted_conv_rejects_blocks_below_the_row(self):
    with self.assertRaisesRegex(ValueError, 'rows below'):
      masked.ShiftedConv2D(4, kernel_height=3, rows_above=1, cols_left=0, cols_right=0)

  def test_masked_conv_config_round_trip(self):
    layer = masked.MaskedConv2D(4, 3, mask_type='A')
    clone = masked.MaskedConv2D.from_config(layer.get_config())
    self.assertEqual(clone.mask_type, 'A')
    self.assertEqual(clone.window(), layer.window())

  def test_shifts(self):
    x = tf.reshape(tf.range(12.0), [1, 3, 4, 1])
    self.assertAllEqual(masked.down_shift(x)[0, :, :, 0], [[0, 0, 0, 0], [0, 1, 2, 3], [4, 5, 6, 7]])
    self.assertAllEqual(masked.right_shift(x)[0, 0, :, 0], [0, 0, 1, 2])


if __name__ == '__main__':
  tf.test.main()
