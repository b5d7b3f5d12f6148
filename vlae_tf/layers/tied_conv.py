"""Convolutions that share only a kernel direction: weight norm with per-use scale and bias.

The first author ties the convolutions of his binary-image PixelCNN (`tieweight=True`) by sharing
only "the linear operator" (his custom_ops.py; docs/authors_code.md, sections 1.3-1.5): one raw
kernel v per name, used by several layers, each use with its own weight-norm scale and its own
bias, each data-initialised on its own input. For output channel c of one use u:

    direction_c = (v * mask)_c / ||(v * mask)_c||        norm over (kh, kw, c_in); shared by uses
    y_u = conv(x_u, direction) * scale_u + bias_u         scale_u [C_out]; bias_u [1, H, W, C_out]
                                                          (per pixel) or [C_out]

Data-dependent init (his `scale_init=0.1`): on the first batch, with m, s^2 the per-channel mean
and variance of conv(x_u, direction) over batch, rows and columns,

    scale_u = init_scale / sqrt(s^2 + 1e-9),   bias_u = -m * scale_u  (the same at every pixel)

so every use starts with outputs of mean 0 and standard deviation `init_scale` (0.1), not 1 as
`weight_norm.wn` (TFP) does.

`SharedKernel` holds v and the mask (a constant applied in the op); `TiedConv2D` is one use of
it. Tying = several `TiedConv2D` built on one `SharedKernel`; untied = one kernel per use.

The init follows the contract of `vlae_tf.layers.weight_norm`: it runs once, eagerly, on a real
batch (under `strategy.scope()`, outside `strategy.run`, so mirrored copies agree), and a graph
traced after it contains no assignment. A graph traced before it keeps a `tf.cond` on the
`initialized` flag, as TFP's `WeightNorm` does.
"""

from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from vlae_tf.layers import masked
from vlae_tf.layers import pixel_bias as pixel_bias_lib
from vlae_tf.layers import precision


@keras.saving.register_keras_serializable(package='vlae_tf.tied_conv')
class SharedKernel(keras.layers.Layer):
  """A raw kernel v [k, k, c_in, filters] and its causal mask, to be shared by `TiedConv2D` uses.

  Not called itself: `direction()` gives the masked kernel L2-normalised per output channel. It is
  built by its first use, which gives it c_in.
  """

  def __init__(self, filters: int, kernel_size: int = 3, mask_type: Optional[str] = None,
               stddev: float = 0.02, **kwargs):
    """Stores the kernel's settings.

    Args:
      filters: output channels.
      kernel_size: side of the square kernel.
      mask_type: 'A' or 'B' for a causal mask (`masked.causal_mask`), None for no mask.
      stddev: raw kernels start N(0, stddev^2) (0.02 in the author's code); only their direction
        matters.
      **kwargs: `keras.layers.Layer` arguments.
    """
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.mask_type = mask_type
    self.stddev = stddev
    self._mask_array = (np.ones([kernel_size] * 2, np.float32) if mask_type is None
                        else masked.causal_mask((kernel_size,) * 2, mask_type))

  def build(self, input_shape):
    channels = tf.TensorShape(input_shape)[-1]
    # [k, k, c_in, filters]
    self.kernel = self.add_weight(
        name='kernel', shape=[self.kernel_size, self.kernel_size, channels, self.filters],
        initializer=keras.initializers.RandomNormal(stddev=self.stddev), trainable=True)
    # [k, k, 1, 1]: the same spatial mask for every input and output channel.
    self.mask = tf.constant(self._mask_array[:, :, None, None])
    super().build(input_shape)

  @property
  def input_channels(self) -> int:
    return int(self.kernel.shape[2])

  def direction(self) -> tf.Tensor:
    """(v * mask) / ||v * mask|| per output channel: [k, k, c_in, filters]."""
    kernel = tf.convert_to_tensor(self.kernel)  # Float32 (TiedConv2D reads it uncast).
    return tf.nn.l2_normalize(kernel * tf.cast(self.mask, kernel.dtype), axis=[0, 1, 2])

  def window(self) -> masked.Window:
    """Offsets (drow, dcol) of the input pixels an output sees through this kernel."""
    return masked.mask_offsets(self._mask_array)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size, mask_type=self.mask_type,
                  stddev=self.stddev)
    return config


