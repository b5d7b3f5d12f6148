"""Distribution: the strategy, a global batch split across replicas, evaluation on every replica.

    make_strategy()            MultiWorkerMirroredStrategy when TF_CONFIG is set, else
                               MirroredStrategy over the local devices (gin: make_strategy.devices)
    split_for_replicas(s, x)   replica r of R gets rows [r * B / R, (r + 1) * B / R) of a global
                               batch of B (evaluation: every worker holds the same global batch)
    DistributedEvaluator       sums and sums of squares of per-image statistics over a dataset of
                               (images, weights) batches (`batching.padded_batches`), every replica
                               on its share; seeds depend on (seed, salt, batch, replica) only
    means_from_sums            means and standard errors from those sums
    is_chief, num_workers, agree_across_workers
                               what the outer loop needs to run the same steps on every worker
    PEER_FAILURES, lost_worker_error
                               what the collective ops raise when a worker is gone, and the one
                               line that names it

A lost worker. MultiWorkerMirroredStrategy starts TensorFlow's coordination service (the chief leads
it; every task sends it heartbeats) and aborts every pending and later collective op of a task when
a peer fails: a peer that dies is seen at once through its closed connections (UNAVAILABLE:
"Connection reset by peer", in the next all-reduce of a step or of the agreement between chunks), a
peer that stops answering through the missed heartbeats of the coordination service. The surviving
workers then raise `LostWorkerError`, one line naming the lost task and the newest checkpoint;
restarting every worker resumes from it (the data order and the seeds are functions of the step).
Measured on a loaded 2-core machine, two local workers: 4-19 s from SIGKILL to the survivor's exit,
13-21 s from SIGSTOP (of worker 0 or 1); tests/behaviour/multiworker_test.py holds it to 60 s. No timeout is
set on the collective ops (`CommunicationOptions(timeout_seconds=...)`): it would also fire on a
live but slow peer (the first step's tracing alone differs by tens of seconds between workers on a
busy machine), and the heartbeats already bound the wait for a dead one.
"""

import math
import os
import re

import gin
import numpy as np
import tensorflow as tf

from vlae_tf import errors
from vlae_tf import seeds

# What the collective ops of a multi-worker strategy raise once a peer is gone (aborted by a closed
# connection or by the coordination service) or unreachable.
PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                 tf.errors.AbortedError)


@gin.configurable
def make_strategy(devices=None):
  """The strategy: multi-worker when TF_CONFIG is set, else mirrored over the local devices.

  On CPU-only devices the replicas reduce through one device (`ReductionToOneDevice`) instead of
  collective ops: every `MirroredStrategy` numbers its collective instances from the same start,
  so two CPU strategies in one process (tests, notebooks) that all-reduce tensors of different
  shapes would collide ("Shape mismatch in the collective instance").

  Args:
    devices: local devices for `MirroredStrategy` (default: every GPU, else every CPU device).

  Returns:
    A `tf.distribute.Strategy`.
  """
  if os.environ.get('TF_CONFIG'):
    return tf.distribute.MultiWorkerMirroredStrategy()
  if devices is None:  # MirroredStrategy's default: every GPU, else the first CPU.
    on_cpu = not tf.config.list_logical_devices('GPU')
  else:
    on_cpu = all(tf.DeviceSpec.from_string(d).device_type == 'CPU' for d in devices)
  # One strategy object (each logs a "Using MirroredStrategy" line).
  return tf.distribute.MirroredStrategy(
      devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice() if on_cpu else None)


