"""Autoregressive flows: the AF prior p(z), the IAF posterior q(z|x), a convolutional AF.

All flows share one affine autoregressive step (Kingma et al. 2016; Papamakarios et al. 2017). For
an ordering of the D elements of z and a network whose outputs for element i see only the elements
before i in that order,

    forward  (noise -> data, sequential):  z_i   = eps_i * exp(log_scale_i(z_<i)) + shift_i(z_<i)
    inverse  (data -> noise, one pass):    eps_i = (z_i - shift_i(z_<i)) * exp(-log_scale_i(z_<i))
    log |det d eps / d z| = -sum_i log_scale_i(z_<i)

The inverse is a single parallel network pass because every output only needs z, which is known;
the forward needs D passes (a `tf.while_loop`): pass k fixes element k in the order. This is TFP's
`tfb.MaskedAutoregressiveFlow` (MAF) convention, and `tfb.Invert(MAF)` is an IAF.

* Prior (Chen et al. 2017, Section 3.2): z = f(eps), eps ~ N(0, I), f a stack of MAFs. log p(z) is
  the cheap direction (one pass per step); sampling z is sequential.
* Posterior: eps ~ N(loc, scale), z = IAF(eps; context). Sampling z together with log q(z|x) is
  one pass per step (`experimental_sample_and_log_prob`); `log_prob` of an arbitrary z needs the
  sequential inverse.
* Spatial latents [H, W, C] (CIFAR-10): the same step with a masked convolution network ordered
  raster-then-channel, `ConvAutoregressiveFlow`.

Every step starts at the identity (the network's last layer is zero: shift = log_scale = 0), as in
Glow; the order is reversed between steps so that every element can depend on every other one.

A flow without `shift_only` outputs a raw log-scale r and uses the soft clamp
`log_scale = B * tanh(r / B)` with B = LOG_SCALE_BOUND: it is the identity near 0 (so a zero last
layer is still the identity flow, with unit gradient) and bounds each step's scale to
[exp(-B), exp(B)], which keeps both the sequential forward and the inverse stable.

Cost note: TFP evaluates the step's network once for the transform and once for its log-det. Inside
a `tf.function` grappler merges the two identical evaluations (measured: the log_prob of a 4-step
640-unit prior costs the same as 4 bare MADE passes); in eager mode it is two passes per step,
never the sequential loop.
"""

from typing import Optional, Sequence, Tuple, Union

import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

tfb = tfp.bijectors
tfd = tfp.distributions

# Bound B of the soft-clamped log-scale: log_scale = B * tanh(raw / B).
LOG_SCALE_BOUND = 3.0


def soft_clamp_log_scale(raw_log_scale: tf.Tensor, bound: float = LOG_SCALE_BOUND) -> tf.Tensor:
  """Maps a raw network output to a log-scale in (-bound, bound); identity to first order at 0."""
  return bound * tf.tanh(raw_log_scale / bound)


def _shift_and_log_scale(params: tf.Tensor) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
  """Splits network outputs [..., params] into shift and log-scale (None when params == 1)."""
  if params.shape[-1] == 1:
    return params[..., 0], None
  shift, raw_log_scale = tf.unstack(params, num=2, axis=-1)
  return shift, soft_clamp_log_scale(raw_log_scale)


def _num_params(shift_only: bool) -> int:
  return 1 if shift_only else 2


class _ZeroOutputMADE(tfb.AutoregressiveNetwork):
  """A `tfb.AutoregressiveNetwork` (MADE) whose output layer starts at zero.

  TFP applies one `kernel_initializer` to every layer (hidden and output), so the zero output is
  made in `build()`: the network is built as usual, then the kernels (and biases) of the layers that
  produce its output are set to zero. Those are the last Dense layer, plus the last conditional
  Dense layer when the network is conditional (TFP's default `conditional_input_layers='all_layers'`
  adds a bias-free Dense of the conditional input at every layer). The assignment runs once, in
  `tf.init_scope()`, never in `call()`.

  Note: TFP enforces the MADE masks through the kernels' initializer and `constraint` (not in the
  op). tf_keras optimizers apply `variable.constraint` after every update; any other way of
  changing these weights must apply it too, or the flow stops being autoregressive.
  """

  def build(self, input_shape):
    super().build(input_shape)
    # Topological order: the layers that feed the network's output are the last Dense layers.
    dense_layers = [layer for layer in self._network.layers
                    if isinstance(layer, keras.layers.Dense)]
    num_output_layers = 2 if self._conditional and self._conditional_layers == 'all_layers' else 1
    output_size = self._event_size * self._params
    output_layers = dense_layers[-num_output_layers:]
    if any(layer.units != output_size for layer in output_layers):
      raise AssertionError('Unexpected layer order in tfb.AutoregressiveNetwork.')
    with tf.init_scope():
      for layer in output_layers:
        layer.kernel.assign(tf.zeros_like(layer.kernel))
        if layer.bias is not None:
          layer.bias.assign(tf.zeros_like(layer.bias))