@keras.saving.register_keras_serializable(package='vlae_tf.tied_conv')
class TiedConv2D(keras.layers.Layer):
  """One use of a `SharedKernel`: y = conv(x, direction) * scale + bias, 'same' padding.

  Owns its scale [filters] and its bias ([1, H, W, filters] with `pixel_bias`, else [filters])
  and their data-dependent init (module docstring). Its own variables are never shared.
  """

  def __init__(self, kernel: SharedKernel, pixel_bias: bool = True, init_scale: float = 0.1,
               **kwargs):
    """Stores the use's settings.

    Args:
      kernel: the shared kernel (a `SharedKernel`, or its Keras config when deserializing).
      pixel_bias: a bias per pixel and channel (`pixel_bias.PixelBias`), else per channel.
      init_scale: the standard deviation of the outputs on the init batch.
      **kwargs: `keras.layers.Layer` arguments.
    """
    super().__init__(**kwargs)
    if isinstance(kernel, dict):
      kernel = keras.layers.deserialize(kernel)
    self.shared = kernel
    self.pixel_bias = pixel_bias
    self.init_scale = init_scale
    self.bias_layer = pixel_bias_lib.PixelBias(name='pixel_bias') if pixel_bias else None

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    if not self.shared.built:
      self.shared.build(input_shape)
    elif self.shared.input_channels != input_shape[-1]:
      raise ValueError(f'{self.name}: input has {input_shape[-1]} channels, the shared kernel '
                       f'{self.shared.name} was built for {self.shared.input_channels}.')
    filters = self.shared.filters
    self.scale = self.add_weight(name='scale', shape=[filters], initializer='ones',
                                 trainable=True)
    output_shape = input_shape[:-1].concatenate([filters])
    if self.bias_layer is not None:
      self.bias_layer.build(output_shape)
      self.bias = self.bias_layer.bias  # [1, H, W, filters]
    else:
      self.bias = self.add_weight(name='bias', shape=[filters], initializer='zeros',
                                  trainable=True)
    # False until the data-dependent init has run (restored True from a checkpoint).
    self.initialized = self.add_weight(name='initialized', shape=[], dtype=tf.bool,
                                       initializer='zeros', trainable=False)
    super().build(input_shape)

  def check_size(self, height, width, name=None):
    """Raises `errors.ImageSizeError` if per-pixel biases were built for another size."""
    if self.bias_layer is not None and self.bias_layer.built:
      self.bias_layer.check_size(height, width, name or self.name)

  def effective_kernel(self) -> tf.Tensor:
    """direction * scale: the kernel this use applies, [k, k, c_in, filters]."""
    return self.shared.direction() * self.scale

  def call(self, inputs, num_parts: int = 1):
    """conv(inputs, direction) * scale + bias, [B, H, W, filters].

    Args:
      inputs: [B, H, W, c_in].
      num_parts: > 1 returns the output split along channels into this many equal parts, as
        `tf.split(self(inputs), num_parts, -1)` would, but computed as one convolution per part
        with the kernel and bias split instead: slicing a convolution's output copies it
        forward and pads it back to full size in the gradient: on CPU the gated decoder's
        training step is 1.07-1.31x faster without them (docs/RESULTS.md, "Speed and precision").

    Returns:
      The output, or a list of `num_parts` outputs [B, H, W, filters / num_parts], in float32 also
      under 'mixed_bfloat16', where only the convolution computes in bfloat16: the bias adds,
      ELUs, gates and residual sums that follow are several times slower in bfloat16 on CPU, and
      the decoder's forward+backward is 1.3x faster with them in float32 (docs/RESULTS.md,
      "Speed and precision").
    """
    self.check_size(inputs.shape[1], inputs.shape[2])
    output_dtype = precision.variable_dtype(self.scale)  # float32

    def convolve(kernel):
      # In the compute dtype (bfloat16 under 'mixed_bfloat16'), the output back in float32: the
      # bias, scale and all the elementwise work after this layer stay float32 (precision.py).
      return tf.cast(tf.nn.conv2d(inputs, tf.cast(kernel, inputs.dtype), strides=1,
                                  padding='SAME'), output_dtype)

    with precision.uncast_variables():  # Kernel, scale and bias read as float32.
      if self._initialized_at_trace_time():
        # conv(x, direction) * scale == conv(x, direction * scale): one multiply per kernel entry
        # instead of one per output value.
        kernel = self.effective_kernel()
        if num_parts == 1:
          return convolve(kernel) + self.bias
        return [convolve(part) + bias
                for part, bias in zip(tf.split(kernel, num_parts, axis=-1),
                                      tf.split(self.bias, num_parts, axis=-1))]
      # [B, H, W, filters]: the convolution with the unit-norm kernel, whose moments set the init.
      normalized = convolve(self.shared.direction())
      if tf.executing_eagerly():
        self._data_init(normalized)
        outputs = normalized * self.scale + self.bias
      else:
        done = tf.cond(self.initialized, lambda: tf.constant(True),
                       lambda: self._data_init(normalized))
        with tf.control_dependencies([done]):
          outputs = normalized * self.scale.read_value() + self._read_bias()
    return outputs if num_parts == 1 else tf.split(outputs, num_parts, axis=-1)

  def _read_bias(self) -> tf.Tensor:
    return self.bias.read_value() if hasattr(self.bias, 'read_value') else self.bias

  def _data_init(self, normalized: tf.Tensor) -> tf.Tensor:
    """scale = init_scale / sqrt(var + 1e-9), bias = -mean * scale, per output channel."""
    # 2 x [filters], in the variables' dtype (float32) also when the layer computes in bfloat16.
    mean, variance = tf.nn.moments(normalized, axes=[0, 1, 2])  # Float32 (`call`).
    scale = self.init_scale / tf.sqrt(variance + 1e-9)
    self.scale.assign(scale)
    self.bias.assign(tf.broadcast_to(-mean * scale, self.bias.shape))
    self.initialized.assign(True)
    return tf.constant(True)

  def _initialized_at_trace_time(self) -> bool:
    """The `initialized` flag, read eagerly even while a tf.function is being traced."""
    with tf.init_scope():
      return bool(self.initialized.numpy())

  def window(self) -> masked.Window:
    return self.shared.window()

  def get_config(self):
    config = super().get_config()
    config.update(kernel=keras.layers.serialize(self.shared), pixel_bias=self.pixel_bias,
                  init_scale=self.init_scale)
    return config