def split_for_replicas(strategy, tensors):
  """Distributes a global batch (a nest of [B, ...] tensors): replica r gets rows [r*b, (r+1)*b).

  Every worker holds the same global batch, so this also works for multi-worker strategies.
  """
  num_replicas = strategy.num_replicas_in_sync
  first = tf.nest.flatten(tensors)[0]
  batch = first.shape[0]
  if batch is None:  # Known at run time only.
    batch = tf.shape(first)[0]
    with tf.control_dependencies([tf.debugging.assert_equal(
        batch % num_replicas, 0, message='The global batch must be a multiple of the number of '
        'replicas.')]):
      per_replica = tf.identity(batch // num_replicas)
  elif batch % num_replicas:
    raise ValueError(f'The global batch ({batch}) must be a multiple of the number of replicas '
                     f'({num_replicas}).')
  else:
    per_replica = batch // num_replicas

  def value_fn(context):
    start = context.replica_id_in_sync_group * per_replica
    return tf.nest.map_structure(lambda t: t[start:start + per_replica], tensors)

  return strategy.experimental_distribute_values_from_function(value_fn)


class DistributedEvaluator:
  """Weighted sums of per-image statistics over a dataset, computed on every replica.

  `statistics_fn(images, seed)` maps [b, H, W, C] images and an int32 [2] seed to a dict of [b]
  tensors. `__call__` returns, for every key, the sum and the sum of squares over the real images,
  and the number of images. Seeds depend on (seed, salt, batch index, replica id) only.

  With `per_example=True`, `__call__` returns (totals, {key: float64 [N] array}): the value of every
  real image too, in dataset order (for paired comparisons of two models on the same images).

  With `per_image_seeds=True`, batches are (images, weights, indices) and `statistics_fn` gets a
  seed per image, int32 [b, 2], a function of (seed, salt, the image's index) only: an image's
  values do not depend on its batch, its replica or the number of replicas (but for float
  round-off), so an evaluation can stop and continue at any batch (evaluation/evaluator.py).

  With `jit_compile=True`, `statistics_fn` runs on every replica as one XLA computation
  (accelerators.py); the reductions across replicas stay outside it.
  """

  def __init__(self, strategy, statistics_fn, seed=0, salt=seeds.VALIDATION_SALT,
               per_example=False, per_image_seeds=False, jit_compile=False):
    self.strategy = strategy
    self._statistics_fn = (tf.function(statistics_fn, jit_compile=True, autograph=False)
                           if jit_compile else statistics_fn)
    self._seed = int(seed)
    self._salt = salt
    self._per_example = per_example
    self._per_image_seeds = per_image_seeds
    # Without autograph (as the trainer's step): `statistics_fn` must use tf.while_loop or
    # tf.cond for control flow on tensors, as the VLAE's elbo and log_likelihood do.
    self._step = tf.function(self._step_fn, autograph=False)

  def _replica_fn(self, images, weights, batch_index, indices=None):
    if indices is not None:
      seed = seeds.per_image_seeds(self._seed, self._salt, indices)
    else:
      context = tf.distribute.get_replica_context()
      seed = seeds.stateless_seed(self._seed, self._salt, batch_index,
                                  context.replica_id_in_sync_group)
    statistics = self._statistics_fn(images, seed)
    sums, values = {}, {}
    for key, value in statistics.items():
      value = tf.cast(value, tf.float32)
      sums[key] = tf.reduce_sum(value * weights)
      sums[key + '/squares'] = tf.reduce_sum(tf.square(value) * weights)
      values[key] = value
    sums['count'] = tf.reduce_sum(weights)
    values['weights'] = weights
    return sums, values

  def _step_fn(self, images, weights, batch_index, indices=None):
    if indices is None:
      args = split_for_replicas(self.strategy, (images, weights)) + (batch_index,)
    else:
      images, weights, indices = split_for_replicas(self.strategy, (images, weights, indices))
      args = (images, weights, batch_index, indices)
    per_replica_sums, per_replica_values = self.strategy.run(self._replica_fn, args=args)
    sums = {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for key, value in per_replica_sums.items()}
    if not self._per_example:
      return sums, {}
    # Replica r holds rows [r * b, (r + 1) * b) of the global batch: gathering restores the order.
    return sums, {key: self.strategy.gather(value, axis=0)
                  for key, value in per_replica_values.items()}

  def evaluate_batch(self, batch, index):
    """One batch: (sums as floats, {key: float64 [n] values of its n real images}); `batch` is
    (images, weights) or, with `per_image_seeds`, (images, weights, indices)."""
    sums, batch_values = self._step(*batch[:2], tf.constant(index, tf.int64), *batch[2:])
    sums = {key: float(value) for key, value in sums.items()}
    if not batch_values:
      return sums, {}
    real = batch_values.pop('weights').numpy() > 0
    return sums, {key: value.numpy().astype(np.float64)[real]
                  for key, value in batch_values.items()}

  def __call__(self, batches, progress=None):
    """Accumulates over `batches` of (images, weights), or of (images, weights, indices) with
    `per_image_seeds`; `progress(count)` after every batch."""
    totals = {}
    values = {}
    self.interrupted = False
    try:
      for index, batch in enumerate(batches):
        sums, batch_values = self.evaluate_batch(batch, index)
        for key, value in sums.items():
          totals[key] = totals.get(key, 0.0) + value
        for key, value in batch_values.items():
          values.setdefault(key, []).append(value)
        if progress is not None:
          progress(int(totals['count']))
    except KeyboardInterrupt:
      # Ctrl-C: with `partial_on_interrupt`, the sums of the batches done so far (`interrupted`).
      if not (getattr(self, 'partial_on_interrupt', False) and totals.get('count')):
        raise
      self.interrupted = True
    if not self._per_example:
      return totals
    return totals, {key: np.concatenate(parts) for key, parts in values.items()}


def means_from_sums(totals):
  """{key: mean} and {key: standard error of the mean} from `DistributedEvaluator` sums."""
  count = max(totals.get('count', 0.0), 1.0)
  means, errors = {}, {}
  for key, value in totals.items():
    if key == 'count' or key.endswith('/squares'):
      continue
    mean = value / count
    variance = max(totals[key + '/squares'] / count - mean**2, 0.0)
    means[key] = mean
    errors[key] = math.sqrt(variance / count)
  return means, errors


def is_chief(strategy):
  """Whether this task writes the run directory: the chief, else worker 0, else the only task."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type == 'chief':
    return True
  return (task_type == 'worker' and task_id == 0 and
          'chief' not in resolver.cluster_spec().as_dict())


def num_workers(strategy):
  """The number of worker tasks (chief included) of a multi-worker strategy; 1 otherwise."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None:
    return 1
  cluster = resolver.cluster_spec().as_dict()
  return max(sum(len(cluster.get(job, ())) for job in ('chief', 'worker')), 1)


def agree_across_workers(strategy, num_steps, stop):
  """(chunk length, stop) that every worker takes: the workers' mean length, and stop if any asks.

  Each worker times its own chunks and receives its own signals, but collective ops need every
  worker to run the same steps: one all-reduce of two numbers per chunk settles both.
  """
  local = tf.constant([float(num_steps), 1.0 if stop else 0.0])
  mean = strategy.reduce(
      tf.distribute.ReduceOp.MEAN,
      strategy.experimental_distribute_values_from_function(lambda _: local), axis=None).numpy()
  return max(int(mean[0]), 1), bool(mean[1] > 0.0)


def lost_worker_error(error, strategy, model_dir):
  """The `LostWorkerError` of a collective op's `error` (one of `PEER_FAILURES`) in one line.

  The lost task is the remote target of the failed call, else another task the message names,
  else, when this task's heartbeats to the coordination service timed out, the service's leader
  (the chief, or worker 0). The line ends with the newest checkpoint to resume from.
  """
  resolver = strategy.cluster_resolver
  cluster = resolver.cluster_spec().as_dict()
  own = (resolver.task_type, int(resolver.task_id))
  message = error.message or str(error)
  task = r'/job:(\w+)(?:/replica:\d+)?/task:(\d+)'
  named = re.findall('remote target ' + task, message) + re.findall(task, message)
  peers = [(job, int(index)) for job, index in named if (job, int(index)) != own]
  if not peers and 'CoordinationService/Heartbeat' in message:
    peers = [('chief', 0) if 'chief' in cluster else ('worker', 0)]
  if peers:
    job, index = peers[0]
    addresses = cluster.get(job, [])
    lost = f'{job} {index}' + (f' ({addresses[index]})' if index < len(addresses) else '')
  else:
    lost = 'a peer task (not named by the error)'
  latest = tf.train.latest_checkpoint(model_dir)
  resume = (f'restart every worker with the same command to resume from {latest}' if latest else
            'no checkpoint was saved yet: restart every worker with the same command')
  return errors.LostWorkerError(f'Lost {lost}: this {own[0]} {own[1]} stopped '
                                f'({type(error).__name__}: {_status_reason(message)}); {resume}.')


def _status_reason(message):
  """The reason of a runtime error's message: without the op's stack, node and GRPC details."""
  if 'Detected at node' in message:  # Graph execution error: the reason follows the stack.
    message = re.split(r'\n\s*File "[^\n]*\n', message)[-1]
  for noise in (r'\[\[.*?\]\]', r'\[Op:[^\]]*\]', r'\[type\.googleapis[^\]]*\]',
                r'\{\{[^}]*\}\}', r'Additional GRPC error information.*',
                r'The tasks have crashed.*', r'The error could be from a previous operation.*'):
    message = re.sub(noise, ' ', message, flags=re.DOTALL)
  reason = ' '.join(message.split()).rstrip(' .') or 'no reason given'
  return reason if len(reason) <= 200 else reason[:197] + '...'
