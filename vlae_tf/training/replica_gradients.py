"""One replica's loss and gradients: its share of the free-bits objective, under a loss scale,
summed over micro-batches.

    replica_loss         the share of the global loss that one replica (or micro-batch) computes
    loss_and_gradients   that loss's gradients for the model's trainable variables (the unit the
                         trainer compiles with XLA: no synchronization inside)
    accumulate           `loss_and_gradients` summed over k micro-batches in a tf.while_loop

With R replicas and k micro-batches per replica, the global batch of B images is R k parts of
B / (R k); part p computes

    loss_p = sum_{i in B_p} -log p(x_i | z_i) / B  +  max(mean_{i in B_p} KL_i, lambda * D) / (R k)

(trainer.py's objective with R k replicas), so that the sum over parts is the global objective and
its gradient the sum of the parts' gradients: accumulated steps equal unaccumulated ones of the
same global batch on R k replicas, and on R replicas whenever the parts are on the same side of the
free-bits threshold (always with soft free bits, which are linear in the KL).
"""

import tensorflow as tf

from vlae_tf.models import objectives


def replica_loss(outputs, global_batch_size, free_bits_lambda, num_dims, num_replicas,
                 kl_weight=None):
  """One replica's share of the global loss (see the module docstring).

  Args:
    outputs: `model.elbo` of this replica's images: dict of [b] tensors (nats per image).
    global_batch_size: B, the number of images over all replicas.
    free_bits_lambda: lambda, nats per data dimension.
    num_dims: D = H * W * C.
    num_replicas: the number of parts of the global batch (R, or R k with accumulation).
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


def loss_and_gradients(model, images, seed, *, global_batch_size, free_bits_lambda, num_parts,
                       kl_weight=None, loss_scale=None):
  """The loss of `images` as one of `num_parts` parts of the global batch, and its gradients.

  Args:
    model: the trained model (`elbo(images, seed, training=True)`).
    images: this part's images.
    seed: int32 [2], the part's stateless seed.
    global_batch_size: B.
    free_bits_lambda: lambda, nats per data dimension.
    num_parts: R, or R k with k micro-batches per replica.
    kl_weight: gamma of soft free bits, or None for free bits.
    loss_scale: a float32 scalar (the dynamic loss scale of float16 layers), or None: the
      gradients are those of loss * loss_scale.

  Returns:
    (gradients, sums): one gradient per trainable variable (None where unused, scaled by
    `loss_scale`), and the part's loss and summed `elbo`, `kl`, `log_px_z`.
  """
  variables = model.trainable_variables
  with tf.GradientTape() as tape:
    outputs = model.elbo(images, seed, training=True)
    loss = replica_loss(outputs, global_batch_size, free_bits_lambda, model.num_dims, num_parts,
                        kl_weight)
    scaled = loss if loss_scale is None else loss * loss_scale
  gradients = tape.gradient(scaled, variables)
  sums = {
      'loss': loss,
      'elbo': tf.reduce_sum(outputs['elbo']),
      'kl': tf.reduce_sum(outputs['kl']),
      'log_px_z': tf.reduce_sum(outputs['log_px_z']),
  }
  return gradients, sums


def accumulate(fn, images, seed, num_micro_batches, num_parts):
  """`fn(part, part_seed, num_parts)` summed over `num_micro_batches` micro-batches of `images`.

  Micro-batch m holds rows [m b / k, (m + 1) b / k) of the b images and draws its noise with
  fold_in(seed, m). `fn` is traced once before the loop (which also tells which gradients are
  None) and once in the body of a tf.while_loop: pass a tf.function so that its graph is one.

  Returns:
    (gradients, sums) as `loss_and_gradients`, summed.
  """
  k = int(num_micro_batches)
  parts = tf.reshape(images, [k, -1] + images.shape[1:].as_list())

  def part_seed(m):
    return tf.random.experimental.stateless_fold_in(seed, m)

  first, sums = fn(parts[0], part_seed(0), num_parts)
  used = [g is not None for g in first]

  def body(m, totals, sums):
    gradients, part_sums = fn(parts[m], part_seed(m), num_parts)
    gradients = [g for g, u in zip(gradients, used) if u]
    return (m + 1, [t + g for t, g in zip(totals, gradients)],
            {key: sums[key] + part_sums[key] for key in sums})

  _, totals, sums = tf.while_loop(lambda m, *_: m < k, body,
                                  (tf.constant(1), [g for g in first if g is not None], sums))
  totals = iter(totals)
  return [next(totals) if u else None for u in used], sums
