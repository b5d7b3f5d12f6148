"""Uses a vlae_tf SavedModel with TensorFlow alone (no vlae_tf import): the README's example.

    python examples/use_saved_model.py runs/mnist_vlae/export/<step>

Prints the metadata, scores a batch (importance-weighted NLL with K samples), encodes it and decodes
the codes (lossy reconstructions: the same z, new pixels), draws samples, and calls one named
signature as TF Serving would, and shows the one-line error of a bad input. Images are float32
[N, H, W, C] of the model's kind: 0.0 / 1.0 for binary models, integers 0..255 for 8-bit ones.
"""

import os
import sys
import tempfile

import numpy as np


def import_tensorflow_quietly():
  """TensorFlow, without the lines its C++ side prints while it loads and finds its devices
  (oneDNN, the CUDA probe on a machine without a GPU): they are written before its logging starts,
  so TF_CPP_MIN_LOG_LEVEL does not reach them. Shown after all if the import fails."""
  with tempfile.TemporaryFile() as captured:
    saved = os.dup(2)
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow  # pylint: disable=g-import-not-at-top
      tensorflow.config.list_physical_devices()
    except BaseException:
      os.dup2(saved, 2)
      captured.seek(0)
      sys.stderr.write(captured.read().decode(errors='replace'))
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)
  return tensorflow


tf = import_tensorflow_quietly()


def main(path):
  model = tf.saved_model.load(path)
  meta = {name: value.numpy() for name, value in model.metadata().items()}
  print('metadata:', meta)  # image_shape, latent_shape, num_dims, step, data_kind
  height, width, channels = meta['image_shape']
  rng = np.random.default_rng(0)
  if meta['data_kind'] == b'binary':
    images = (rng.random((4, height, width, channels)) < 0.2).astype(np.float32)
  else:
    images = rng.integers(0, 256, (4, height, width, channels)).astype(np.float32)
  seed = tf.constant(0, tf.int64)  # int64 scalar; Python calls default it to 0
  nll = -model.log_prob(images, num_samples=tf.constant(64), seed=seed)['log_prob']
  print('NLL in nats, K=64:', nll.numpy().round(2))
  if hasattr(model, 'encode'):  # the PixelCNN without z has no encode / decode
    code = model.encode(images, seed=seed)  # {'z', 'posterior_mean'}: [N, *latent_shape]
    decoded = model.decode(code['z'], seed=tf.constant(1, tf.int64))['images']
    print('z', code['z'].shape, '-> decoded', decoded.shape)
  samples = model.sample(tf.constant(8), seed=tf.constant(2, tf.int64))['images']
  print('samples', samples.shape)
  # Named signatures (TF Serving, saved_model_cli): every input fed by name, the seed too.
  print(sorted(model.signatures.keys()))
  scores = model.signatures['log_prob'](images=tf.constant(images), num_samples=tf.constant(8),
                                        seed=seed)['log_prob']
  print('log_prob signature:', scores.shape)
  # A bad input (here one row of pixels short) fails inside the SavedModel with one line of ours.
  try:
    model.log_prob(images[:, 1:], num_samples=tf.constant(1))
  except tf.errors.InvalidArgumentError as error:
    print([line for line in str(error).splitlines() if 'must be' in line][0])


if __name__ == '__main__':
  main(sys.argv[1])
