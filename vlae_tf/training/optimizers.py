"""Adamax whose dense update is one fused kernel per variable.

tf_keras's `Adamax.update_step` builds its dense update from 30 graph ops per variable, constants
and casts included (two assigns, a maximum, an absolute value, powers, products and quotients;
tests/training/optimizers_test.py counts them, tf_keras 2.21). With ~100 variables
that is over a thousand ops in every trained step's graph, which TensorFlow must trace, optimize
and instantiate before the first step, and which run one kernel at a time afterwards.
`FusedAdamax` computes the same update with `tf.raw_ops.ResourceApplyAdaMax`, the kernel that
Keras's legacy (optimizer_v2) Adamax used:

    m <- beta_1 * m + (1 - beta_1) * g
    u <- max(beta_2 * u, |g|)
    w <- w - lr / (1 - beta_1^t) * m / (u + epsilon)

It keeps tf_keras's slot variables (`m`, `u`), iteration counter and checkpoint layout, so runs
and checkpoints of either class restore into the other; results agree to rounding (the kernel
groups the products differently). Sparse gradients (`tf.IndexedSlices`) take tf_keras's own path.

The scalars of a step (beta_1^t, the learning rate and the betas in the variable's dtype) are
computed once per device and dtype in each `apply_gradients`, as the legacy optimizer's
`_prepare` did, instead of once per variable: 4 ops per variable instead of 30.
"""

import tensorflow as tf
import tf_keras as keras


class FusedAdamax(keras.optimizers.Adamax):
  """`keras.optimizers.Adamax` with one `ResourceApplyAdaMax` op per dense update."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._step = _StepScalars()  # Not an attribute Keras tracks (nor checkpoints).

  def _distributed_apply_gradients_fn(self, distribution, grads_and_vars, **kwargs):
    # tf_keras's cross-replica part of apply_gradients: once per step, whatever the replicas.
    self._step.scalars = {}
    try:
      return super()._distributed_apply_gradients_fn(distribution, grads_and_vars, **kwargs)
    finally:
      self._step.scalars = None

  def _scalars(self, variable):
    """beta_1^t, lr, beta_1, beta_2 and epsilon in the variable's dtype, on its device."""
    cache, key = self._step.scalars, (variable.device, variable.dtype)
    if cache is not None and key in cache:
      return cache[key]
    dtype = variable.dtype
    local_step = tf.cast(self.iterations + 1, dtype)
    scalars = dict(beta1_power=tf.pow(tf.cast(self.beta_1, dtype), local_step),
                   lr=tf.cast(self.learning_rate, dtype), beta1=tf.cast(self.beta_1, dtype),
                   beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype))
    if cache is not None:
      cache[key] = scalars
    return scalars

  def update_step(self, gradient, variable):
    if isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable)
    index = self._index_dict[self._var_key(variable)]
    return tf.raw_ops.ResourceApplyAdaMax(
        var=variable.handle, m=self._m[index].handle, v=self._u[index].handle, grad=gradient,
        **self._scalars(variable))


class _StepScalars:
  """{(device, dtype): the step's scalars} during one apply_gradients, else None."""

  def __init__(self):
    self.scalars = None
