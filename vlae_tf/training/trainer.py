"""The trainer: the inner step on every replica, the loss across replicas, Polyak averaging.

`make_trainer` builds it (the gin-configurable factory that `loop.train` and bin/benchmark
share): the model and its averaged copy, Adamax, free bits or soft free bits. `Trainer` owns the
inner step, one `tf.function` that runs several steps on every replica without leaving the graph
(`train_loop`); the outer loop around it (checkpoints, validation, summaries, signals) is
`loop.train` and its actions.

Objective. With R replicas, a global batch of B images, and replica r holding the images B_r, each
replica minimizes

    loss_r = sum_{i in B_r} -log p(x_i | z_i) / B  +  max(mean_{i in B_r} KL_i, lambda * D) / R

where D = H * W * C and KL_i is the Monte-Carlo KL of image i. Replica gradients are summed (one
all-reduce), so the applied gradient is that of

    sum_r loss_r = mean_B -log p(x|z)  +  mean_r max(mean_{B_r} KL, lambda * D),

which is the free-bits objective of the paper's scripts, max(mean_B KL, lambda * D), whenever all
replicas are on the same side of the threshold (always once the KL is well above lambda * D, and
exactly with one replica). With soft free bits (CIFAR-10) the loss is
sum_{B_r} (-log p(x|z) + gamma * KL) / B, and gamma follows the global batch-mean KL.

Polyak averaging. After every optimizer step, on every device,

    average <- decay * average + (1 - decay) * weight          (trainable floating-point weights)
    average <- weight                                           (every other variable)

with decay = min(ema_decay, (1 + n) / (10 + n)) after n updates when `ema_warmup` (tf.train's
warm-up). The averages live in a second instance of the model (`averaged_model`), whose variables
are mirrored like the trained ones and are updated in cross-replica context by
`strategy.extended.update`, one device at a time from that device's copy of the weights: the copies
stay identical without extra communication. Validation, sampling, evaluation and export use
`averaged_model`, which checkpoints save under the key `averaged_model`.

Randomness. The seed of replica r at step s is
fold_in(fold_in(fold_in([seed, 0], TRAIN_SALT), s), r) (`seeds.stateless_seed`), so the random
draws of a step are a function of the step, and a checkpoint holds step, model, averaged model and
optimizer (and gamma with soft free bits).

Faults. A step whose loss or summed gradient is not finite is skipped (weights, optimizer, averages
untouched; decided on all-reduced values so replicas agree) and counted; the outer loop stops the
run after `max_consecutive_bad_steps` of them in a row. Under 'mixed_float16' the loss is scaled
(loss_scaling.py): a step whose gradients overflow while its loss is finite is skipped and halves
the scale without counting as a bad step.

GPUs. With `jit_compile` each replica's forward and backward pass is one XLA computation
(accelerators.py); the all-reduce, the skip and the updates stay outside it. With
`accumulation_steps` = k each replica's B / R images are k micro-batches of B / (R k), their
gradients summed before the all-reduce, and the optimizer, the averages and `step` advance once:
a step of batch B in the memory of a batch B / k. The micro-batches enter the objective as R k
replicas would (the free-bits max is per micro-batch; soft free bits are linear, hence exact), and
micro-batch m of replica r draws its noise with fold_in(seed of r, m).
"""

from absl import logging
import gin
import tensorflow as tf

from vlae_tf import accelerators
from vlae_tf import distribution
from vlae_tf import errors
from vlae_tf.layers import precision as precision_lib
from vlae_tf.training import averaging
from vlae_tf.training import loss_scaling
from vlae_tf.training import optimizers
from vlae_tf.training import replica_gradients
from vlae_tf.models import vlae as model_lib
from vlae_tf.models import objectives
from vlae_tf import seeds

METRIC_KEYS = ('loss', 'elbo', 'kl', 'log_px_z', 'gradient_norm', 'kl_weight')


