"""Tests of latent_codes.py: Gaussians and flows on the grid, in NumPy with a stand-in flow."""

import constriction
import numpy as np
import pytest

from vlae_tf.compression import latent_codes


class _LinearFlow:
  """z = A eps + 0.3 tanh(3 eps) (invertible, smooth, log|det| != 0): a stand-in flow in NumPy."""

  def __init__(self, size, seed=0):
    rng = np.random.default_rng(seed)
    self.matrix = np.eye(size) + np.tril(rng.normal(size=(size, size)) * 0.5, -1)

  def forward(self, eps):
    return eps @ self.matrix.T + 0.3 * np.tanh(3 * eps)

  def inverse_and_jacobian(self, z):
    inverse = np.linalg.inv(self.matrix)
    eps = z @ inverse.T
    for _ in range(200):  # Fixed point of eps = A^-1 (z - 0.3 tanh(3 eps)).
      eps = (z - 0.3 * np.tanh(3 * eps)) @ inverse.T
    forward_jacobian = self.matrix[None] + (0.9 * (1 - np.tanh(3 * eps) ** 2))[:, None, :] * np.eye(
        z.shape[1])[None]
    return eps, np.linalg.inv(forward_jacobian)


def test_local_bits_back_costs_the_flow_density():
  """Pushing z through a flow by local bits-back costs -log2 p(z) - D log2(step) to within 0.1 bit."""
  rng = np.random.default_rng(1)
  batch, size, precision = 64, 6, 14
  flow = _LinearFlow(size)
  lengths = latent_codes.CodeLengths()
  grid = latent_codes.Grid(precision, lengths)
  coder = constriction.stream.stack.AnsCoder(
      rng.integers(1, 2 ** 32, size=5000, dtype=np.uint32))
  z = np.rint(flow.forward(rng.normal(size=(batch, size))) / grid.step) * grid.step
  code = latent_codes.FlowCode(grid, np.zeros((batch, size)), np.ones((batch, size)), flow)
  code.push(coder, z)
  eps, jacobian = flow.inverse_and_jacobian(z)
  log2_density = (-0.5 * eps ** 2 / np.log(2) - np.log2(np.sqrt(2 * np.pi))).sum(1) + np.log2(
      np.abs(np.linalg.det(jacobian)))
  ideal = (-log2_density + size * precision).mean()
  assert abs((lengths.latent_pushed - lengths.latent_popped) / batch - ideal) < 0.1
  np.testing.assert_array_equal(code.pop(coder), z)


def test_a_value_outside_the_window_is_an_error_not_garbage():
  windowed = latent_codes.Windowed(spread=10.0)
  coder = constriction.stream.stack.AnsCoder()
  with pytest.raises(ValueError, match='standard deviations from its mean'):
    windowed.push(coder, np.array([100]), np.array([0.0]), np.array([1.0]))


@pytest.mark.parametrize('with_flow', [False, True])
def test_a_prior_codes_values_far_from_its_mass(with_flow):
  """A poorly fitted model can hand the prior a z 25+ std out: it must still round trip."""
  rng = np.random.default_rng(2)
  lengths = latent_codes.CodeLengths()
  grid = latent_codes.Grid(14, lengths)
  coder = constriction.stream.stack.AnsCoder(rng.integers(1, 2 ** 32, size=500, dtype=np.uint32))
  z = np.array([[30.0, -26.5, 0.25], [0.0, 1.0, -40.0]])
  code = latent_codes.FlowCode(grid, np.zeros(z.shape), np.ones(z.shape),
                               _LinearFlow(3) if with_flow else None)
  code.push(coder, z)
  np.testing.assert_array_equal(code.pop(coder), z)
