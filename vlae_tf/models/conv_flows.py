"""The convolutional autoregressive flow: the AF prior of spatial latents [H, W, C] (CIFAR-10).

The affine autoregressive step of flows.py with a masked convolution network ordered
raster-then-channel: element (i, j, c) sees the positions before (i, j) in raster order and, at
(i, j), the channel groups before c (`conv_autoregressive_mask`). Like every flow of flows.py it
starts at the identity (a zero last layer) and reverses the order between steps; log p(z) is one
network pass per step, sampling is sequential over the H * W * C elements.

Gin knows these classes by this module's name (`conv_flows.ConvAutoregressiveFlowPrior`); configs
of older runs that say `flows.ConvAutoregressiveFlowPrior` are read through
`gin_parsing.current_names`.
"""

from typing import Sequence

import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

from vlae_tf.models import flows

tfb = tfp.bijectors
tfd = tfp.distributions


def conv_autoregressive_mask(kernel_size: int, in_groups: Sequence[int], out_groups: Sequence[int],
                             strict: bool) -> np.ndarray:
  """A [k, k, in, out] 0/1 kernel mask for raster-then-channel autoregressive convolutions.

  Positions are ordered in raster order and, inside a position, by channel group. Every input at
  a raster-earlier tap (the rows above the centre, and the taps left of it on the centre row)
  connects to every output. At the centre tap, input unit a connects to output unit b when

      group(a) <  group(b)   (strict: mask type 'A', the first layer)
      group(a) <= group(b)   (otherwise: mask type 'B', hidden and output layers)

  Example, 3x3, one input group 0 and one output group 1 (strict, or not: same):

      1 1 1
      1 1 0
      0 0 0

  In MADE terms, a hidden unit in group g has degree g - 1: it may see latent channels <= g - 1 at
  the centre (so group 0 sees none there, only earlier positions), and the output for latent
  channel c sees hidden degrees < c. Exactly one strict layer on every path makes the output for
  channel c at position p depend on z only at raster-earlier positions and on channels < c at p.

  Args:
    kernel_size: odd kernel height and width.
    in_groups: the channel group of each input unit.
    out_groups: the channel group of each output unit.
    strict: whether the centre tap needs group(in) < group(out) (else <=).

  Returns:
    A float32 array [kernel_size, kernel_size, len(in_groups), len(out_groups)].
  """
  if kernel_size % 2 != 1:
    raise ValueError(f'kernel_size must be odd, got {kernel_size}.')
  in_groups = np.asarray(in_groups)[:, None]  # [in, 1]
  out_groups = np.asarray(out_groups)[None, :]  # [1, out]
  centre = kernel_size // 2
  mask = np.zeros([kernel_size, kernel_size, in_groups.size, out_groups.size], np.float32)
  mask[:centre] = 1.0
  mask[centre, :centre] = 1.0
  mask[centre, centre] = (in_groups < out_groups) if strict else (in_groups <= out_groups)
  return mask