class Trainer:
  """The inner loop: a distributed train step with free bits, Adamax and Polyak averaging.

  Create it under no scope; it enters `strategy.scope()` for its own variables. The models and the
  optimizer must have been created under the same strategy's scope.
  """

  def __init__(self, strategy, model, averaged_model, optimizer, *, global_batch_size,
               free_bits_lambda, ema_decay, seed, soft_free_bits=None, ema_warmup=False,
               jit_compile=False, accumulation_steps=1, loss_scale=None):
    """Holds the training state.

    Args:
      strategy: the `tf.distribute.Strategy`.
      model: the trained model.
      averaged_model: a second instance of the same model, for the Polyak averages.
      optimizer: a tf_keras optimizer.
      global_batch_size: B.
      free_bits_lambda: lambda, nats per data dimension.
      ema_decay: Polyak decay.
      seed: integer seed.
      ema_warmup: average with min(ema_decay, (1 + n) / (10 + n)) after n updates.
      soft_free_bits: an `objectives.SoftFreeBits` (created under the strategy scope) to use soft
        free bits instead of free bits; its gamma is updated after every step with the global
        batch-mean KL.
      jit_compile: compile each replica's forward and backward pass with XLA (a bool; see
        `accelerators.use_xla` for the gin setting's 'auto').
      accumulation_steps: k micro-batches per replica and step (the replica's batch must split
        evenly).
      loss_scale: a `loss_scaling.DynamicLossScale` (created under the strategy scope) for
        float16 layers, or None.

    Raises:
      CliError: with k > 1, the batch does not split into R replicas of k micro-batches.
    """
    self.strategy = strategy
    self.model = model
    self.averaged_model = averaged_model
    self.optimizer = optimizer
    self.global_batch_size = int(global_batch_size)
    self.free_bits_lambda = float(free_bits_lambda)
    self.ema_decay = float(ema_decay)
    self.ema_warmup = bool(ema_warmup)
    self.seed = int(seed)
    self.soft_free_bits = soft_free_bits
    self.jit_compile = bool(jit_compile)
    self.accumulation_steps = int(accumulation_steps)
    self.loss_scale = loss_scale
    parts = strategy.num_replicas_in_sync * self.accumulation_steps
    if self.accumulation_steps < 1 or (self.accumulation_steps > 1 and
                                       self.global_batch_size % parts):
      raise errors.CliError(
          f'train.batch_size = {self.global_batch_size} does not split into '
          f'{strategy.num_replicas_in_sync} replica(s) of train.accumulation_steps = '
          f'{accumulation_steps} micro-batches: choose a batch size that is a multiple of {parts}.')
    with strategy.scope():
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step',
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      # Not checkpointed: a resumed run starts counting again.
      self.consecutive_bad_steps = tf.Variable(
          0, dtype=tf.int64, trainable=False, name='consecutive_bad_steps',
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self._applied_variables = None
    self._checkpoint = None
    self.ema = None
    # Without autograph: the step has no Python control flow on tensors (the loop and the skip
    # of non-finite steps are tf.while_loop and tf.cond), and autograph's conversion of every
    # layer's call doubled the tracing of the first step (tiny VLAE, means of two runs: 4.3 s
    # against 8.1 s).
    self._train_loop = tf.function(self._train_loop_fn, autograph=False)
    self._gradients = tf.function(self._gradients_fn, autograph=False)
    # XLA's unit, and with accumulation a function traced once and called per micro-batch.
    self._loss_and_gradients = (
        accelerators.compiled(self._loss_and_gradients_fn, True) if self.jit_compile else
        tf.function(self._loss_and_gradients_fn, autograph=False) if self.accumulation_steps > 1
        else self._loss_and_gradients_fn)

  def build(self):
    """Pairs the averaged model with the model and creates the optimizer slots.

    Call after both models have their variables (`initialize` and `restore` call it).
    """
    with self.strategy.scope():
      self.ema = averaging.ExponentialMovingAverage(
          self.model.variables, self.averaged_model.variables, self.ema_decay, self.strategy)
      self.optimizer.build(self.model.trainable_variables)

  def checkpoint(self):
    """The training state (one `tf.train.Checkpoint`). Data position and seeds are functions of
    `step`."""
    if self._checkpoint is None:
      self._checkpoint = tf.train.Checkpoint(**self._state())
    return self._checkpoint

  def _state(self):
    state = dict(step=self.step, model=self.model, averaged_model=self.averaged_model,
                 optimizer=self.optimizer)
    if self.soft_free_bits is not None:
      state['soft_free_bits'] = self.soft_free_bits
    if self.loss_scale is not None:
      state['loss_scale'] = self.loss_scale
    return state

  def initialize(self, first_batch):
    """A fresh run: the model's data-dependent init on the global batch, averages <- weights."""
    with self.strategy.scope():
      self.model.initialize(first_batch)
      model_lib.create_variables(self.averaged_model)
      self.build()
      self.ema.copy()

  def restore(self, path):
    """A resumed run: creates every variable, then restores the checkpoint `path` into them."""
    with self.strategy.scope():
      model_lib.create_variables(self.model)
      model_lib.create_variables(self.averaged_model)
      self.build()
      checkpoint = self.checkpoint()
      names = {name for name, _ in tf.train.list_variables(path)}
      if self.loss_scale is not None and not any(n.startswith('loss_scale/') for n in names):
        # A piece trained in another precision: the scale starts afresh (INITIAL_SCALE).
        checkpoint = tf.train.Checkpoint(**{key: value for key, value in self._state().items()
                                            if key != 'loss_scale'})
      checkpoint.restore(path).assert_existing_objects_matched()

  # Replica context.

  def _loss_and_gradients_fn(self, images, seed, num_parts):
    """`replica_gradients.loss_and_gradients` of the trained model: XLA's unit."""
    return replica_gradients.loss_and_gradients(
        self.model, images, seed, global_batch_size=self.global_batch_size,
        free_bits_lambda=self.free_bits_lambda, num_parts=num_parts,
        kl_weight=None if self.soft_free_bits is None else self.soft_free_bits.gamma,
        loss_scale=None if self.loss_scale is None else self.loss_scale.scale)

  def _replica_gradients(self, images):
    """Loss, gradients (summed over replicas, unscaled) and metric sums of one replica's
    images."""
    context = tf.distribute.get_replica_context()
    seed = seeds.stateless_seed(self.seed, seeds.TRAIN_SALT, self.step,
                                context.replica_id_in_sync_group)
    variables = self.model.trainable_variables
    num_parts = self.strategy.num_replicas_in_sync * self.accumulation_steps
    if self.accumulation_steps == 1:
      gradients, sums = self._loss_and_gradients(images, seed, num_parts)
    else:
      gradients, sums = replica_gradients.accumulate(
          self._loss_and_gradients, images, seed, self.accumulation_steps, num_parts)
    pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
    if len(pairs) != len(variables):
      unused = [v.name for g, v in zip(gradients, variables) if g is None]
      logging.log_first_n(logging.WARNING, 'No gradient for %s', 1, unused)
    gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, [g for g, _ in pairs])
    if self.loss_scale is not None:
      gradients = [g / self.loss_scale.scale for g in gradients]
    return gradients, [v for _, v in pairs], sums

  def _replica_compute(self, images):
    """Summed gradients, metric sums, the global gradient norm, and 1 if the step is not finite.

    `finite` is computed from all-reduced values (the summed gradients and the summed loss), so
    every replica reaches the same decision.
    """
    gradients, variables, sums = self._replica_gradients(images)
    self._applied_variables = variables  # The same list on every replica (trace time).
    context = tf.distribute.get_replica_context()
    global_loss = context.all_reduce(tf.distribute.ReduceOp.SUM, sums['loss'])
    gradient_norm = tf.linalg.global_norm(gradients)
    finite = tf.math.logical_and(tf.math.is_finite(gradient_norm),
                                 tf.math.is_finite(global_loss))
    not_finite = 1 - tf.cast(finite, tf.int32)
    if self.loss_scale is not None:  # 2 when the loss itself is not finite.
      not_finite += 1 - tf.cast(tf.math.is_finite(global_loss), tf.int32)
    return gradients, sums, gradient_norm, not_finite

  def _replica_apply(self, gradients):
    self.optimizer.apply_gradients(zip(gradients, self._applied_variables),
                                   skip_gradients_aggregation=True)

  # Cross-replica context.

  def _reduce(self, sums, gradient_norm):
    strategy = self.strategy
    total = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in sums.items()}
    metrics = {'loss': total['loss']}
    for key in ('elbo', 'kl', 'log_px_z'):
      metrics[key] = total[key] / self.global_batch_size
    metrics['gradient_norm'] = strategy.reduce(tf.distribute.ReduceOp.MEAN, gradient_norm,
                                               axis=None)
    if self.soft_free_bits is None:
      metrics['kl_weight'] = tf.constant(1.0)
    else:
      metrics['kl_weight'] = self.soft_free_bits.gamma.read_value()  # gamma of this step
    return metrics

  def train_step(self, images, per_replica=False):
    """One step on a global batch [B, H, W, C] (call inside a tf.function).

    With `per_replica`, `images` are already distributed: the per-replica batches of
    `batching.per_worker_batches`, B / R images on every replica.

    A step whose loss or summed gradient is not finite is skipped: the optimizer (weights, slots,
    iterations), the Polyak averages and gamma are untouched; `step` still advances (the batch is
    consumed) and `consecutive_bad_steps` counts it. The decision is taken in cross-replica
    context on all-reduced values, so every replica skips or applies together. With a loss scale,
    a step whose gradients overflow while its loss is finite is skipped too, but not counted: it
    halves the scale (loss_scaling.py).

    Returns:
      (metrics, finite, bad): the step's metrics; whether it was applied; whether it counts as a
      bad step (boolean scalars).
    """
    if not per_replica:
      images = distribution.split_for_replicas(self.strategy, images)
    gradients, sums, gradient_norm, not_finite = self.strategy.run(
        self._replica_compute, args=(images,))
    # Equal on every replica already; the reduction makes one cross-replica boolean of it.
    not_finite = self.strategy.reduce(tf.distribute.ReduceOp.SUM, not_finite, axis=None)
    finite = tf.equal(not_finite, 0)
    bad = tf.logical_not(finite)
    if self.loss_scale is not None:  # Gradients overflowed, the loss is finite (_replica_compute).
      overflow = tf.logical_and(tf.less(not_finite, 2 * self.strategy.num_replicas_in_sync),
                                self.loss_scale.above_minimum())
      bad = tf.logical_and(bad, tf.logical_not(overflow))
    metrics = self._reduce(sums, gradient_norm)

    def apply():
      self.strategy.run(self._replica_apply, args=(gradients,))
      self.ema.update(self.optimizer.iterations if self.ema_warmup else None)
      if self.soft_free_bits is not None:
        with tf.control_dependencies([metrics['kl_weight']]):
          self.soft_free_bits.update(metrics['kl'])
      return tf.constant(True)

    with tf.control_dependencies([tf.cond(finite, apply, lambda: tf.constant(False))]):
      if self.loss_scale is None:
        self.consecutive_bad_steps.assign(
            tf.where(finite, tf.constant(0, tf.int64), self.consecutive_bad_steps + 1))
      else:  # An overflow leaves the count as it was.
        self.consecutive_bad_steps.assign(tf.where(
            finite, tf.constant(0, tf.int64),
            self.consecutive_bad_steps + tf.cast(bad, tf.int64)))
        self.loss_scale.update(finite)
      self.step.assign_add(1)
    return metrics, finite, bad

  def _train_loop_fn(self, iterator, num_steps, max_consecutive_bad_steps):
    # An explicit while loop, traced without autograph (see __init__): the loop stops after
    # num_steps, or after a step that brings consecutive_bad_steps to the limit.
    per_replica = isinstance(iterator, tf.distribute.DistributedIterator)

    def more(index, totals, good, bad, skipped):  # pylint: disable=unused-argument
      return (index < num_steps) & (
          (index == 0) | (self.consecutive_bad_steps < max_consecutive_bad_steps))

    def step(index, totals, good, bad, skipped):
      metrics, finite, is_bad = self.train_step(next(iterator), per_replica)
      totals = {key: totals[key] + tf.where(finite, tf.cast(metrics[key], tf.float32), 0.0)
                for key in METRIC_KEYS}
      finite, is_bad = tf.cast(finite, tf.float32), tf.cast(is_bad, tf.float32)
      return index + 1, totals, good + finite, bad + is_bad, skipped + 1.0 - finite - is_bad

    zero = tf.constant(0.0)
    start = (tf.constant(0), {key: zero for key in METRIC_KEYS}, zero, zero, zero)
    _, totals, good, bad, skipped = tf.while_loop(more, step, start)
    means = {key: value / good for key, value in totals.items()}  # NaN when no step was good.
    means['bad_steps'] = bad
    if self.loss_scale is not None:
      means['loss_scale_skips'] = skipped  # Overflows: skipped, not bad (loss_scaling.py).
      means['loss_scale'] = self.loss_scale.scale.read_value()
    return means

  def train_loop(self, iterator, num_steps, max_consecutive_bad_steps=None):
    """Runs up to `num_steps` steps in one tf.function.

    `iterator` gives global batches, or per-replica batches when it is a
    `tf.distribute.DistributedIterator` (`batching.per_worker_batches`).

    Stops early once `max_consecutive_bad_steps` consecutive steps were skipped (None: never).

    Returns:
      The metrics averaged over the applied (finite) steps, and `bad_steps`, the number of skipped
      steps (numpy floats); with a loss scale also `loss_scale_skips` (the overflows skipped) and
      `loss_scale` (its value after the last step).
    """
    limit = 2**62 if max_consecutive_bad_steps is None else int(max_consecutive_bad_steps)
    metrics = self._train_loop(iterator, tf.constant(num_steps, tf.int32),
                               tf.constant(limit, tf.int64))
    return {key: float(value) for key, value in metrics.items()}

  def _gradients_fn(self, images):
    gradients, _, sums = self.strategy.run(
        self._replica_gradients, args=(distribution.split_for_replicas(self.strategy, images),))
    local = [self.strategy.experimental_local_results(g)[0] for g in gradients]
    loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums['loss'], axis=None)
    return local, loss

  def gradients(self, images):
    """The gradients the optimizer would apply for a global batch, and the global loss (tests)."""
    return self._gradients(images)

  def learning_rate(self):
    learning_rate = self.optimizer.learning_rate
    if callable(learning_rate):
      learning_rate = learning_rate(self.optimizer.iterations)
    return float(tf.convert_to_tensor(learning_rate).numpy())


