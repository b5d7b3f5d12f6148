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
run after `max_consecutive_bad_steps` of them in a row.
"""

from absl import logging
import gin
import tensorflow as tf

from vlae_tf import distribution
from vlae_tf.training import optimizers
from vlae_tf.models import vlae as model_lib
from vlae_tf.models import objectives
from vlae_tf import seeds

METRIC_KEYS = ('loss', 'elbo', 'kl', 'log_px_z', 'gradient_norm', 'kl_weight')


class ExponentialMovingAverage:
  """Polyak averaging of one model's variables into another's (same architecture, same order).

      average <- decay * average + (1 - decay) * weight     trainable floating-point variables
      average <- weight                                      every other variable

  `update()` runs in cross-replica context (after `strategy.run`): `strategy.extended.update`
  applies the assignment on every device from that device's copy of the weight, so the mirrored
  copies stay equal.
  The averages need no slot of their own in checkpoints: they are the averaged model's variables.
  """

  def __init__(self, weights, averages, decay, strategy=None):
    """Pairs the variables.

    Args:
      weights: the trained variables (`model.variables`).
      averages: the averaged model's variables, in the same order.
      decay: the Polyak decay, e.g. 0.998. `update(num_updates=n)` uses
        min(decay, (1 + n) / (10 + n)) instead (the warm-up of tf.train.ExponentialMovingAverage),
        so that early averages are not dominated by the random initial weights.
      strategy: the strategy that owns the variables (default: the current one).

    Raises:
      ValueError: when the two lists do not pair up by shape and dtype.
    """
    weights, averages = list(weights), list(averages)
    if len(weights) != len(averages):
      raise ValueError(f'{len(weights)} weights but {len(averages)} averages.')
    for weight, average in zip(weights, averages):
      if weight.shape != average.shape or weight.dtype != average.dtype:
        raise ValueError(f'Cannot average {weight.name} {weight.shape} {weight.dtype!r} into '
                         f'{average.name} {average.shape} {average.dtype!r}.')
    self.decay = float(decay)
    self.strategy = strategy or tf.distribute.get_strategy()
    self._pairs = list(zip(weights, averages))

  def _is_averaged(self, weight):
    return weight.trainable and weight.dtype.is_floating

  def copy(self):
    """average <- weight for every variable (the start of training)."""
    self._apply(lambda average, weight: average.assign(weight))

  def update(self, num_updates=None):
    """One averaging step; call in cross-replica context.

    Args:
      num_updates: the number of optimizer updates so far, for the warm-up of the decay; None:
        the constant decay.
    """
    decay = self.decay
    if num_updates is not None:
      num_updates = tf.cast(num_updates, tf.float32)
      decay = tf.minimum(decay, (1.0 + num_updates) / (10.0 + num_updates))

    def average_fn(average, weight):
      return average.assign(decay * average + (1.0 - decay) * weight)

    def copy_fn(average, weight):
      return average.assign(weight)

    strategy = self.strategy
    updates = []
    for weight, average in self._pairs:
      fn = average_fn if self._is_averaged(weight) else copy_fn
      updates.append(strategy.extended.update(average, fn, args=(weight,), group=False))
    return updates

  def _apply(self, fn):
    for weight, average in self._pairs:
      self.strategy.extended.update(average, fn, args=(weight,), group=False)


def replica_loss(outputs, global_batch_size, free_bits_lambda, num_dims, num_replicas,
                 kl_weight=None):
  """One replica's share of the global loss (see the module docstring).

  Args:
    outputs: `model.elbo` of this replica's images: dict of [b] tensors (nats per image).
    global_batch_size: B, the number of images over all replicas.
    free_bits_lambda: lambda, nats per data dimension.
    num_dims: D = H * W * C.
    num_replicas: R.
    kl_weight: None for free bits; else gamma of soft free bits, and the loss is
      sum_{B_r} (-log p(x|z) + gamma * KL) / B.

  Returns:
    The scalar loss; summed over replicas it is the global objective.
  """
  if kl_weight is not None:
    return tf.nn.compute_average_loss(-outputs['log_px_z'] + kl_weight * outputs['kl'],
                                      global_batch_size=global_batch_size)
  reconstruction = tf.nn.compute_average_loss(-outputs['log_px_z'],
                                              global_batch_size=global_batch_size)
  kl_term = objectives.free_bits_kl(outputs['kl'], free_bits_lambda, num_dims)
  return reconstruction + kl_term / num_replicas


class Trainer:
  """The inner loop: a distributed train step with free bits, Adamax and Polyak averaging.

  Create it under no scope; it enters `strategy.scope()` for its own variables. The models and the
  optimizer must have been created under the same strategy's scope.
  """

  def __init__(self, strategy, model, averaged_model, optimizer, *, global_batch_size,
               free_bits_lambda, ema_decay, seed, soft_free_bits=None, ema_warmup=False):
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

  def build(self):
    """Pairs the averaged model with the model and creates the optimizer slots.

    Call after both models have their variables (`initialize` and `restore` call it).
    """
    with self.strategy.scope():
      self.ema = ExponentialMovingAverage(self.model.variables, self.averaged_model.variables,
                                          self.ema_decay, self.strategy)
      self.optimizer.build(self.model.trainable_variables)

  def checkpoint(self):
    """The training state (one `tf.train.Checkpoint`). Data position and seeds are functions of
    `step`."""
    if self._checkpoint is None:
      state = dict(step=self.step, model=self.model, averaged_model=self.averaged_model,
                   optimizer=self.optimizer)
      if self.soft_free_bits is not None:
        state['soft_free_bits'] = self.soft_free_bits
      self._checkpoint = tf.train.Checkpoint(**state)
    return self._checkpoint

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
      self.checkpoint().restore(path).assert_existing_objects_matched()

  # Replica context.

  def _replica_gradients(self, images):
    """Loss, gradients (summed over replicas) and metric sums of one replica's images."""
    context = tf.distribute.get_replica_context()
    seed = seeds.stateless_seed(self.seed, seeds.TRAIN_SALT, self.step,
                                context.replica_id_in_sync_group)
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      outputs = self.model.elbo(images, seed, training=True)
      kl_weight = None if self.soft_free_bits is None else self.soft_free_bits.gamma
      loss = replica_loss(outputs, self.global_batch_size, self.free_bits_lambda,
                          self.model.num_dims, self.strategy.num_replicas_in_sync, kl_weight)
    gradients = tape.gradient(loss, variables)
    pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
    if len(pairs) != len(variables):
      unused = [v.name for g, v in zip(gradients, variables) if g is None]
      logging.log_first_n(logging.WARNING, 'No gradient for %s', 1, unused)
    gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, [g for g, _ in pairs])
    sums = {
        'loss': loss,
        'elbo': tf.reduce_sum(outputs['elbo']),
        'kl': tf.reduce_sum(outputs['kl']),
        'log_px_z': tf.reduce_sum(outputs['log_px_z']),
    }
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
    return gradients, sums, gradient_norm, 1 - tf.cast(finite, tf.int32)

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
    context on all-reduced values, so every replica skips or applies together.

    Returns:
      (metrics, finite): the step's metrics and a boolean scalar.
    """
    if not per_replica:
      images = distribution.split_for_replicas(self.strategy, images)
    gradients, sums, gradient_norm, not_finite = self.strategy.run(
        self._replica_compute, args=(images,))
    # Equal on every replica already; the reduction makes one cross-replica boolean of it.
    finite = tf.equal(self.strategy.reduce(
        tf.distribute.ReduceOp.SUM, not_finite, axis=None), 0)
    metrics = self._reduce(sums, gradient_norm)

    def apply():
      self.strategy.run(self._replica_apply, args=(gradients,))
      self.ema.update(self.optimizer.iterations if self.ema_warmup else None)
      if self.soft_free_bits is not None:
        with tf.control_dependencies([metrics['kl_weight']]):
          self.soft_free_bits.update(metrics['kl'])
      return tf.constant(True)

    with tf.control_dependencies([tf.cond(finite, apply, lambda: tf.constant(False))]):
      self.consecutive_bad_steps.assign(
          tf.where(finite, tf.constant(0, tf.int64), self.consecutive_bad_steps + 1))
      self.step.assign_add(1)
    return metrics, finite

  def _train_loop_fn(self, iterator, num_steps, max_consecutive_bad_steps):
    # An explicit while loop, traced without autograph (see __init__): the loop stops after
    # num_steps, or after a step that brings consecutive_bad_steps to the limit.
    per_replica = isinstance(iterator, tf.distribute.DistributedIterator)

    def more(index, totals, good, bad):  # pylint: disable=unused-argument
      return (index < num_steps) & (
          (index == 0) | (self.consecutive_bad_steps < max_consecutive_bad_steps))

    def step(index, totals, good, bad):
      metrics, finite = self.train_step(next(iterator), per_replica)
      totals = {key: totals[key] + tf.where(finite, tf.cast(metrics[key], tf.float32), 0.0)
                for key in METRIC_KEYS}
      finite = tf.cast(finite, tf.float32)
      return index + 1, totals, good + finite, bad + 1.0 - finite

    start = (tf.constant(0), {key: tf.constant(0.0) for key in METRIC_KEYS}, tf.constant(0.0),
             tf.constant(0.0))
    _, totals, good, bad = tf.while_loop(more, step, start)
    means = {key: value / good for key, value in totals.items()}  # NaN when no step was good.
    means['bad_steps'] = bad
    return means

  def train_loop(self, iterator, num_steps, max_consecutive_bad_steps=None):
    """Runs up to `num_steps` steps in one tf.function.

    `iterator` gives global batches, or per-replica batches when it is a
    `tf.distribute.DistributedIterator` (`batching.per_worker_batches`).

    Stops early once `max_consecutive_bad_steps` consecutive steps were skipped (None: never).

    Returns:
      The metrics averaged over the applied (finite) steps, and `bad_steps`, the number of skipped
      steps (numpy floats).
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
    model_fn: makes the model (called twice: the trained model and its averaged copy).
    optimizer_cls: a tf_keras optimizer class, called with `learning_rate` (default: Adamax with
      a fused update, `optimizers.FusedAdamax`).

  Returns:
    A `Trainer` without variables yet: call `initialize(first_batch)` or `restore(path)`.
  """
  with strategy.scope():
    model = model_fn()
    averaged_model = model_fn()
    optimizer = optimizer_cls(learning_rate=learning_rate)
    soft = (objectives.SoftFreeBits(model.num_dims, lambda_per_dim=free_bits_lambda)
            if soft_free_bits else None)
  return Trainer(strategy, model, averaged_model, optimizer, global_batch_size=global_batch_size,
                 free_bits_lambda=free_bits_lambda, ema_decay=ema_decay, seed=seed,
                 soft_free_bits=soft, ema_warmup=ema_warmup)
