"""Keras layers the networks are built from: masked convolutions with exact windows, weight norm,
residual and dense blocks, up-sampling. Nothing here knows about images, latents or runs."""
