"""Trained models that ship inside the package, by name: `--pretrained=NAME` for the binaries
that read a run (eval, sample, export, inspect, compress, decompress) and
`vlae_tf.load_pretrained(NAME)`.

catalogue.py finds, verifies and caches them (no TensorFlow); packaging.py makes one from a run.
"""
