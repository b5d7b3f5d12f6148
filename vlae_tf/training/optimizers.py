"""Adamax whose dense update is one fused kernel per variable.

tf_keras's `Adamax.update_step` builds its dense update from about a dozen graph ops per variable
(two assigns, a maximum, an absolute value, powers, products and quotients). With ~100 variables
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
"""

import tensorflow as tf
import tf_keras as keras


class FusedAdamax(keras.optimizers.Adamax):
  """`keras.optimizers.Adamax` with one `ResourceApplyAdaMax` op per dense update."""

  def update_step(self, gradient, variable):
    if isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable)
    dtype = variable.dtype
    local_step = tf.cast(self.iterations + 1, dtype)
    beta_1_power = tf.pow(tf.cast(self.beta_1, dtype), local_step)
    index = self._index_dict[self._var_key(variable)]
    return tf.raw_ops.ResourceApplyAdaMax(
        var=variable.handle, m=self._m[index].handle, v=self._u[index].handle,
        beta1_power=beta_1_power, lr=tf.cast(self.learning_rate, dtype),
        beta1=tf.cast(self.beta_1, dtype), beta2=tf.cast(self.beta_2, dtype),
        epsilon=tf.cast(self.epsilon, dtype), grad=gradient)
