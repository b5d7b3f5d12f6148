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
  raster-then-channel, `conv_flows.ConvAutoregressiveFlow` (conv_flows.py).

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


def shift_and_log_scale(params: tf.Tensor) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
  """Splits network outputs [..., params] into shift and log-scale (None when params == 1)."""
  if params.shape[-1] == 1:
    return params[..., 0], None
  shift, raw_log_scale = tf.unstack(params, num=2, axis=-1)
  return shift, soft_clamp_log_scale(raw_log_scale)


def num_params(shift_only: bool) -> int:
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


def standard_normal(event_shape: Sequence[int]) -> tfd.Distribution:
  """N(0, I) with the given event shape: MultivariateNormalDiag for vectors, else Independent."""
  event_shape = list(event_shape)
  if len(event_shape) == 1:
    return tfd.MultivariateNormalDiag(loc=tf.zeros(event_shape), scale_diag=tf.ones(event_shape))
  return tfd.Independent(tfd.Normal(loc=tf.zeros(event_shape), scale=tf.ones(event_shape)),
                         reinterpreted_batch_ndims=len(event_shape))


def ensure_built(layer: keras.layers.Layer):
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
    return standard_normal(shape)

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
        _ZeroOutputMADE(params=num_params(shift_only), event_shape=(latent_size,),
                        hidden_units=list(self.hidden_units), activation=activation,
                        name=f'made_{step}')
        for step in range(num_steps)]

  def build(self, input_shape=None):
    for network in self.made_networks:
      network.build((None, self.latent_size))
    super().build(input_shape)

  def bijector(self) -> tfb.Bijector:
    """A new `tfb.Chain` f (eps -> z); made per call so that no stale TFP cache outlives a step."""
    ensure_built(self)
    steps = []  # In the order they act on eps.
    for index, network in enumerate(self.made_networks):
      if index:
        steps.append(_reversed_permutation(self.latent_size))
      steps.append(tfb.MaskedAutoregressiveFlow(
          shift_and_log_scale_fn=lambda z, network=network: shift_and_log_scale(network(z)),
          name=f'maf_{index}'))
    return tfb.Chain(_restore_order(steps, self.latent_size)[::-1],
                     name='autoregressive_flow_prior')

  def distribution(self) -> tfd.TransformedDistribution:
    """Returns p(z): batch [], event [latent_size]."""
    return tfd.TransformedDistribution(standard_normal([self.latent_size]), self.bijector())

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
        _ZeroOutputMADE(params=num_params(shift_only), event_shape=(latent_size,),
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
    ensure_built(self)

    def shift_and_log_scale_fn(inputs, network):
      if context is None:
        return shift_and_log_scale(network(inputs))
      # [sample..., batch, context_size]: any sample shape of the inputs sees the same context.
      broadcast_context = tf.broadcast_to(
          context, tf.concat([tf.shape(inputs)[:-1], tf.shape(context)[-1:]], axis=0))
      return shift_and_log_scale(network(inputs, conditional_input=broadcast_context))

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
