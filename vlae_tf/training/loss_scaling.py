"""Dynamic loss scaling for float16 training (`VLAE.precision = 'mixed_float16'`).

float16 has 5 exponent bits: gradients below 2^-24 flush to zero in the float16 backward pass of
the convolutions. The trainer differentiates `loss * scale` instead of `loss` and divides the
(float32) gradients by `scale` after the all-reduce, so that small gradients survive the float16
layers. The scale follows tf_keras's `LossScaleOptimizer` (and Micikevicius et al., "Mixed
Precision Training", ICLR 2018):

    a step whose scaled gradients are finite        good_steps += 1; after `growth_steps` of them
                                                    in a row, scale *= multiplier (if finite)
    a step whose gradients overflow (inf or NaN)    skipped (weights, optimizer, averages
    while its loss is finite and scale > 1          untouched), scale /= multiplier

The trainer does not count such an overflow as one of the run's bad steps (`max_consecutive_bad_
steps`): it is the scale searching for the float16 range. A step whose loss itself is not finite,
or whose gradients are not finite at the smallest scale (1), is a bad step as in float32.

The scale and its counter are checkpointed (under `loss_scale`), so a resumed run continues with
the scale the interrupted one had, and reaches the same weights.
"""

import tensorflow as tf

INITIAL_SCALE = 2.0**15  # tf_keras LossScaleOptimizer's initial_scale
GROWTH_STEPS = 2000  # its dynamic_growth_steps
MULTIPLIER = 2.0
MINIMUM_SCALE = 1.0


class DynamicLossScale(tf.Module):
  """The loss scale of a float16 run: two variables, updated in cross-replica context.

  Create it under the strategy's scope (its variables are mirrored like the model's).
  """

  def __init__(self, initial_scale=INITIAL_SCALE, growth_steps=GROWTH_STEPS,
               multiplier=MULTIPLIER, name='loss_scale'):
    super().__init__(name=name)
    self.growth_steps = int(growth_steps)
    self.multiplier = float(multiplier)
    aggregation = tf.VariableAggregation.ONLY_FIRST_REPLICA
    self.scale = tf.Variable(float(initial_scale), dtype=tf.float32, trainable=False,
                             name='scale', aggregation=aggregation)
    self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name='good_steps',
                                  aggregation=aggregation)

  def above_minimum(self):
    """Whether halving the scale can still cure an overflow (a boolean scalar)."""
    return self.scale > MINIMUM_SCALE

  def update(self, finite):
    """After a step: grow the scale after `growth_steps` finite steps, halve it on an overflow.

    Args:
      finite: whether the step's gradients were finite (a boolean scalar, cross-replica).

    Returns:
      The assignments (run them in cross-replica context).
    """
    grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_steps)
    # Never to infinity (2^127 * 2 in float32): an infinite scale would overflow every step.
    grow = tf.logical_and(grow, tf.math.is_finite(self.scale * self.multiplier))
    scale = tf.where(finite, tf.where(grow, self.scale * self.multiplier, self.scale),
                     tf.maximum(self.scale / self.multiplier, MINIMUM_SCALE))
    good_steps = tf.where(tf.logical_and(finite, tf.logical_not(grow)), self.good_steps + 1,
                          tf.constant(0, tf.int64))
    return tf.group(self.scale.assign(scale), self.good_steps.assign(good_steps))
