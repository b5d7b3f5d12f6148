"""The 8-bit portable codec's prior: conv_flows.ConvAutoregressiveFlowPrior (affine: shifts and
scales) on the latent grid, exact, with bits-back for the scales.

A shift-only flow is a bijection of the grid (integer_networks.Flow). A scale is not: y = s x
maps the grid onto a grid of step s. Each affine step becomes a bijection of (grid value, a
uniform remainder) pairs instead (the "modular affine transformation" of iFlow, Zhang et al.,
NeurIPS 2021, and of local bits-back coding, Ho et al. 2019): with s = R / S, S = 2^16 and R =
round(s * 2^16) from the `decimal` exp table (mixture_masses.inverse_scale_table), t the shift on
the grid, element by element,

    decode (x -> y, eps towards z):  pop u ~ U[0, R);  v = R x + u;
                                     y = floor(v / S) + t;  push r = v mod S ~ U[0, S)
    encode (y -> x, z towards eps):  pop r ~ U[0, S);  v = S (y - t) + r;
                                     x = floor(v / R);      push u = v mod R ~ U[0, R)

R x + u = S (y - t) + r is one integer v, so each is the other's exact inverse, and a step costs
log2 R - log2 S = log2 s bits net (up to constriction's uniform quantization at 2^-24): with
the base masses of eps, -log2 P(z) = -log2 P_base(eps) + sum log2 s, the flow's own density on
the grid, with no Jacobian matrix, no float and no local noise.

The scale of element i depends on the elements before it (MAF semantics: y_i = x_i s_i(y_<i) +
t_i(y_<i)). Encoding knows y: one network pass gives every s_i, t_i, and the elements are coded
last to first; decoding computes y element by element (one pass per element and step, as the
float sampler), first to last, popping in the reverse of the pushes. Steps alternate order as the
float prior's (odd steps see the latent reversed on all three axes).

The network (conv_flows.MaskedConvShiftAndLogScale): masked k x k 'SAME' convolutions with ELU
between, [shift, raw log-scale] per element, log_scale = 3 tanh(raw / 3) (flows.soft_clamp_log_
scale, by exact integer division and the tanh table), all at F = 12 = the grid.
"""

import numpy as np

from vlae_tf import errors
from vlae_tf.compression import fixed_point as fxp
from vlae_tf.compression import mixture_masses
from vlae_tf.models import flows

SCALE_BITS = mixture_masses.INVERSE_SCALE_BITS   # s = R / 2^16.
_UNIFORM_LIMIT = 1 << 24                          # constriction's largest uniform alphabet.


class _MaskedNetwork:
  """conv_flows.MaskedConvShiftAndLogScale in fixed point: z [B, H, W, C] (grid integers) ->
  (shift in grid units, R = exp(log_scale) at 2^-16), each [B, H, W, C] int64."""

  def __init__(self, network):
    if network.activation != 'elu' or network.params != 2:
      raise errors.UnsupportedModelError(
          'the portable codec implements the affine conv AF prior with ELUs (shift_only=False).')
    self.convs = [fxp.Conv(np.asarray(kernel.numpy(), np.float64) * mask, bias.numpy())
                  for kernel, bias, mask in zip(network.kernels, network.biases,
                                                network._masks)]  # pylint: disable=protected-access

  def __call__(self, z):
    x = np.asarray(z, np.float64)
    for index, conv in enumerate(self.convs):
      x = conv(x)
      if index + 1 < len(self.convs):
        x = fxp.elu(x)
    params = x.reshape(*x.shape[:-1], -1, 2)  # [B, H, W, C, 2]
    bound = int(flows.LOG_SCALE_BOUND)
    log_scale = bound * fxp.tanh(np.floor_divide(params[..., 1], bound))
    # exp(log_scale) at 2^-16: the table holds exp(7 - j / 2^12) at j = 7 * 2^12 - log_scale.
    index = (-mixture_masses.MIN_LOG_SCALE * fxp.ONE - log_scale).astype(np.int64)
    scale = mixture_masses.inverse_scale_table()[index]
    return params[..., 0].astype(np.int64), np.clip(scale, 1, _UNIFORM_LIMIT)


def _flip(x):
  return np.ascontiguousarray(x[:, ::-1, ::-1, ::-1])


class ConvFlowPrior:
  """The conv AF prior on the grid: `encode` z -> eps and `decode` eps -> z on an ANS stack."""

  def __init__(self, prior):
    if float(flows.LOG_SCALE_BOUND) != int(flows.LOG_SCALE_BOUND):
      raise errors.UnsupportedModelError('the portable codec needs an integer log-scale bound.')
    self.networks = [_MaskedNetwork(network) for network in prior.networks]
    self.latent_shape = tuple(prior.latent_shape)
    self._uniform = None

  def _model(self):
    if self._uniform is None:
      import constriction  # pylint: disable=g-import-not-at-top
      self._uniform = constriction.stream.model.Uniform()
    return self._uniform

  def encode(self, coder, z):
    """eps = f^-1(z) [B, H, W, C] int64, with each step's remainders swapped on `coder`.

    Returns:
      (eps, bits pushed, bits popped): the ideal information of the uniforms.
    """
    y = np.asarray(z, np.int64)
    pushed = popped = 0.0
    model, divisor = self._model(), np.int64(1 << SCALE_BITS)
    for step in reversed(range(len(self.networks))):
      reverse = step % 2 == 1
      y = _flip(y) if reverse else y
      shift, scale = self.networks[step](y)
      flat_y, flat_t, flat_r = (a.reshape(len(a), -1) for a in (y, shift, scale))
      x = np.zeros_like(flat_y)
      for i in reversed(range(flat_y.shape[1])):
        sizes = np.full(len(flat_y), divisor, np.int32)
        remainder = coder.decode(model, sizes).astype(np.int64)
        value = divisor * (flat_y[:, i] - flat_t[:, i]) + remainder
        x[:, i] = np.floor_divide(value, flat_r[:, i])
        coder.encode_reverse((value - x[:, i] * flat_r[:, i]).astype(np.int32), model,
                             flat_r[:, i].astype(np.int32))
      pushed += float(np.log2(flat_r).sum())
      popped += SCALE_BITS * flat_y.size
      y = x.reshape(y.shape)
      y = _flip(y) if reverse else y
    return y, pushed, popped

  def decode(self, coder, eps):
    """z = f(eps) [B, H, W, C] int64: the inverse of `encode` on the stack it left."""
    x = np.asarray(eps, np.int64)
    model, divisor = self._model(), np.int64(1 << SCALE_BITS)
    for step, network in enumerate(self.networks):
      reverse = step % 2 == 1
      x = _flip(x) if reverse else x
      flat_x = x.reshape(len(x), -1)
      y = np.zeros_like(x)
      flat_y = y.reshape(len(y), -1)  # A view: the network sees every element decoded so far.
      for i in range(flat_x.shape[1]):
        shift, scale = (a.reshape(len(a), -1)[:, i] for a in network(y))
        remainder = coder.decode(model, scale.astype(np.int32)).astype(np.int64)
        value = scale * flat_x[:, i] + remainder
        flat_y[:, i] = np.floor_divide(value, divisor) + shift
        coder.encode_reverse((value % divisor).astype(np.int32), model,
                             np.full(len(x), divisor, np.int32))
      x = _flip(y) if reverse else y
    return x
