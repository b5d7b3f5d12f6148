"""Weight normalization with data-dependent initialization (Salimans and Kingma 2016).

Kernel parametrization, per output channel c:  w_c = g_c * v_c / ||v_c||. Every convolution and
dense layer of the encoders, context networks and decoders goes through `wn(layer)`, as in the
paper ("weight normalization with data-dependent init everywhere"); `initialize(network, batch)`
runs the data init once, eagerly, on a real batch.

Data-dependent initialization contract
--------------------------------------
Data-dependent init runs once, eagerly, on a real batch, before step 0; after that call() never
assigns. Concretely:

    with strategy.scope():
      encoder = BinaryResNetEncoder()
      weight_norm.initialize(encoder, first_batch)   # eager, cross-replica context, global batch
    ... then train: strategy.run(step, ...) inside tf.function.

How TFP's `WeightNorm` (tfp.layers.weight_norm, TFP 0.25) does it, and why the contract matters:

* `build()` creates `v` (the wrapped layer's kernel), `g` (ones, one per output channel) and a
  non-trainable bool variable `initialized` (in `weights`, hence checkpointed).
* `call()` is a `tf.function` whose body starts with `if not self.initialized:` on that variable;
  autograph turns it into a `tf.cond` (an `If` op). The true branch normalizes v, runs the layer
  without activation and with zero bias, takes per-channel moments (m, s^2) of the output over all
  axes but the last, and assigns g <- g / s, bias <- -m / s, initialized <- True. Each layer is
  initialized on its actual input during the first forward pass, so deeper layers see the already
  normalized outputs of earlier ones. The assignments live in every traced graph, behind the `If`;
  at run time they execute only while `initialized` is False. After `initialize()` it is True
  everywhere, so no later call (eager, `tf.function` or `strategy.run`) assigns anything.
* MirroredStrategy creates these variables as MirroredVariables with aggregation NONE. An assign
  in cross-replica context (an eager call under `strategy.scope()`) writes the same value to every
  replica's copy: all copies agree, the statistics are those of the whole batch. An assign in
  replica context (the first call inside `strategy.run`) with aggregation NONE writes only the
  local copy: each replica initializes from its own shard and the copies silently diverge
  (observed: g differs between the two replicas). `initialize()` refuses to run in replica context.
* Checkpoint restore into a model that is not built yet (deferred restoration) would restore
  `initialized = True` on variable creation, but TFP's `build()` then runs
  `self.initialized.assign(False)`, so the first call re-runs the data init and overwrites the
  restored g and bias. `WeightNorm` below is TFP's class with that one line removed (the variable's
  default initializer is already zeros = False); restore-then-build and build-then-restore both
  keep the checkpoint values.
* SavedModel export: TFP's `call()` stores the normalized kernel, a tensor of the graph being
  traced, in the Python attribute `wrapper.layer.kernel` and leaves it there. `tf.saved_model.save`
  traces every Keras layer's call on its own, including the wrapped layer; for a wrapped
  Conv2DTranspose (our `Upsample`) that trace captures the stale tensor and saving fails ("Unable
  to save function ...conv2d_transpose... because it captures graph tensor ... from a parent
  function"; Dense and Conv2D happened to save). `WeightNorm` below sets `layer.kernel` outside its
  call to a stand-in that converts to g * v / ||v|| in whichever graph reads it.
* Speed: TFP's `call()` is a nested `tf.function` around a `tf.cond` on `initialized`; with ~30
  wrapped layers per model, those `If` ops and function calls kept Grappler from fusing conv + bias
  + activation and cost a large part of each training step. `WeightNorm.call` below reads the flag
  eagerly when it is traced (`tf.init_scope`) and, once the data init has run, traces just
  g * v / ||v|| and the layer. Graphs traced before the data init keep TFP's cond.
* Each wrapper's `call` is its own `tf.function`, so the first eager call of a network traces one
  small function per weight-normed layer (about 0.25 s each here) and TensorFlow logs "triggered
  tf.function retracing" warnings; they are expected and harmless.
"""

from typing import Any, Callable, List
import warnings

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

from vlae_tf.layers import precision


