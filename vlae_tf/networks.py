"""ResNet / DenseNet encoders, upsampling context networks, weight normalization with data init.

Every convolution and dense layer of this module goes through `wn(layer)`: weight normalization
(Salimans and Kingma 2016) with data-dependent initialization, as in the paper ("weight
normalization with data-dependent init everywhere"). Conventions shared by all networks:

* Pre-activation streams. The tensor passed between blocks is a pre-activation; every convolution
  that reads it applies ELU first: `conv(elu(x))`. Only the stem (which reads the image, or z) is
  applied to its raw input.
* ResNet block (`ResNetBlock`), width-preserving, residual branch scaled by 0.1 (paper scripts):

      y = x + residual_scale * conv_2(elu(conv_1(elu(x))))

  Both convolutions are k x k, 'same' padding, `filters` maps. With data init the branch output
  has unit variance per channel at initialization, so the block starts as x + 0.1 * N(0, 1).
* DenseNet block (`DenseNetBlock`), `num_steps` steps then a 1x1 transition back to the width:

      x_0 = x;   x_s = concat(x_{s-1}, conv_s(elu(x_{s-1})))   # + growth_rate maps per step
      y   = conv_1x1(elu(x_num_steps))                         # [.., filters]

* Downsampling: a stride-2 k x k convolution with 'same' padding, `conv(elu(x))`; a side of n
  pixels becomes ceil(n / 2) (28 -> 14 -> 7 -> 4, 12 -> 6 -> 3 -> 2, 5 -> 3 -> 2), so every image
  size works.
* Upsampling (`Upsample`): a stride-2 k x k transposed convolution ('same' padding, exactly doubles
  each side) followed by a crop of the bottom rows / right columns to the target size: 4 -> 8 -> 7.
  Decoders take the target image size (`output_shape`) and derive every intermediate size by the
  same ceil-halving as the encoders, so decoder stages have the encoder's sizes, in reverse.

Data-dependent initialization contract
--------------------------------------
Data-dependent init runs once, eagerly, on a real batch, before step 0; after that call() never
assigns. Concretely:

    with strategy.scope():
      encoder = BinaryResNetEncoder()
      networks.initialize(encoder, first_batch)   # eager, cross-replica context, global batch
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

import collections
import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

import gin
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as keras

EncoderOutput = collections.namedtuple('EncoderOutput', ['loc', 'scale', 'context'])
EncoderOutput.__doc__ = """What an encoder returns.

Fields:
  loc: mean of the diagonal Gaussian posterior q(z|x), the shape of z.
  scale: its standard deviation, > 0, the shape of z.
  context: features of x for an IAF / convolutional AF posterior ([B, C] or [B, h, w, C]).
"""


class _NormalizedKernel:
  """Stands in for a weight-normed layer's `kernel`: converts to g * v / ||v|| where it is read."""

  def __init__(self, wrapper: 'WeightNorm'):
    self._wrapper = wrapper

  @property
  def shape(self) -> tf.TensorShape:
    return self._wrapper.v.shape

  @property
  def dtype(self) -> tf.DType:
    return self._wrapper.v.dtype

  def __tf_tensor__(self, dtype=None, name=None):
    del name  # Unused.
    wrapper = self._wrapper
    kernel = (tf.nn.l2_normalize(wrapper.v, axis=wrapper.kernel_norm_axes) *
              tf.expand_dims(wrapper.g, -wrapper.filter_axis - 3))
    return kernel if dtype is None else tf.cast(kernel, dtype)


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
          dtype=self.v.dtype, trainable=True)
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
  """Wraps `layer` (Dense, Conv2D or Conv2DTranspose) in data-initialized weight normalization.

  Args:
    layer: the layer to wrap; its `activation` is applied after the normalized pre-activation.
    use_weight_norm: if False, returns `layer` unchanged (plain layer, default initializers).

  Returns:
    `WeightNorm(layer, data_init=True)`, or `layer`.
  """
  if not use_weight_norm:
    return layer
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


def _conv(filters: int, kernel_size: int, use_weight_norm: bool, strides: int = 1,
          activation: Optional[str] = None) -> keras.layers.Layer:
  return wn(keras.layers.Conv2D(filters, kernel_size, strides=strides, padding='same',
                                activation=activation), use_weight_norm)