@gin.register(module='vlae_tf.conv_flows')
class MaskedConvShiftAndLogScale(keras.layers.Layer):
  """PixelCNN-style masked convolution network: z [..., H, W, C] -> params [..., H, W, C, params].

  The output for latent channel c at position p depends only on z at raster-earlier positions and
  on channels < c at p (see `conv_autoregressive_mask`): hidden unit k belongs to channel group
  k % C, output unit o (reshaped to [C, params]) to group o // params. Layers: a type-'A' masked
  convolution C -> hidden_filters[0], type-'B' masked convolutions between hidden layers and to the
  output, all 'same'-padded `kernel_size` x `kernel_size` with bias; `activation` after every layer
  but the last. The last layer starts at zero (the flow starts at the identity). Masks are
  constants multiplied into the kernels in the op: `tf.nn.conv2d(x, kernel * mask)`.

  Paper (CIFAR-10 AF prior): 2 hidden layers of 128 maps, 3x3 kernels.
  """

  def __init__(self, params: int = 2, hidden_filters: Sequence[int] = (128, 128),
               kernel_size: int = 3, activation: str = 'elu', **kwargs):
    super().__init__(**kwargs)
    self.params = params
    self.hidden_filters = tuple(hidden_filters)
    self.kernel_size = kernel_size
    self.activation = activation
    self._activation_fn = keras.activations.get(activation)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.channels = channels
    sizes = [channels, *self.hidden_filters, channels * self.params]
    groups = ([np.arange(channels)]
              + [np.arange(filters) % channels for filters in self.hidden_filters]
              + [np.arange(channels * self.params) // self.params])
    self.kernels, self.biases, self._masks = [], [], []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
      last = index == len(sizes) - 2
      self.kernels.append(self.add_weight(
          f'kernel_{index}', shape=[self.kernel_size, self.kernel_size, fan_in, fan_out],
          initializer='zeros' if last else 'glorot_uniform', trainable=True))
      self.biases.append(self.add_weight(
          f'bias_{index}', shape=[fan_out], initializer='zeros', trainable=True))
      self._masks.append(conv_autoregressive_mask(
          self.kernel_size, groups[index], groups[index + 1], strict=index == 0))
    super().build(input_shape)

  def call(self, inputs):
    inputs = tf.convert_to_tensor(inputs, self.compute_dtype)
    batch_shape = tf.shape(inputs)[:-3]
    event_shape = tf.shape(inputs)[-3:]
    outputs = tf.reshape(inputs, tf.concat([[-1], event_shape], axis=0))  # [batch, H, W, C]
    for index, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
      mask = tf.constant(self._masks[index], dtype=kernel.dtype)
      outputs = tf.nn.conv2d(outputs, kernel * mask, strides=1, padding='SAME') + bias
      if index < len(self.kernels) - 1:
        outputs = self._activation_fn(outputs)
    # [..., H, W, C, params]
    return tf.reshape(outputs, tf.concat([batch_shape, event_shape, [self.params]], axis=0))

  def get_config(self):
    config = super().get_config()
    config.update(params=self.params, hidden_filters=self.hidden_filters,
                  kernel_size=self.kernel_size, activation=self.activation)
    return config


@gin.register(module='vlae_tf.conv_flows')
class ConvAutoregressiveFlow(tfb.Bijector):
  """An affine autoregressive flow over spatial latents [..., H, W, C] (event_ndims = 3).

  MAF semantics with the order raster-then-channel: element (i, j, c) has index (i * W + j) * C + c.

      inverse(z) = (z - shift(z)) * exp(-log_scale(z))       one network pass (density)
      forward(eps): y <- eps * exp(log_scale(y)) + shift(y)  H * W * C passes (sampling)
      inverse_log_det_jacobian(z) = -sum_{H, W, C} log_scale(z)

  With `reverse=True` the order is reversed on all three axes (the network sees
  `tf.reverse(z, [H, W, C])` and its outputs are reversed back), so eps at the last element
  depends on nothing and eps at the first element on everything.

  Args:
    network: a `MaskedConvShiftAndLogScale` (params 1: shift only, 2: shift and log-scale).
    reverse: whether to use the reversed order.
  """

  def __init__(self, network: MaskedConvShiftAndLogScale, reverse: bool = False,
               validate_args: bool = False, name: str = 'conv_autoregressive_flow'):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      self._network = network
      self._reverse = reverse
      super().__init__(forward_min_event_ndims=3, is_constant_jacobian=network.params == 1,
                       validate_args=validate_args, parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict()

  @property
  def network(self) -> MaskedConvShiftAndLogScale:
    return self._network

  @property
  def reverse(self) -> bool:
    return self._reverse

  def _shift_and_log_scale(self, z):
    axes = [-3, -2, -1]
    if self._reverse:
      z = tf.reverse(z, axis=axes)
    params = self._network(z)  # [..., H, W, C, params]
    if self._reverse:
      params = tf.reverse(params, axis=[axis - 1 for axis in axes])
    return flows.shift_and_log_scale(params)

  def _forward(self, x):
    if not self._network.built:
      self._network(x)  # Creates the variables outside the loop.
    event_size = tf.reduce_prod(tf.shape(x)[-3:])

    def body(y):
      # Pass k fixes element k of the order: its shift and log-scale only see elements < k.
      shift, log_scale = self._shift_and_log_scale(y)
      y = x if log_scale is None else x * tf.exp(log_scale)
      return (y + shift,)

    (y,) = tf.while_loop(cond=lambda _: True, body=body, loop_vars=(tf.zeros_like(x),),
                         maximum_iterations=event_size)
    return y

  def _inverse(self, y):
    shift, log_scale = self._shift_and_log_scale(y)
    x = y - shift
    return x if log_scale is None else x * tf.exp(-log_scale)

  def _inverse_log_det_jacobian(self, y):
    shift, log_scale = self._shift_and_log_scale(y)
    if log_scale is None:
      return tf.zeros(tf.shape(y)[:-3], dtype=shift.dtype)
    return -tf.reduce_sum(log_scale, axis=[-3, -2, -1])


@gin.register(module='vlae_tf.conv_flows')
class ConvAutoregressiveFlowPrior(keras.layers.Layer):
  """The convolutional AF prior for spatial latents: z = f(eps), eps ~ N(0, I), event [H, W, C].

  f = F_K o ... o F_1 with F_k a `ConvAutoregressiveFlow` whose order is reversed for every other
  step (k = 2, 4, ...). log p(z) is one network pass per step; sampling is H * W * C passes per
  step. Fresh, it is exactly N(0, I).

  Paper (CIFAR-10, 8x8x16 latents): 6 steps, each a PixelCNN with 2 hidden layers of 128 maps:
  `ConvAutoregressiveFlowPrior((8, 8, 16))`.
  """

  def __init__(self, latent_shape: Sequence[int], num_steps: int = 6,
               hidden_filters: Sequence[int] = (128, 128), kernel_size: int = 3,
               activation: str = 'elu', shift_only: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.latent_shape = tuple(latent_shape)
    if len(self.latent_shape) != 3:
      raise ValueError(f'latent_shape must be (height, width, channels), got {latent_shape}.')
    self.num_steps = num_steps
    self.hidden_filters = tuple(hidden_filters)
    self.kernel_size = kernel_size
    self.activation = activation
    self.shift_only = shift_only
    self.networks = [
        MaskedConvShiftAndLogScale(params=flows.num_params(shift_only),
                                   hidden_filters=hidden_filters, kernel_size=kernel_size,
                                   activation=activation, name=f'masked_conv_{step}')
        for step in range(num_steps)]

  def build(self, input_shape=None):
    for network in self.networks:
      network.build((None, *self.latent_shape))
    super().build(input_shape)

  def bijector(self) -> tfb.Bijector:
    """A new `tfb.Chain` f (eps -> z); step k (0-based) is reversed when k is odd."""
    flows.ensure_built(self)
    steps = [ConvAutoregressiveFlow(network, reverse=index % 2 == 1, name=f'conv_af_{index}')
             for index, network in enumerate(self.networks)]
    return tfb.Chain(steps[::-1], name='conv_autoregressive_flow_prior')

  def distribution(self) -> tfd.TransformedDistribution:
    """Returns p(z): batch [], event [H, W, C]."""
    return tfd.TransformedDistribution(flows.standard_normal(self.latent_shape), self.bijector())

  def call(self, inputs=None):
    """Returns `self.distribution()`; `inputs` is ignored (the prior has none)."""
    del inputs
    return self.distribution()

  def get_config(self):
    config = super().get_config()
    config.update(latent_shape=self.latent_shape, num_steps=self.num_steps,
                  hidden_filters=self.hidden_filters, kernel_size=self.kernel_size,
                  activation=self.activation, shift_only=self.shift_only)
    return config
