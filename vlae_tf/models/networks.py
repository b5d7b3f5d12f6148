"""ResNet / DenseNet encoders (encoders.py) and upsampling context networks (context_networks.py).

Every convolution and dense layer of these networks goes through `weight_norm.wn(layer)`: weight
normalization (Salimans and Kingma 2016) with data-dependent initialization, as in the paper
("weight normalization with data-dependent init everywhere"); build and initialize a network with
`weight_norm.initialize(network, first_batch)` (weight_norm.py has the contract). Conventions
shared by all networks:

* Pre-activation streams. The tensor passed between blocks is a pre-activation; every convolution
  that reads it applies ELU first: `conv(elu(x))`. Only the stem (which reads the image, or z) is
  applied to its raw input.
* Blocks (blocks.py): `ResNetBlock`, y = x + 0.1 * conv_2(elu(conv_1(elu(x)))), and
  `DenseNetBlock`, both width-preserving.
* Downsampling: a stride-2 k x k convolution with 'same' padding, `conv(elu(x))`; a side of n
  pixels becomes ceil(n / 2) (28 -> 14 -> 7 -> 4, 12 -> 6 -> 3 -> 2, 5 -> 3 -> 2), so every image
  size works.
* Upsampling (`blocks.Upsample`): a stride-2 transposed convolution cropped to the target size.
  Decoders take the target image size (`output_shape`) and derive every intermediate size by the
  same ceil-halving as the encoders, so decoder stages have the encoder's sizes, in reverse.

This module names them all (`networks.BinaryResNetEncoder`, ...): their gin names
(`networks.BinaryResNetEncoder`, module 'vlae_tf.networks') and Keras serialization names
(package 'vlae_tf.networks') are those of this module, where they were first defined.
"""

# pylint: disable=unused-import
from vlae_tf.models.context_networks import BinaryResNetDecoder
from vlae_tf.models.context_networks import SpatialDenseNetDecoder
from vlae_tf.models.context_networks import SpatialResNetDecoder
from vlae_tf.models.encoders import BinaryResNetEncoder
from vlae_tf.models.encoders import EncoderOutput
from vlae_tf.models.encoders import SpatialDenseNetEncoder
from vlae_tf.models.encoders import SpatialResNetEncoder
# pylint: enable=unused-import