@gin.configurable(allowlist=['optimizer_cls'])
def make_trainer(strategy, *, global_batch_size, seed, learning_rate=2e-3, ema_decay=0.998,
                 ema_warmup=True, free_bits_lambda=0.01, soft_free_bits=False,
                 jit_compile=accelerators.AUTO, accumulation_steps=1,
                 model_fn=model_lib.make_model, optimizer_cls=optimizers.FusedAdamax):
  """Builds the trainer of a run: models, optimizer, averaging, free bits or soft free bits.

  `loop.train` and bin/benchmark both call it, with the hyperparameters bound to `train` in
  gin (`settings.TrainSettings.trainer_kwargs()`, `settings.trainer_settings()`): those bindings
  stay on `train` so that every shipped config and the config.gin of every existing run keep
  their meaning. What this factory adds to gin is the optimizer class (Adamax, the paper's) and,
  through `objectives.SoftFreeBits` (a gin configurable), the parameters of soft free bits, e.g.
  `SoftFreeBits.rate = 1.05`.

  Args:
    strategy: the `tf.distribute.Strategy`; models, optimizer and gamma are created in its scope.
    global_batch_size: B, a multiple of the number of replicas.
    seed: the integer seed of the training noise.
    learning_rate: the optimizer's learning rate (paper: 0.002).
    ema_decay: Polyak decay (paper: 0.998).
    ema_warmup: average with min(ema_decay, (1 + n) / (10 + n)) after n updates.
    free_bits_lambda: lambda, nats per data dimension (the target of soft free bits too).
    soft_free_bits: use `objectives.SoftFreeBits` (gamma * KL) instead of free bits.
    jit_compile: 'auto' (XLA on GPUs, off on CPUs), True or False (accelerators.py).
    accumulation_steps: micro-batches per replica and step (gradient accumulation).
    model_fn: makes the model (called twice: the trained model and its averaged copy).
    optimizer_cls: a tf_keras optimizer class, called with `learning_rate` (default: Adamax with
      a fused update, `optimizers.FusedAdamax`).

  A model in 'mixed_float16' trains with a dynamic loss scale (loss_scaling.py).

  Returns:
    A `Trainer` without variables yet: call `initialize(first_batch)` or `restore(path)`.
  """
  use_xla = accelerators.use_xla(jit_compile, strategy)
  with strategy.scope():
    model = model_fn()
    averaged_model = model_fn()
    optimizer = optimizer_cls(learning_rate=learning_rate)
    soft = (objectives.SoftFreeBits(model.num_dims, lambda_per_dim=free_bits_lambda)
            if soft_free_bits else None)
    float16 = getattr(model, 'precision', None) == precision_lib.MIXED_FLOAT16
    loss_scale = loss_scaling.DynamicLossScale() if float16 else None
  return Trainer(strategy, model, averaged_model, optimizer, global_batch_size=global_batch_size,
                 free_bits_lambda=free_bits_lambda, ema_decay=ema_decay, seed=seed,
                 soft_free_bits=soft, ema_warmup=ema_warmup, jit_compile=use_xla,
                 accumulation_steps=accumulation_steps, loss_scale=loss_scale)