class _NormalizedKernel:
  """Stands in for a weight-normed layer's `kernel`: converts to g * v / ||v|| where it is read."""

  def __init__(self, wrapper: 'WeightNorm'):
    self._wrapper = wrapper

  @property
  def shape(self) -> tf.TensorShape:
    return self._wrapper.v.shape

  @property
  def dtype(self) -> tf.DType:
    """The wrapped layer's compute dtype: what the kernel converts to by default."""
    return tf.as_dtype(self._wrapper.layer.compute_dtype)

  def __tf_tensor__(self, dtype=None, name=None):
    del name  # Unused.
    wrapper = self._wrapper
    with precision.uncast_variables():
      kernel = (tf.nn.l2_normalize(wrapper.v, axis=wrapper.kernel_norm_axes) *
                tf.expand_dims(wrapper.g, -wrapper.filter_axis - 3))
    return tf.cast(kernel, self.dtype if dtype is None else dtype)


class WeightNorm(tfp.layers.weight_norm.WeightNorm):
  """TFP's `WeightNorm`, safe to restore before build and to export as a SavedModel.

  Kernel parametrization, per output channel c:  w_c = g_c * v_c / ||v_c||.

  Same variables, names, call() and data init as `tfp.layers.weight_norm.WeightNorm`, with two
  fixes:
  * `build()` does not run `initialized.assign(False)`: the flag's default initializer is already
    False, and the explicit assign overwrote a value restored on creation from a checkpoint
    (deferred restoration), which made a restored model re-run its data init.
  * Outside `call()`, the wrapped layer's `kernel` is a `_NormalizedKernel`, not the stale graph
    tensor TFP's call leaves there, so the wrapped layer can be traced on its own (SavedModel).
  """

  def build(self, input_shape=None):
    input_shape = tf.TensorShape(input_shape).as_list()
    input_shape[0] = None
    self.input_spec = keras.layers.InputSpec(shape=input_shape)
    if not self.layer.built:
      self.layer.build(input_shape)
      if not hasattr(self.layer, 'kernel'):
        raise ValueError('`WeightNorm` must wrap a layer that contains a `kernel` for weights')
      kernel_norm_axes = list(range(self.layer.kernel.shape.rank))
      kernel_norm_axes.pop(self.filter_axis)
      self.kernel_norm_axes = tf.constant(kernel_norm_axes)
      self.v = self.layer.kernel
      self.layer.kernel = _NormalizedKernel(self)
      self.g = self.add_weight(
          name='g', shape=(int(self.v.shape[self.filter_axis]),), initializer='ones',
          dtype=precision.variable_dtype(self.v), trainable=True)
      # Zeros initializer: False, unless restored from a checkpoint on creation.
      self.initialized = self.add_weight(
          name='initialized', dtype=tf.bool, initializer='zeros', trainable=False)
    keras.layers.Wrapper.build(self)  # pylint: disable=bad-super-call

  def call(self, inputs):
    if self._initialized_at_trace_time():
      # Plain g * v / ||v|| then the layer: no `If` op and no nested function in the graph, so
      # Grappler can fuse the convolution with its bias and activation.
      self._compute_weights()  # Sets layer.kernel to a tensor of the current graph.
      outputs = self.layer(inputs)
    elif tf.executing_eagerly():
      # The data init, eagerly, as TFP's call does it: that call is a tf.function, traced anew
      # for every layer (which TensorFlow reported as "excessive retracing" of WeightNorm.call).
      # Its body cannot simply run eagerly: `if not self.initialized` is always False for a
      # MirroredVariable outside a graph (the object is truthy), so the init would be skipped.
      if self.data_init:
        self._data_dep_init(inputs)
      else:
        self._init_norm()
      self.initialized.assign(True)
      self._compute_weights()
      outputs = self.layer(inputs)
    else:
      outputs = super().call(inputs)  # TFP's tf.function; sets layer.kernel to a graph tensor.
    self.layer.kernel = _NormalizedKernel(self)
    return outputs

  def _compute_weights(self):
    """Sets layer.kernel = g * v / ||v||, computed from the stored (float32) variables.

    Under a mixed policy only the result is cast to the wrapped layer's compute dtype; in float32
    these are exactly TFP's ops (the casts are no-ops).
    """
    with precision.uncast_variables():
      kernel = tf.nn.l2_normalize(self.v, axis=self.kernel_norm_axes) * tf.expand_dims(
          self.g, -self.filter_axis - 3)
    self.layer.kernel = tf.cast(kernel, self.layer.compute_dtype)

  def _data_dep_init(self, inputs):
    """TFP's data-dependent init, with its statistics and assignments in the variables' dtype.

    The layer runs in its compute dtype (bfloat16 under 'mixed_bfloat16'); the moments of its
    output are taken in float32 and g and the bias are updated from their float32 values. In
    float32 these are TFP's ops in TFP's order.
    """
    self._compute_weights()
    activation = self.layer.activation
    self.layer.activation = None
    use_bias = self.layer.bias is not None
    if use_bias:
      bias = self.layer.bias
      self.layer.bias = tf.zeros_like(bias)
    x_init = tf.cast(self.layer(inputs), precision.variable_dtype(self.g))
    norm_axes_out = list(range(x_init.shape.rank - 1))
    m_init, v_init = tf.nn.moments(x_init, norm_axes_out)
    scale_init = 1. / tf.sqrt(v_init + 1e-10)
    with precision.uncast_variables():
      self.g.assign(self.g * scale_init)
      if use_bias:
        self.layer.bias = bias
        self.layer.bias.assign(-m_init * scale_init)
    self.layer.activation = activation

  def _initialized_at_trace_time(self) -> bool:
    """Whether the data init has run, read eagerly even while a tf.function is being traced.

    The flag only ever goes from False to True, so a graph traced after it is True never needs
    TFP's `tf.cond` on it; a graph traced before keeps that cond (and its data init).
    """
    if not self.built:
      return False
    with tf.init_scope():
      return bool(self.initialized.numpy())

  def get_config(self):
    config = super().get_config()
    config['data_init'] = self.data_init
    return config


