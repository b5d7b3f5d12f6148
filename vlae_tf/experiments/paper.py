"""The paper's experiments and numbers (Chen et al., ICLR 2017; docs/paper.md, "Reported numbers").

`TABLES` names groups of experiment gin files (a table or an ablation each) for bin/reproduce;
`PAPER` holds what the paper reports for each experiment. Pure data: no TensorFlow, so the
binaries' --help can list the tables without loading it.
"""

import dataclasses
import math
import os
from typing import Optional


# Named groups of experiments: each a table or ablation of Chen et al. 2017 (docs/paper.md).
TABLES = {
    # Table 1 (static MNIST): the VLAE, the IAF VAE baseline, and the factorized-decoder VAE of
    # Section 5.1 (the lossy-code comparison: 19.2 vs 37.3 bits of KL).
    'mnist': ('mnist_vlae.gin', 'mnist_iaf_vae.gin', 'mnist_factorized_vae.gin'),
    # Table 3 (dynamic MNIST): AF prior, Gaussian prior, PixelCNN without z.
    'dynamic_mnist': ('dynamic_mnist_vlae.gin', 'dynamic_mnist_gaussian_prior.gin',
                      'dynamic_mnist_pixelcnn.gin'),
    # Receptive field against rate on static MNIST: the depth-limited decoder with 1, 2, 3, 6
    # and 12 masked layers (the binary counterpart of Section 5.2's window sizes).
    'mnist_windows': ('mnist_vlae_depth_1.gin', 'mnist_vlae_depth_2.gin',
                      'mnist_vlae_depth_3.gin', 'mnist_vlae_depth_6.gin',
                      'mnist_vlae_depth_12.gin'),
    'caltech101': ('caltech101_vlae.gin',),  # Table 5
    'omniglot': ('omniglot_vlae.gin',),  # Table 4
    'cifar10': ('cifar10_resnet_vlae.gin', 'cifar10_densenet_vlae.gin'),  # Table 6
    'cifar10_windows': ('cifar10_window_4x2.gin', 'cifar10_window_5x3.gin',
                        'cifar10_window_7x4.gin'),  # Section 5.2
}


@dataclasses.dataclass(frozen=True)
class PaperNumber:
  """What the paper reports for an experiment (None where it reports nothing)."""
  row: str
  nll: Optional[float] = None  # nats per image, or bits/dim for CIFAR-10 (see `unit`)
  unit: str = 'nats'
  kl_nats: Optional[float] = None


PAPER = {
    'mnist_vlae': PaperNumber('Table 1, VLAE', 79.03, kl_nats=13.3),
    'mnist_iaf_vae': PaperNumber('Table 1, IAF VAE', 79.88),
    'mnist_factorized_vae': PaperNumber('Section 5.1, factorized decoder',
                                        kl_nats=37.3 * math.log(2.0)),
    'dynamic_mnist_vlae': PaperNumber('Table 3, PixelCNN + AF prior (Table 2: 78.53)', 78.94,
                                      kl_nats=11.73),
    'dynamic_mnist_gaussian_prior': PaperNumber('Table 3, PixelCNN + Gaussian prior', 79.48,
                                                kl_nats=10.60),
    'dynamic_mnist_pixelcnn': PaperNumber('Table 3, PixelCNN without z', 87.55, kl_nats=0.0),
    'omniglot_vlae': PaperNumber('Table 4, VLAE', 90.98),
    'caltech101_vlae': PaperNumber('Table 5, VLAE', 77.36),
    'cifar10_resnet_vlae': PaperNumber('Table 6, ResNet VLAE', 3.04, 'bits/dim'),
    'cifar10_densenet_vlae': PaperNumber('Table 6, DenseNet VLAE', 2.95, 'bits/dim'),
    'cifar10_window_4x2': PaperNumber('Section 5.2, window 4x2', 3.12, 'bits/dim'),
    'cifar10_window_5x3': PaperNumber('Section 5.2, window 5x3', None, 'bits/dim'),
    'cifar10_window_7x4': PaperNumber('Section 5.2, window 7x4', 2.95, 'bits/dim'),
}


def experiment_name(gin_file: str) -> str:
  """'gin/mnist_vlae.gin' -> 'mnist_vlae'."""
  return os.path.splitext(os.path.basename(gin_file))[0]
