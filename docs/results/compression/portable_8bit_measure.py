"""The 8-bit portable codec against PNG, WebP lossless and the model's -ELBO, on a run's model and
an .npy of 8-bit images (docs/RESULTS.md, "Lossless compression", "8-bit images").

    PYTHONPATH=. python docs/results/compression/portable_8bit_measure.py MODEL_DIR IMAGES.npy OUT.json \
        [FIRST_BATCH]

FIRST_BATCH (default 1, bin/compress's) is the coder's first batch size: decoding runs a batch's
pixel steps in a NumPy loop whose cost is mostly per step, so a larger first batch decodes in fewer
batches, at the price of one-off initial bits (reported apart from the stream).

Reports bits/image and bits/dim of the stream without its one-off initial bits, the ideal code
length the coder counted (pixels, net z), encode and decode seconds (inside the process, start-up
excluded) and whether decoding gave the images back exactly; the float model's -ELBO on the same
images (8 posterior samples each, stateless seeds); one PNG (Pillow, optimize) and one lossless
WebP (Pillow, method 6) per image, and one PNG of all images side by side; lscpu's model name,
the commit and the load averages.
"""

import io
import json
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import tensorflow as tf

from vlae_tf.compression import portable_8bit
from vlae_tf.runs import opening


def _bits(image, **options):
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, **options)
  return 8 * len(buffer.getvalue())


def main(model_dir, images_path, out, first_batch=1):
  run = opening.open_run(model_dir, None)
  model, step = run.model, run.step
  x = np.load(images_path).astype(np.uint8)
  x = x.reshape(len(x), *model.image_shape)
  dims = int(np.prod(model.image_shape))
  lscpu = subprocess.check_output(['lscpu'], text=True)
  res = dict(images=len(x), step=int(step), model_dir=model_dir, images_path=images_path,
             commit=subprocess.check_output(['git', 'rev-parse', 'HEAD'], text=True).strip(),
             cpu=[line.split(':', 1)[1].strip() for line in lscpu.splitlines()
                  if line.startswith('Model name')][0],
             load_average_at_start=open('/proc/loadavg').read().split()[:3],
             first_batch=int(first_batch))
  coder = portable_8bit.PortableMixtureCoder(model, first_batch=int(first_batch))
  began = time.time()
  words, lengths, initial = coder.encode(x)
  encode_seconds = time.time() - began
  print(f'encoded in {encode_seconds:.1f} s', file=sys.stderr, flush=True)
  began = time.time()
  decoded, leftover = coder.decode(words, len(x))
  decode_seconds = time.time() - began
  stream = (32 * len(words) - initial) / len(x)
  res['portable_8bit'] = dict(
      bits_per_image=stream, bits_per_dim=stream / dims, initial_bits=initial,
      file_bits_per_image=32 * len(words) / len(x), ideal_bits_per_image=lengths.net / len(x),
      pixel_bits_per_image=lengths.pixels / len(x),
      latent_net_bits_per_image=(lengths.latent_pushed - lengths.latent_popped) / len(x),
      encode_seconds=encode_seconds, decode_seconds=decode_seconds,
      exact=bool(np.array_equal(decoded, x)),
      leftover_is_initial=bool(np.array_equal(leftover, coder.initial_words())),
      batches=len(coder.schedule(len(x))))
  print(json.dumps(res['portable_8bit']), file=sys.stderr, flush=True)
  elbos = []
  for sample in range(8):
    for start in range(0, len(x), 250):
      elbo = model.elbo(tf.constant(x[start:start + 250].astype(np.float32)),
                        tf.constant([sample, start], tf.int32))
      elbos.append(elbo['elbo'].numpy())
  per_image = -np.concatenate(elbos).reshape(8, -1).mean(0) / np.log(2)
  res['neg_elbo_bits_per_image'] = float(per_image.mean())
  res['neg_elbo_bits_se'] = float(per_image.std() / np.sqrt(len(x)))
  res['neg_elbo_bits_per_dim'] = float(per_image.mean()) / dims
  res['portable_8bit']['above_neg_elbo_percent'] = 100 * (stream / per_image.mean() - 1)
  for name, options in (('png_per_image', dict(format='PNG', optimize=True)),
                        ('webp_lossless_per_image', dict(format='WEBP', lossless=True,
                                                         quality=100, method=6))):
    began = time.time()
    bits = np.mean([_bits(image, **options) for image in x])
    res[name] = dict(bits_per_image=float(bits), bits_per_dim=float(bits) / dims,
                     encode_seconds=time.time() - began)
  side_by_side = np.concatenate(list(x), axis=1)  # [H, N * W, C]
  res['png_all_side_by_side'] = dict(
      bits_per_image=_bits(side_by_side, format='PNG', optimize=True) / len(x))
  res['png_all_side_by_side']['bits_per_dim'] = res['png_all_side_by_side']['bits_per_image'] / dims
  res['load_average_at_end'] = open('/proc/loadavg').read().split()[:3]
  with open(out, 'w') as stream_file:
    json.dump(res, stream_file, indent=2, sort_keys=True)
  print(json.dumps(res, indent=2, sort_keys=True))


if __name__ == '__main__':
  main(*sys.argv[1:5])