def _reversed_permutation(size: int) -> tfb.Permute:
  return tfb.Permute(permutation=list(range(size - 1, -1, -1)), name='reverse')


def _restore_order(steps: Sequence[tfb.Bijector], size: int) -> Sequence[tfb.Bijector]:
  """Appends a last reversal when the steps reverse the order an odd number of times.

  Then the output order is the input order, and a fresh flow (every step the identity) is the
  identity map, not only a distribution-preserving permutation: a fresh IAF posterior samples
  exactly z = eps ~ N(loc, scale), element by element.
  """
  reversals = sum(isinstance(step, tfb.Permute) for step in steps)
  return (list(steps) + [_reversed_permutation(size)]) if reversals % 2 else list(steps)


def _standard_normal(event_shape: Sequence[int]) -> tfd.Distribution:
  """N(0, I) with the given event shape: MultivariateNormalDiag for vectors, else Independent."""
  event_shape = list(event_shape)
  if len(event_shape) == 1:
    return tfd.MultivariateNormalDiag(loc=tf.zeros(event_shape), scale_diag=tf.ones(event_shape))
  return tfd.Independent(tfd.Normal(loc=tf.zeros(event_shape), scale=tf.ones(event_shape)),
                         reinterpreted_batch_ndims=len(event_shape))


def _ensure_built(layer: keras.layers.Layer):
  """Builds a layer that takes no input; variables are created outside any tf.function."""
  if not layer.built:
    with tf.init_scope():
      layer.build(None)


@gin.register(module='vlae_tf.flows')
class GaussianPrior(keras.layers.Layer):
  """The standard normal prior p(z) = N(0, I) (the ablation without a flow). No variables.

  `latent_size` is an int (event [latent_size], a `tfd.MultivariateNormalDiag`) or a shape such
  as (8, 8, 16) for spatial latents (a `tfd.Independent` over all its axes).
  """

  def __init__(self, latent_size: Union[int, Sequence[int]], **kwargs):
    super().__init__(**kwargs)
    self.latent_size = latent_size

  def distribution(self) -> tfd.Distribution:
    """Returns N(0, I), batch [], event [latent_size] (or the given shape)."""
    shape = [self.latent_size] if isinstance(self.latent_size, int) else self.latent_size
    return _standard_normal(shape)

  def call(self, inputs=None):
    """Returns `self.distribution()`; `inputs` is ignored (the prior has none)."""
    del inputs
    return self.distribution()

  def get_config(self):
    config = super().get_config()
    config.update(latent_size=self.latent_size)
    return config