def _dense(units: int, use_weight_norm: bool, activation: Optional[str] = None):
  return wn(keras.layers.Dense(units, activation=activation), use_weight_norm)


def halved_sizes(size: Sequence[int], num_halvings: int) -> List[Tuple[int, int]]:
  """[(h, w), (ceil(h/2), ceil(w/2)), ...]: the sizes after each stride-2 'same' convolution.

  Example: halved_sizes((28, 28), 3) == [(28, 28), (14, 14), (7, 7), (4, 4)].
  """
  sizes = [tuple(int(s) for s in size)]
  for _ in range(num_halvings):
    sizes.append(tuple(math.ceil(s / 2) for s in sizes[-1]))
  return sizes


def _softplus_scale(raw: tf.Tensor, epsilon: float) -> tf.Tensor:
  return tf.nn.softplus(raw) + epsilon


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
class ResNetBlock(keras.layers.Layer):
  """Pre-activation residual block: y = x + residual_scale * conv_2(elu(conv_1(elu(x)))).

  Width-preserving: x and y are [batch, height, width, filters].
  """

  def __init__(self, filters: int, kernel_size: int = 3, residual_scale: float = 0.1,
               use_weight_norm: bool = True, **kwargs):
    """Makes the block.

    Args:
      filters: channels of the input, the hidden layer and the output.
      kernel_size: side of both square kernels.
      residual_scale: multiplies the residual branch (0.1 in the paper scripts).
      use_weight_norm: weight normalization with data-dependent init on both convolutions.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.residual_scale = residual_scale
    self.use_weight_norm = use_weight_norm
    self.conv_1 = _conv(filters, kernel_size, use_weight_norm, activation='elu')
    self.conv_2 = _conv(filters, kernel_size, use_weight_norm)

  def build(self, input_shape):
    if input_shape[-1] != self.filters:
      raise ValueError(f'ResNetBlock({self.filters}) got {input_shape[-1]} input channels.')
    super().build(input_shape)

  def call(self, inputs, training=None):
    del training  # Unused.
    branch = self.conv_2(self.conv_1(tf.nn.elu(inputs)))  # [batch, height, width, filters]
    return inputs + self.residual_scale * branch

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size,
                  residual_scale=self.residual_scale, use_weight_norm=self.use_weight_norm)
    return config


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
class DenseNetBlock(keras.layers.Layer):
  """DenseNet block: `num_steps` concatenating steps, then a 1x1 transition back to `filters`.

      x_0 = x                                          # [B, H, W, filters]
      x_s = concat(x_{s-1}, conv_s(elu(x_{s-1})))      # [B, H, W, filters + s * growth_rate]
      y   = conv_1x1(elu(x_num_steps))                 # [B, H, W, filters]
  """

  def __init__(self, filters: int, growth_rate: int = 32, num_steps: int = 3,
               kernel_size: int = 3, use_weight_norm: bool = True, **kwargs):
    """Makes the block.

    Args:
      filters: channels of the input and of the output (the stage width).
      growth_rate: maps added by each step.
      num_steps: concatenating steps (3 in the paper).
      kernel_size: side of the square kernel of each step.
      use_weight_norm: weight normalization with data-dependent init on every convolution.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(**kwargs)
    self.filters = filters
    self.growth_rate = growth_rate
    self.num_steps = num_steps
    self.kernel_size = kernel_size
    self.use_weight_norm = use_weight_norm
    self.steps = [_conv(growth_rate, kernel_size, use_weight_norm) for _ in range(num_steps)]
    self.transition = _conv(filters, 1, use_weight_norm)

  def build(self, input_shape):
    if input_shape[-1] != self.filters:
      raise ValueError(f'DenseNetBlock({self.filters}) got {input_shape[-1]} input channels.')
    super().build(input_shape)

  def call(self, inputs, training=None):
    del training  # Unused.
    features = inputs
    for step in self.steps:
      # [batch, height, width, filters + (s + 1) * growth_rate]
      features = tf.concat([features, step(tf.nn.elu(features))], axis=-1)
    return self.transition(tf.nn.elu(features))  # [batch, height, width, filters]

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, growth_rate=self.growth_rate, num_steps=self.num_steps,
                  kernel_size=self.kernel_size, use_weight_norm=self.use_weight_norm)
    return config


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
class Upsample(keras.layers.Layer):
  """y = crop(conv_transpose_stride_2(elu(x))): doubles each side, then crops to `output_size`.

  The crop removes the bottom rows and right columns (at most one of each when the sizes come
  from `halved_sizes`): [B, h, w, C] -> [B, 2h, 2w, filters] -> [B, H, W, filters].
  """

  def __init__(self, filters: int, output_size: Sequence[int], kernel_size: int = 3,
               use_weight_norm: bool = True, **kwargs):
    """Makes the layer.

    Args:
      filters: output channels.
      output_size: (H, W) after the crop; needs H <= 2h and W <= 2w.
      kernel_size: side of the square transposed-convolution kernel.
      use_weight_norm: weight normalization with data-dependent init.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(**kwargs)
    self.filters = filters
    self.output_size = tuple(int(s) for s in output_size)
    self.kernel_size = kernel_size
    self.use_weight_norm = use_weight_norm
    self.conv = wn(keras.layers.Conv2DTranspose(filters, kernel_size, strides=2, padding='same'),
                   use_weight_norm)

  def build(self, input_shape):
    height, width = input_shape[1], input_shape[2]
    if 2 * height < self.output_size[0] or 2 * width < self.output_size[1]:
      raise ValueError(f'Cannot upsample {height}x{width} to {self.output_size} by 2.')
    super().build(input_shape)

  def call(self, inputs, training=None):
    del training  # Unused.
    outputs = self.conv(tf.nn.elu(inputs))  # [batch, 2 * height, 2 * width, filters]
    return outputs[:, :self.output_size[0], :self.output_size[1], :]

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, output_size=self.output_size,
                  kernel_size=self.kernel_size, use_weight_norm=self.use_weight_norm)
    return config


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
class BinaryResNetEncoder(keras.layers.Layer):
  """ResNet encoder for binary images: x [B, H, W, C] -> (loc, scale [B, latent], context).

      x -> stem conv k x k (filters[0])                                   # [B, 28, 28, 16]
        -> per stage i: conv stride 2 (filters[i]) of elu, blocks_per_stage ResNetBlocks
                                                          # 14x14x16 -> 7x7x32 -> 4x4x32
        -> flatten(elu) -> dense hidden_size, ELU = hidden                # [B, 450]
        -> dense 2 * latent_size -> loc, scale = softplus(.) + scale_epsilon
      context = hidden if context_size is None, else dense context_size (linear) of hidden.

  Defaults are the paper scripts' binary-image encoder (3x3 kernels, 16/32/32 filters, 450
  hidden units, 64 latent dimensions).
  """

  def __init__(self, latent_size: int = 64, filters: Sequence[int] = (16, 32, 32),
               blocks_per_stage: int = 1, hidden_size: int = 450,
               context_size: Optional[int] = None, kernel_size: int = 3,
               residual_scale: float = 0.1, scale_epsilon: float = 1e-5,
               use_weight_norm: bool = True, **kwargs):
    """Makes the encoder.

    Args:
      latent_size: dimensions of z.
      filters: width of each downsampling stage; one stride-2 convolution per entry.
      blocks_per_stage: ResNet blocks after each downsampling.
      hidden_size: units of the dense ELU layer.
      context_size: None: the context is the hidden layer itself ([B, hidden_size]); an int: a
        linear dense projection of it to that size.
      kernel_size: side of every square kernel.
      residual_scale: multiplies every residual branch.
      scale_epsilon: added to softplus to keep scale > 0.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(**kwargs)
    self.latent_size = latent_size
    self.filters = tuple(filters)
    self.blocks_per_stage = blocks_per_stage
    self.hidden_size = hidden_size
    self._context_size = context_size
    self.kernel_size = kernel_size
    self.residual_scale = residual_scale
    self.scale_epsilon = scale_epsilon
    self.use_weight_norm = use_weight_norm
    self.stem = _conv(self.filters[0], kernel_size, use_weight_norm)
    self.downsamples = [_conv(width, kernel_size, use_weight_norm, strides=2)
                        for width in self.filters]
    self.stages = [[ResNetBlock(width, kernel_size, residual_scale, use_weight_norm)
                    for _ in range(blocks_per_stage)] for width in self.filters]
    self.hidden = _dense(hidden_size, use_weight_norm, activation='elu')
    self.posterior = _dense(2 * latent_size, use_weight_norm)
    self.context_projection = (None if context_size is None
                               else _dense(context_size, use_weight_norm))

  @property
  def context_size(self) -> int:
    """Size of the context vector."""
    return self.hidden_size if self._context_size is None else self._context_size

  def call(self, inputs, training=None):
    del training  # Unused.
    x = self.stem(inputs)  # [batch, height, width, filters[0]]
    for downsample, blocks in zip(self.downsamples, self.stages):
      x = downsample(tf.nn.elu(x))  # [batch, ceil(height / 2), ceil(width / 2), filters[i]]
      for block in blocks:
        x = block(x)
    flat = tf.reshape(tf.nn.elu(x), [tf.shape(x)[0], x.shape[1] * x.shape[2] * x.shape[3]])
    hidden = self.hidden(flat)  # [batch, hidden_size]
    loc, raw_scale = tf.split(self.posterior(hidden), 2, axis=-1)  # 2 x [batch, latent_size]
    context = hidden if self.context_projection is None else self.context_projection(hidden)
    return EncoderOutput(loc, _softplus_scale(raw_scale, self.scale_epsilon), context)

  def get_config(self):
    config = super().get_config()
    config.update(latent_size=self.latent_size, filters=self.filters,
                  blocks_per_stage=self.blocks_per_stage, hidden_size=self.hidden_size,
                  context_size=self._context_size, kernel_size=self.kernel_size,
                  residual_scale=self.residual_scale, scale_epsilon=self.scale_epsilon,
                  use_weight_norm=self.use_weight_norm)
    return config


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
class BinaryResNetDecoder(keras.layers.Layer):
  """Upsampling ResNet: z [B, latent] -> context map [B, H, W, context_channels].

      z -> dense hidden_size, ELU -> dense h0 * w0 * filters[0] -> reshape   # [B, 4, 4, 32]
        -> per stage i: Upsample to filters[i] and the stage size, blocks_per_stage ResNetBlocks
                                                   # 7x7x32 -> 14x14x32 -> 28x28x16
        -> conv k x k of elu -> context_channels                            # [B, 28, 28, 4]

  The stage sizes are `halved_sizes(output_shape, len(filters))` in reverse (4 -> 7 -> 14 -> 28
  for 28x28; 2 -> 3 -> 6 -> 12 by 2 -> 3 -> 5 -> 10 for 12x10).
  """

  def __init__(self, output_shape: Sequence[int] = (28, 28), context_channels: int = 4,
               filters: Sequence[int] = (32, 32, 16), blocks_per_stage: int = 1,
               hidden_size: int = 450, kernel_size: int = 3, residual_scale: float = 0.1,
               use_weight_norm: bool = True, **kwargs):
    """Makes the decoder.

    Args:
      output_shape: (height, width) of the context map (the image size).
      context_channels: channels of the context map (4 in the paper).
      filters: width of each upsampling stage, from the lowest resolution; filters[0] is also
        the width of the reshaped dense output.
      blocks_per_stage: ResNet blocks after each upsampling.
      hidden_size: units of the dense ELU layer.
      kernel_size: side of every square kernel.
      residual_scale: multiplies every residual branch.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(**kwargs)
    self._output_hw = tuple(int(s) for s in output_shape)
    self.context_channels = context_channels
    self.filters = tuple(filters)
    self.blocks_per_stage = blocks_per_stage
    self.hidden_size = hidden_size
    self.kernel_size = kernel_size
    self.residual_scale = residual_scale
    self.use_weight_norm = use_weight_norm
    sizes = halved_sizes(self._output_hw, len(self.filters))[::-1]  # lowest resolution first
    self._input_size = sizes[0]
    self.hidden = _dense(hidden_size, use_weight_norm, activation='elu')
    self.projection = _dense(sizes[0][0] * sizes[0][1] * self.filters[0], use_weight_norm)
    self.upsamples = [Upsample(width, size, kernel_size, use_weight_norm)
                      for width, size in zip(self.filters, sizes[1:])]
    self.stages = [[ResNetBlock(width, kernel_size, residual_scale, use_weight_norm)
                    for _ in range(blocks_per_stage)] for width in self.filters]
    self.head = _conv(context_channels, kernel_size, use_weight_norm)

  def call(self, inputs, training=None):
    del training  # Unused.
    hidden = self.hidden(inputs)  # [batch, hidden_size]
    x = tf.reshape(self.projection(hidden), [-1, *self._input_size, self.filters[0]])
    for upsample, blocks in zip(self.upsamples, self.stages):
      x = upsample(x)  # [batch, stage height, stage width, filters[i]]
      for block in blocks:
        x = block(x)
    return self.head(tf.nn.elu(x))  # [batch, height, width, context_channels]

  def get_config(self):
    config = super().get_config()
    config.update(output_shape=self._output_hw, context_channels=self.context_channels,
                  filters=self.filters, blocks_per_stage=self.blocks_per_stage,
                  hidden_size=self.hidden_size, kernel_size=self.kernel_size,
                  residual_scale=self.residual_scale, use_weight_norm=self.use_weight_norm)
    return config


class _SpatialEncoder(keras.layers.Layer):
  """x [B, H, W, C] -> loc, scale [B, h, w, latent_channels], context [B, h, w, .].

      x -> stem conv k x k (filters[0])
        -> stage 0 blocks; per later stage i: conv stride 2 (filters[i]) of elu, stage i blocks
        -> conv 1x1 of elu -> 2 * latent_channels -> loc, scale = softplus(.) + scale_epsilon
      context = elu(x) if context_channels is None, else conv 1x1 of elu(x).

  h, w = ceil-halving of H, W, len(filters) - 1 times (32 -> 16 -> 8). `make_block(width)` makes
  one width-preserving block; subclasses pass it.
  """

  def __init__(self, make_block, filters, blocks, latent_channels, context_channels,
               kernel_size, scale_epsilon, use_weight_norm, **kwargs):
    super().__init__(**kwargs)
    if len(filters) != len(blocks):
      raise ValueError(f'filters {filters} and blocks {blocks} differ in length.')
    self.filters = tuple(filters)
    self.blocks = tuple(blocks)
    self.latent_channels = latent_channels
    self.context_channels = context_channels
    self.kernel_size = kernel_size
    self.scale_epsilon = scale_epsilon
    self.use_weight_norm = use_weight_norm
    self.stem = _conv(self.filters[0], kernel_size, use_weight_norm)
    self.downsamples = [_conv(width, kernel_size, use_weight_norm, strides=2)
                        for width in self.filters[1:]]
    self.stages = [[make_block(width) for _ in range(count)]
                   for width, count in zip(self.filters, self.blocks)]
    self.posterior = _conv(2 * latent_channels, 1, use_weight_norm)
    self.context_projection = (None if context_channels is None
                               else _conv(context_channels, 1, use_weight_norm))

  def call(self, inputs, training=None):
    del training  # Unused.
    x = self.stem(inputs)  # [batch, height, width, filters[0]]
    for i, blocks in enumerate(self.stages):
      if i > 0:
        x = self.downsamples[i - 1](tf.nn.elu(x))  # [batch, ceil(h / 2), ceil(w / 2), filters[i]]
      for block in blocks:
        x = block(x)
    features = tf.nn.elu(x)  # [batch, h, w, filters[-1]]
    loc, raw_scale = tf.split(self.posterior(features), 2, axis=-1)  # 2 x [b, h, w, latent]
    context = (features if self.context_projection is None
               else self.context_projection(features))
    return EncoderOutput(loc, _softplus_scale(raw_scale, self.scale_epsilon), context)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, blocks=self.blocks,
                  latent_channels=self.latent_channels, context_channels=self.context_channels,
                  kernel_size=self.kernel_size, scale_epsilon=self.scale_epsilon,
                  use_weight_norm=self.use_weight_norm)
    return config


class _SpatialDecoder(keras.layers.Layer):
  """z [B, h, w, latent] -> context map [B, H, W, context_channels]; mirrors `_SpatialEncoder`.

      z -> conv 1x1 (filters[0]) -> stage 0 blocks
        -> per later stage i: Upsample to filters[i] and the stage size, stage i blocks
        -> conv k x k of elu -> context_channels

  The stage sizes are `halved_sizes(output_shape, len(filters) - 1)` in reverse; z must have
  the smallest (8x8 for 32x32). `make_block(width)` makes one width-preserving block.
  """

  def __init__(self, make_block, output_shape, context_channels, filters, blocks, kernel_size,
               use_weight_norm, **kwargs):
    super().__init__(**kwargs)
    if len(filters) != len(blocks):
      raise ValueError(f'filters {filters} and blocks {blocks} differ in length.')
    self._output_hw = tuple(int(s) for s in output_shape)
    self.context_channels = context_channels
    self.filters = tuple(filters)
    self.blocks = tuple(blocks)
    self.kernel_size = kernel_size
    self.use_weight_norm = use_weight_norm
    sizes = halved_sizes(self._output_hw, len(self.filters) - 1)[::-1]
    self._input_size = sizes[0]
    self.stem = _conv(self.filters[0], 1, use_weight_norm)
    self.upsamples = [Upsample(width, size, kernel_size, use_weight_norm)
                      for width, size in zip(self.filters[1:], sizes[1:])]
    self.stages = [[make_block(width) for _ in range(count)]
                   for width, count in zip(self.filters, self.blocks)]
    self.head = _conv(context_channels, kernel_size, use_weight_norm)

  def build(self, input_shape):
    if tuple(input_shape[1:3]) != self._input_size:
      raise ValueError(f'z must be {self._input_size} for output {self._output_hw}; got '
                       f'{tuple(input_shape[1:3])}.')
    super().build(input_shape)

  def call(self, inputs, training=None):
    del training  # Unused.
    x = self.stem(inputs)  # [batch, h, w, filters[0]]
    for i, blocks in enumerate(self.stages):
      if i > 0:
        x = self.upsamples[i - 1](x)  # [batch, stage height, stage width, filters[i]]
      for block in blocks:
        x = block(x)
    return self.head(tf.nn.elu(x))  # [batch, height, width, context_channels]

  def get_config(self):
    config = super().get_config()
    config.update(output_shape=self._output_hw, context_channels=self.context_channels,
                  filters=self.filters, blocks=self.blocks, kernel_size=self.kernel_size,
                  use_weight_norm=self.use_weight_norm)
    return config


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
class SpatialResNetEncoder(_SpatialEncoder):
  """CIFAR-10 ResNet encoder: x [B, 32, 32, 3] -> loc, scale [B, 8, 8, 16], context [B, 8, 8, .].

  Paper: 2 ResNet blocks, stride-2 conv, 2 blocks, stride-2 conv, 3 blocks, 1x1 conv; 48 channels
  at 32x32, 96 elsewhere:

      stem 3x3 (48) @32 -> 2 x ResNetBlock(48) -> stride 2 (96) @16 -> 2 x ResNetBlock(96)
        -> stride 2 (96) @8 -> 3 x ResNetBlock(96) -> 1x1 -> loc, scale (16 each)
  """

  def __init__(self, filters: Sequence[int] = (48, 96, 96), blocks: Sequence[int] = (2, 2, 3),
               latent_channels: int = 16, context_channels: Optional[int] = None,
               kernel_size: int = 3, residual_scale: float = 0.1, scale_epsilon: float = 1e-5,
               use_weight_norm: bool = True, **kwargs):
    """Makes the encoder.

    Args:
      filters: width of each stage, full resolution first; a stride-2 convolution between stages.
      blocks: ResNet blocks per stage.
      latent_channels: channels of z.
      context_channels: None: the context is elu of the last stage ([B, h, w, filters[-1]]);
        an int: a 1x1 convolution of it to that many channels.
      kernel_size: side of every square kernel but the 1x1 ones.
      residual_scale: multiplies every residual branch.
      scale_epsilon: added to softplus to keep scale > 0.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(
        lambda width: ResNetBlock(width, kernel_size, residual_scale, use_weight_norm),
        filters, blocks, latent_channels, context_channels, kernel_size, scale_epsilon,
        use_weight_norm, **kwargs)
    self.residual_scale = residual_scale

  def get_config(self):
    config = super().get_config()
    config.update(residual_scale=self.residual_scale)
    return config


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
class SpatialResNetDecoder(_SpatialDecoder):
  """CIFAR-10 ResNet decoder, the encoder mirrored: z [B, 8, 8, 16] -> [B, 32, 32, channels].

      1x1 (96) @8 -> 3 x ResNetBlock(96) -> Upsample (96) @16 -> 2 x ResNetBlock(96)
        -> Upsample (48) @32 -> 2 x ResNetBlock(48) -> 3x3 of elu -> context_channels
  """

  def __init__(self, output_shape: Sequence[int] = (32, 32), context_channels: int = 64,
               filters: Sequence[int] = (96, 96, 48), blocks: Sequence[int] = (3, 2, 2),
               kernel_size: int = 3, residual_scale: float = 0.1, use_weight_norm: bool = True,
               **kwargs):
    """Makes the decoder.

    Args:
      output_shape: (height, width) of the context map (the image size).
      context_channels: channels of the context map fed to the PixelCNN++ decoder.
      filters: width of each stage, lowest resolution first; an Upsample between stages.
      blocks: ResNet blocks per stage.
      kernel_size: side of every square kernel but the 1x1 stem.
      residual_scale: multiplies every residual branch.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(
        lambda width: ResNetBlock(width, kernel_size, residual_scale, use_weight_norm),
        output_shape, context_channels, filters, blocks, kernel_size, use_weight_norm, **kwargs)
    self.residual_scale = residual_scale

  def get_config(self):
    config = super().get_config()
    config.update(residual_scale=self.residual_scale)
    return config


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
class SpatialDenseNetEncoder(_SpatialEncoder):
  """CIFAR-10 DenseNet encoder: `SpatialResNetEncoder` with DenseNet blocks.

  Paper: each pair of ResNet blocks becomes one 3-step DenseNet block. The paper's last stage has
  3 ResNet blocks; the default here rounds up to 2 DenseNet blocks (blocks=(1, 1, 2)).
  """

  def __init__(self, filters: Sequence[int] = (48, 96, 96), blocks: Sequence[int] = (1, 1, 2),
               latent_channels: int = 16, context_channels: Optional[int] = None,
               growth_rate: int = 32, num_steps: int = 3, kernel_size: int = 3,
               scale_epsilon: float = 1e-5, use_weight_norm: bool = True, **kwargs):
    """Makes the encoder.

    Args:
      filters: width of each stage, full resolution first; a stride-2 convolution between stages.
      blocks: DenseNet blocks per stage.
      latent_channels: channels of z.
      context_channels: None: the context is elu of the last stage; an int: a 1x1 convolution.
      growth_rate: maps added by each DenseNet step.
      num_steps: steps per DenseNet block.
      kernel_size: side of every square kernel but the 1x1 ones.
      scale_epsilon: added to softplus to keep scale > 0.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(
        lambda width: DenseNetBlock(width, growth_rate, num_steps, kernel_size, use_weight_norm),
        filters, blocks, latent_channels, context_channels, kernel_size, scale_epsilon,
        use_weight_norm, **kwargs)
    self.growth_rate = growth_rate
    self.num_steps = num_steps

  def get_config(self):
    config = super().get_config()
    config.update(growth_rate=self.growth_rate, num_steps=self.num_steps)
    return config