def wn(layer: keras.layers.Layer, use_weight_norm: bool = True) -> keras.layers.Layer:
  """Wraps `layer` in data-initialized weight normalization: the one wrapper of vlae_tf.

  Every weight-normed layer of the encoders, context networks and decoders goes through here
  (blocks.conv / blocks.dense / blocks.Upsample, the PixelCNNs' masked and 1x1 convolutions, the
  gated PixelCNN's shifted convolutions).

  Args:
    layer: the layer to wrap: a Dense, a Conv2D (masked.MaskedConv2D included) or a
      Conv2DTranspose; its `activation` is applied after the normalized pre-activation.
    use_weight_norm: if False, returns `layer` unchanged (plain layer, default initializers).

  Returns:
    `WeightNorm(layer, data_init=True)`, or `layer`.
  """
  if not use_weight_norm:
    return layer
  with warnings.catch_warnings():
    # TFP warns for any class but Dense/Conv2D/Conv2DTranspose; MaskedConv2D is a Conv2D that
    # masks the kernel it is given, which is exactly what the wrapper needs.
    warnings.filterwarnings('ignore', message='`WeightNorm` is tested only for')
    return WeightNorm(layer, data_init=True)


def weight_norm_layers(module: tf.Module) -> List[WeightNorm]:
  """All TFP `WeightNorm` layers inside `module` (a Keras layer/model or a tf.Module)."""
  return [m for m in module.submodules if isinstance(m, tfp.layers.weight_norm.WeightNorm)]


def uninitialized_weight_norms(module: tf.Module) -> List[tfp.layers.weight_norm.WeightNorm]:
  """The `WeightNorm` layers of `module` that are unbuilt or whose data init has not run."""
  return [layer for layer in weight_norm_layers(module)
          if not hasattr(layer, 'initialized') or not bool(layer.initialized.numpy())]


def initialize(network: Callable[..., Any], *args, **kwargs) -> Any:
  """Builds `network` and runs its data-dependent initialization: one eager call on a real batch.

  Data-dependent init runs once, eagerly, on a real batch, before step 0; after that call() never
  assigns. Call it under `strategy.scope()` (so the variables are mirrored) but outside
  `strategy.run`, with the global batch: in this cross-replica context every replica's copy of
  g and bias receives the same statistics. Calling it again is harmless: it is then an ordinary
  forward pass (every `initialized` flag is True).

  Args:
    network: the network, or any callable that runs it (e.g. `lambda x: vlae.elbo(x, seed)`).
    *args: its inputs, e.g. the first training batch.
    **kwargs: keyword inputs.

  Returns:
    What `network(*args, **kwargs)` returns.

  Raises:
    RuntimeError: when not executing eagerly or when inside `strategy.run` (replica context);
      when `network` is a module and some of its `WeightNorm` layers were not reached.
  """
  if not tf.executing_eagerly():
    raise RuntimeError('Data-dependent init must run eagerly, not inside a tf.function.')
  if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
    raise RuntimeError(
        'Data-dependent init must run in cross-replica context (under strategy.scope(), outside '
        'strategy.run): in replica context each replica would initialize only its own copy of '
        'the mirrored variables from its own shard, and the copies would diverge.')
  outputs = network(*args, **kwargs)
  if isinstance(network, tf.Module):
    missing = uninitialized_weight_norms(network)
    if missing:
      raise RuntimeError(f'WeightNorm layers not initialized by the call: '
                         f'{[layer.name for layer in missing]}')
  return outputs
