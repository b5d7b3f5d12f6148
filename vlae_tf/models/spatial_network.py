"""What the spatial (CIFAR-10) encoders and context networks share: stages of width-preserving
blocks (blocks.ResNetBlock or blocks.DenseNetBlock), made from a per-stage width and block count.
"""

import tf_keras as keras


class SpatialNetwork(keras.layers.Layer):
  """What the spatial encoders and decoders share: stages of width-preserving blocks.

  A subclass names its block class (`block_class`, `ResNetBlock` or `DenseNetBlock`) and the
  constructor arguments it passes on to every block (`block_arguments`); this class stores them,
  makes the blocks and puts them in `get_config`, so that the four CIFAR-10 networks differ only
  in their signatures and docstrings.
  """

  block_class = None
  block_arguments = ()

  def __init__(self, filters, blocks, kernel_size, use_weight_norm, **kwargs):
    block_kwargs = {name: kwargs.pop(name) for name in self.block_arguments}
    super().__init__(**kwargs)
    if len(filters) != len(blocks):
      raise ValueError(f'filters {filters} and blocks {blocks} differ in length.')
    self.filters = tuple(filters)
    self.blocks = tuple(blocks)
    self.kernel_size = kernel_size
    self.use_weight_norm = use_weight_norm
    for name, value in block_kwargs.items():
      setattr(self, name, value)

  def _make_stages(self):
    """[[block(width) for each block of the stage] for each stage]."""
    block_kwargs = {name: getattr(self, name) for name in self.block_arguments}
    return [[self.block_class(width, kernel_size=self.kernel_size,
                              use_weight_norm=self.use_weight_norm, **block_kwargs)
             for _ in range(count)] for width, count in zip(self.filters, self.blocks)]

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, blocks=self.blocks, kernel_size=self.kernel_size,
                  use_weight_norm=self.use_weight_norm,
                  **{name: getattr(self, name) for name in self.block_arguments})
    return config
