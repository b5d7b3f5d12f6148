"""Training objectives: free bits, soft free bits, and nats <-> bits conversions.

Free bits (Kingma et al. 2016) keep the optimiser from collapsing the KL term early in training by
not charging for the first lambda nats per data dimension. The VLAE paper (Chen et al. 2017) uses
two forms:

- Binary 28x28 images: lambda = 0.01 nats per data dimension. The paper describes free bits per
  dimension; the first author's experiment scripts apply one threshold to the batch-averaged total
  KL, max(mean_batch KL, 0.01 * 784), where 784 is the number of *data* dimensions (pixels), not
  latent dimensions. `free_bits_kl` implements the scripts' form.
- CIFAR-10: "soft free bits", loss = -log p(x|z) + gamma * KL with gamma in (0, 1] adjusted by 10%
  steps so that the KL settles near lambda * num_dims (`SoftFreeBits`).
"""

import math

import gin
import tensorflow as tf


@gin.register(module='vlae_tf.objectives')
def free_bits_kl(kl_per_example, lambda_per_dim, num_dims):
  """The free-bits KL term: max(mean_batch(KL), lambda_per_dim * num_dims).

  The batch-level form of the paper's scripts: one threshold on the batch-averaged total KL per
  example. Use it in place of the KL in the loss to minimise:

      loss = mean_batch(-log p(x|z)) + free_bits_kl(kl, lambda_per_dim, num_dims)

  Gradient: d/dKL is 1/B per example when mean_batch(KL) >= threshold and exactly 0 below it
  (`tf.maximum`), so the encoder and prior are free to spend up to the threshold without cost.
  Report the unclamped KL (and the ELBO with it); the clamped value is a training device only.
  Under `tf.distribute` the mean is over the batch this call sees (the per-replica batch).

  Args:
    kl_per_example: [B] KL(q(z|x) || p(z)) in nats per example.
    lambda_per_dim: free nats per data dimension (the paper: 0.01).
    num_dims: the number of data dimensions D (784 for 28x28 images) -- data, not latent.

  Returns:
    A scalar: the clamped batch-mean KL in nats.
  """
  kl_per_example = tf.convert_to_tensor(kl_per_example, dtype_hint=tf.float32)
  threshold = tf.cast(lambda_per_dim * num_dims, kl_per_example.dtype)
  return tf.maximum(tf.reduce_mean(kl_per_example), threshold)


@gin.configurable(module='vlae_tf.objectives')
class SoftFreeBits(tf.Module):
  """Soft free bits: loss = -log p(x|z) + gamma * KL, gamma in (0, 1] adapted to a KL target.

  The paper writes the objective to maximise as recon - gamma * KL; this class works with the
  loss to minimise, -log p(x|z) + gamma * KL. A larger gamma charges more for KL and pushes the
  KL down; a smaller gamma makes KL cheaper and lets it grow. So, with target = lambda * num_dims
  nats per example, after each step (`update`, called by the training loop, never inside a
  model's call or loss):

      KL > (1 + tolerance) * target   ->  gamma <- min(gamma * rate, 1)        (KL too large)
      KL < target                     ->  gamma <- max(gamma / rate, min_gamma) (KL too small)
      otherwise                       ->  gamma unchanged

  with rate = 1.1 and tolerance = 0.05: the paper's 10% steps, raising gamma only once the KL
  exceeds its target by about 5% and lowering it whenever the KL is under the target
  (docs/paper.md, "Soft free bits"). gamma starts at 1 (the plain ELBO).

  gamma is a non-trainable float32 `tf.Variable` with aggregation ONLY_FIRST_REPLICA, so it can be
  created in a `tf.distribute` strategy scope and updated from either the cross-replica context
  (with the replica-reduced KL, preferred) or a replica context (the first replica's value wins);
  it is tracked, so checkpoints save it.

  Configure it in gin (`SoftFreeBits.rate = 1.05`, `SoftFreeBits.tolerance = 0.1`): it is a gin
  configurable, so the bindings reach the instance `trainer.make_trainer` makes with
  `train.soft_free_bits = True`; num_dims (the model's) and lambda_per_dim (`train.free_bits_lambda`)
  are passed by the factory.
  """

  def __init__(self, num_dims: int, lambda_per_dim: float = 0.01, tolerance: float = 0.05,
               rate: float = 1.1, min_gamma: float = 1e-6, name: str = 'soft_free_bits'):
    """Creates gamma = 1.

    Args:
      num_dims: the number of data dimensions D (3072 for 32x32x3 images).
      lambda_per_dim: target nats of KL per data dimension; target = lambda_per_dim * num_dims.
      tolerance: gamma goes up only when KL > (1 + tolerance) * target.
      rate: multiplicative step of gamma (> 1).
      min_gamma: floor keeping gamma > 0 (float32 would underflow to 0 after ~1000 decreases).
      name: module name.
    """
    super().__init__(name=name)
    if rate <= 1.:
      raise ValueError(f'rate must be > 1, got {rate}.')
    if not 0. < min_gamma <= 1.:
      raise ValueError(f'min_gamma must be in (0, 1], got {min_gamma}.')
    self.num_dims = num_dims
    self.lambda_per_dim = lambda_per_dim
    self.tolerance = tolerance
    self.rate = rate
    self.min_gamma = min_gamma
    with self.name_scope:
      self.gamma = tf.Variable(
          1., trainable=False, dtype=tf.float32, name='gamma',
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  @property
  def target(self) -> float:
    """The KL target in nats per example, lambda_per_dim * num_dims."""
    return self.lambda_per_dim * self.num_dims

  def loss(self, recon_nll, kl):
    """-log p(x|z) + gamma * KL, elementwise (any matching shapes), in nats."""
    return recon_nll + tf.cast(self.gamma, tf.convert_to_tensor(kl).dtype) * kl

  def update(self, kl_batch_mean):
    """Moves gamma one step towards keeping the KL at the target; returns the new gamma.

    Args:
      kl_batch_mean: scalar batch-mean KL in nats per example (unclamped).
    """
    kl = tf.cast(kl_batch_mean, tf.float32)
    factor = tf.where(kl > (1. + self.tolerance) * self.target, self.rate,
                      tf.where(kl < self.target, 1. / self.rate, 1.))
    return self.gamma.assign(
        tf.clip_by_value(self.gamma * factor, self.min_gamma, 1.))


def nats_to_bits(nats):
  """nats / log(2)."""
  return nats / math.log(2.)


def bits_per_dim(nats_per_image, num_dims):
  """Negative log-likelihood in bits per data dimension: nats / (num_dims * log(2)).

  Args:
    nats_per_image: NLL in nats per image (any shape).
    num_dims: data dimensions per image (H * W * C, e.g. 3072 for CIFAR-10).
  """
  return nats_to_bits(nats_per_image) / num_dims
