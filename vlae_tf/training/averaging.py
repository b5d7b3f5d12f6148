"""Polyak averaging of one model's variables into another's, on every device of a strategy.

After every optimizer step, on every device,

    average <- decay * average + (1 - decay) * weight          (trainable floating-point weights)
    average <- weight                                           (every other variable)

with decay = min(ema_decay, (1 + n) / (10 + n)) after n updates when warm-up is asked for
(tf.train.ExponentialMovingAverage's). The trainer (trainer.py) keeps the averages in a second
instance of the model and updates them in cross-replica context after each applied step.
"""

import tensorflow as tf


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