@gin.register(module='vlae_tf.networks')
@keras.saving.register_keras_serializable(package='vlae_tf.networks')
class SpatialDenseNetDecoder(_SpatialDecoder):
  """CIFAR-10 DenseNet decoder: `SpatialResNetDecoder` with DenseNet blocks (blocks=(2, 1, 1))."""

  def __init__(self, output_shape: Sequence[int] = (32, 32), context_channels: int = 64,
               filters: Sequence[int] = (96, 96, 48), blocks: Sequence[int] = (2, 1, 1),
               growth_rate: int = 32, num_steps: int = 3, kernel_size: int = 3,
               use_weight_norm: bool = True, **kwargs):
    """Makes the decoder.

    Args:
      output_shape: (height, width) of the context map (the image size).
      context_channels: channels of the context map fed to the PixelCNN++ decoder.
      filters: width of each stage, lowest resolution first; an Upsample between stages.
      blocks: DenseNet blocks per stage.
      growth_rate: maps added by each DenseNet step.
      num_steps: steps per DenseNet block.
      kernel_size: side of every square kernel but the 1x1 stem.
      use_weight_norm: weight normalization with data-dependent init on every layer.
      **kwargs: `keras.layers.Layer` arguments (name, dtype).
    """
    super().__init__(
        lambda width: DenseNetBlock(width, growth_rate, num_steps, kernel_size, use_weight_norm),
        output_shape, context_channels, filters, blocks, kernel_size, use_weight_norm, **kwargs)
    self.growth_rate = growth_rate
    self.num_steps = num_steps

  def get_config(self):
    config = super().get_config()
    config.update(growth_rate=self.growth_rate, num_steps=self.num_steps)
    return config