@gin.register(module='vlae_tf.flows')
class AutoregressiveFlowPrior(keras.layers.Layer):
  """The AF prior of the paper: z = f(eps), eps ~ N(0, I), f = [P o] MAF_K o P o ... o P o MAF_1.

  Each MAF step is a `tfb.MaskedAutoregressiveFlow` over a MADE (`tfb.AutoregressiveNetwork`,
  left-to-right order) and P a `tfb.Permute` that reverses the variable order between steps; a
  last P, when the number of steps is even, restores the original order (so a fresh f is the
  identity map).
  log p(z) costs one parallel MADE pass per step (the MAF inverse); sampling is sequential (D
  passes per step). Every step starts at the identity (zero MADE output layer, see
  `_ZeroOutputMADE`), so a fresh prior is exactly N(0, I).

  Paper (binary images): 4 steps, MADE with 3 layers of which 2 hidden of 640 ReLU units, shift
  only (mean-only): `AutoregressiveFlowPrior(64)`.
  """

  def __init__(self, latent_size: int, num_steps: int = 4,
               hidden_units: Sequence[int] = (640, 640), shift_only: bool = True,
               activation: str = 'relu', **kwargs):
    super().__init__(**kwargs)
    self.latent_size = latent_size
    self.num_steps = num_steps
    self.hidden_units = tuple(hidden_units)
    self.shift_only = shift_only
    self.activation = activation
    self.made_networks = [
        _ZeroOutputMADE(params=_num_params(shift_only), event_shape=(latent_size,),
                        hidden_units=list(self.hidden_units), activation=activation,
                        name=f'made_{step}')
        for step in range(num_steps)]

  def build(self, input_shape=None):
    for network in self.made_networks:
      network.build((None, self.latent_size))
    super().build(input_shape)

  def bijector(self) -> tfb.Bijector:
    """A new `tfb.Chain` f (eps -> z); made per call so that no stale TFP cache outlives a step."""
    _ensure_built(self)
    steps = []  # In the order they act on eps.
    for index, network in enumerate(self.made_networks):
      if index:
        steps.append(_reversed_permutation(self.latent_size))
      steps.append(tfb.MaskedAutoregressiveFlow(
          shift_and_log_scale_fn=lambda z, network=network: _shift_and_log_scale(network(z)),
          name=f'maf_{index}'))
    return tfb.Chain(_restore_order(steps, self.latent_size)[::-1],
                     name='autoregressive_flow_prior')

  def distribution(self) -> tfd.TransformedDistribution:
    """Returns p(z): batch [], event [latent_size]."""
    return tfd.TransformedDistribution(_standard_normal([self.latent_size]), self.bijector())

  def call(self, inputs=None):
    """Returns `self.distribution()`; `inputs` is ignored (the prior has none)."""
    del inputs
    return self.distribution()

  def get_config(self):
    config = super().get_config()
    config.update(latent_size=self.latent_size, num_steps=self.num_steps,
                  hidden_units=self.hidden_units, shift_only=self.shift_only,
                  activation=self.activation)
    return config


@gin.register(module='vlae_tf.flows')
class DiagonalGaussianPosterior(keras.layers.Layer):
  """q(z|x) = N(loc, diag(scale^2)) from the encoder's outputs. No variables.

  `layer(loc, scale, context=None)`: loc, scale [batch, latent] give a `tfd.MultivariateNormalDiag`
  (batch [batch], event [latent]); spatial loc, scale [batch, H, W, C] give a `tfd.Independent`
  normal with event [H, W, C]. `context` is accepted for interface parity and ignored.
  """

  def call(self, loc, scale, context=None):
    del context
    loc = tf.convert_to_tensor(loc)
    if loc.shape.rank == 2:
      return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)
    return tfd.Independent(tfd.Normal(loc=loc, scale=scale),
                           reinterpreted_batch_ndims=loc.shape.rank - 1)


