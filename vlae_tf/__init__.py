"""vlae_tf: the Variational Lossy Autoencoder (Chen et al., ICLR 2017) in TensorFlow 2.

The public API:

    import vlae_tf
    model = vlae_tf.load('runs/mnist_vlae')          # a trained run, Polyak-averaged weights
    model = vlae_tf.load_pretrained('static_mnist')  # a model that ships with the package
    nll = -model.log_likelihood(images, num_samples=1024, seed=(0, 0))
    vlae_tf.VLAE                                     # the model class (a tf_keras Model)

A run directory is what `bin/train --model_dir=DIR` writes; `load` rebuilds the model from its
config.gin and restores the newest intact checkpoint (or `checkpoint=N`). The subpackages, from the
bottom up: layers (masked convolutions, weight norm, blocks), models (networks, decoders, flows,
likelihoods, the VLAE), data, training, evaluation, export, compression, experiments, cli.
docs/ARCHITECTURE.md walks through them.

The package uses Keras 2 through `tf_keras` everywhere: TensorFlow Probability's layers are tf_keras
layers, and a Keras 3 layer that holds them tracks none of their variables. Importing vlae_tf loads
no TensorFlow; `load` and `VLAE` do, when first used (so the binaries' --help stays fast).
"""

__version__ = '0.1.0'

__all__ = ['load', 'load_pretrained', 'VLAE', '__version__']


def load(model_dir, checkpoint=None):
  """The model of a training run, with its Polyak-averaged weights (what eval and sample use).

  Parses <model_dir>/config.gin strictly (this replaces the process's gin config) and restores
  the newest intact checkpoint, or the one named by `checkpoint`.

  Args:
    model_dir: a run directory written by bin/train.
    checkpoint: None (the newest intact one), a step N, or a prefix such as <model_dir>/ckpt-N.

  Returns:
    The `VLAE`, built and restored; its training step is `model.checkpoint_step` and the restored
    checkpoint's path `model.checkpoint_path`.

  Raises:
    vlae_tf.errors.RunError (one line): no such run directory or config.gin, a damaged config,
      no intact checkpoint or no such checkpoint.
  """
  from vlae_tf.runs import opening  # pylint: disable=g-import-not-at-top
  run = opening.open_run(model_dir, checkpoint)
  run.model.checkpoint_step = run.step
  run.model.checkpoint_path = run.checkpoint_path
  return run.model


def load_pretrained(name):
  """A model that ships with vlae_tf (vlae_tf/pretrained/), like `load` on its run directory.

  Its files are checked against the sha256 in its provenance.json and copied once into a cache
  folder ($VLAE_TF_CACHE, else $XDG_CACHE_HOME/vlae_tf, else ~/.cache/vlae_tf;
  vlae_tf/pretrained/catalogue.py), which is the directory of `model.checkpoint_path`.

  Args:
    name: e.g. 'static_mnist'; `vlae_tf.pretrained.catalogue.names()` lists them.

  Returns:
    The `VLAE`, built and restored (Polyak-averaged weights), as `load` returns it.

  Raises:
    vlae_tf.errors.PretrainedError (one line): an unknown name (the known ones are listed), or a
      packaged file that is missing or fails its checksum.
  """
  from vlae_tf.pretrained import catalogue  # pylint: disable=g-import-not-at-top
  return load(catalogue.run_directory(name))


def __getattr__(name):
  """`vlae_tf.VLAE`, imported on first use (PEP 562): `import vlae_tf` stays light."""
  if name == 'VLAE':
    from vlae_tf.models import vlae  # pylint: disable=g-import-not-at-top
    return vlae.VLAE
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
