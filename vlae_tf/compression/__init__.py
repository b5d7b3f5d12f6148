"""Lossless compression of binary images through a trained VLAE: bits-back coding with ANS, the
latent codes on a grid, and the file format."""