@gin.register(module='vlae_tf.flows')
class IAFPosterior(keras.layers.Layer):
  """q(z|x): an inverse autoregressive flow of a diagonal Gaussian (Kingma et al. 2016).

      eps ~ N(loc, diag(scale^2)),   z = [P o] IAF_K o P o ... o P o IAF_1 (eps; context)
      IAF_k = tfb.Invert(MAF_k):     y_i = (x_i - shift_i(x_<i, h)) * exp(-log_scale_i(x_<i, h))
      log q(z|x) = log N(eps; loc, scale) + sum_k sum_i log_scale_k,i

  (x is a step's input, y its output.)

  Each MADE is conditional on the encoder's context h [batch, context_size] (added at every layer,
  TFP's default), P reverses the order between steps (and once more at the end when the number of
  steps is even, to restore the order), and every step starts at the identity: a fresh posterior
  is exactly z = eps ~ N(loc, scale). Sampling z with its log q is one parallel pass per
  step (`experimental_sample_and_log_prob`); `log_prob` of an arbitrary z runs the sequential
  inverse. The context is bound into the returned distribution (no `bijector_kwargs` needed), and
  is broadcast against any sample shape: `q.sample(S)` gives [S, batch, latent].

  With `context_size=None` the MADEs are unconditional and `context` must be None.
  """

  def __init__(self, latent_size: int, context_size: Optional[int] = None, num_steps: int = 4,
               hidden_units: Sequence[int] = (640, 640), shift_only: bool = False,
               activation: str = 'relu', **kwargs):
    super().__init__(**kwargs)
    self.latent_size = latent_size
    self.context_size = context_size
    self.num_steps = num_steps
    self.hidden_units = tuple(hidden_units)
    self.shift_only = shift_only
    self.activation = activation
    conditional = ({} if context_size is None else
                   dict(conditional=True, conditional_event_shape=(context_size,)))
    self.made_networks = [
        _ZeroOutputMADE(params=_num_params(shift_only), event_shape=(latent_size,),
                        hidden_units=list(self.hidden_units), activation=activation,
                        name=f'made_{step}', **conditional)
        for step in range(num_steps)]

  def build(self, input_shape=None):
    for network in self.made_networks:
      network.build((None, self.latent_size))
    super().build(input_shape)

  def bijector(self, context: Optional[tf.Tensor] = None) -> tfb.Bijector:
    """The `tfb.Chain` eps -> z for a context [batch, context_size] (None if unconditional)."""
    if (context is None) != (self.context_size is None):
      raise ValueError(f'context_size={self.context_size} but context is '
                       f'{"None" if context is None else "given"}.')
    _ensure_built(self)

    def shift_and_log_scale_fn(inputs, network):
      if context is None:
        return _shift_and_log_scale(network(inputs))
      # [sample..., batch, context_size]: any sample shape of the inputs sees the same context.
      broadcast_context = tf.broadcast_to(
          context, tf.concat([tf.shape(inputs)[:-1], tf.shape(context)[-1:]], axis=0))
      return _shift_and_log_scale(network(inputs, conditional_input=broadcast_context))

    steps = []  # In the order they act on eps.
    for index, network in enumerate(self.made_networks):
      if index:
        steps.append(_reversed_permutation(self.latent_size))
      steps.append(tfb.Invert(tfb.MaskedAutoregressiveFlow(
          shift_and_log_scale_fn=lambda x, network=network: shift_and_log_scale_fn(x, network),
          name=f'maf_{index}'), name=f'iaf_{index}'))
    return tfb.Chain(_restore_order(steps, self.latent_size)[::-1], name='iaf_posterior')

  def call(self, loc, scale, context=None):
    """Returns q(z|x): batch [batch], event [latent_size].

    Args:
      loc: [batch, latent_size] mean of the base Gaussian.
      scale: [batch, latent_size] positive standard deviation of the base Gaussian.
      context: [batch, context_size] encoder features h, or None when `context_size` is None.

    Returns:
      A `tfd.TransformedDistribution`.
    """
    context = None if context is None else tf.convert_to_tensor(context)
    base = tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)
    return tfd.TransformedDistribution(base, self.bijector(context))

  def get_config(self):
    config = super().get_config()
    config.update(latent_size=self.latent_size, context_size=self.context_size,
                  num_steps=self.num_steps, hidden_units=self.hidden_units,
                  shift_only=self.shift_only, activation=self.activation)
    return config


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


@gin.register(module='vlae_tf.flows')
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


@gin.register(module='vlae_tf.flows')
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
    return _shift_and_log_scale(params)

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


@gin.register(module='vlae_tf.flows')
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
        MaskedConvShiftAndLogScale(params=_num_params(shift_only), hidden_filters=hidden_filters,
                                   kernel_size=kernel_size, activation=activation,
                                   name=f'masked_conv_{step}')
        for step in range(num_steps)]

  def build(self, input_shape=None):
    for network in self.networks:
      network.build((None, *self.latent_shape))
    super().build(input_shape)

  def bijector(self) -> tfb.Bijector:
    """A new `tfb.Chain` f (eps -> z); step k (0-based) is reversed when k is odd."""
    _ensure_built(self)
    steps = [ConvAutoregressiveFlow(network, reverse=index % 2 == 1, name=f'conv_af_{index}')
             for index, network in enumerate(self.networks)]
    return tfb.Chain(steps[::-1], name='conv_autoregressive_flow_prior')

  def distribution(self) -> tfd.TransformedDistribution:
    """Returns p(z): batch [], event [H, W, C]."""
    return tfd.TransformedDistribution(_standard_normal(self.latent_shape), self.bijector())

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
