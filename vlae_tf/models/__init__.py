"""The VLAE and its parts: encoders and context networks, PixelCNN decoders (with their fast
samplers), flows (AF prior, IAF posterior, convolutional AF), pixel likelihoods, the free-bits
objectives, and the VLAE that ties them into an ELBO."""
