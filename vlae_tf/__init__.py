"""vlae_tf: the Variational Lossy Autoencoder (Chen et al., ICLR 2017) in TensorFlow 2.

The package uses Keras 2 through `tf_keras` everywhere: TensorFlow Probability's layers are tf_keras
layers, and a Keras 3 layer that holds them tracks none of their variables.
"""

__version__ = '0.1.0'
