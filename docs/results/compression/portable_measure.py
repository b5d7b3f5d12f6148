"""The portable codec against the float codec and the -ELBO: the shipped static_mnist model (or the
run of --model_dir, read in float32) on all 10,000 static-MNIST test images (docs/RESULTS.md,
"Portable files" and "The headline run").

    PYTHONPATH=. python docs/results/compression/portable_measure.py OUT.json [N] [--no-float] \
        [--model_dir=RUN]

Per codec: bits/image of the stream without its one-off initial bits, the ideal code length it
counted, the seconds of encode and decode (inside the process, start-up excluded), and whether
decoding gave the images back exactly; the float model's -ELBO on the same images (8 posterior
samples each, stateless seeds), the machine (lscpu's model name) and the commit.
"""

import json
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

import vlae_tf
from vlae_tf.compression import bitsback
from vlae_tf.compression import portable
from vlae_tf.data import datasets
from vlae_tf.runs import opening


def main(out, count=10000, with_float=True, model_dir=None):
  if model_dir:
    run = opening.open_run(model_dir, precision='float32')
    model, step = run.model, run.step
  else:
    model = vlae_tf.load_pretrained('static_mnist')
    step = model.checkpoint_step
  test = np.stack([t.numpy() for t in datasets.load('static_mnist', 'test',
                                                     data_dir='../shared/data')])
  x = test[[int((2 * i + 1) * len(test) // (2 * count)) for i in range(count)]]
  lscpu = subprocess.check_output(['lscpu'], text=True)
  res = dict(images=len(x), commit=subprocess.check_output(['git', 'rev-parse', 'HEAD'],
                                                           text=True).strip(),
             cpu=[line.split(':', 1)[1].strip() for line in lscpu.splitlines()
                  if line.startswith('Model name')][0],
             load_average_at_start=open('/proc/loadavg').read().split()[:3],
             model=model_dir or 'pretrained static_mnist', step=step)
  coders = [('portable', portable.PortableBitsBackCoder(model))]
  if with_float:
    tf.config.experimental.enable_op_determinism()
    coders.append(('float', bitsback.BitsBackCoder(model)))
  for name, coder in coders:
    began = time.time()
    words, lengths, initial = coder.encode(x)
    encode_seconds = time.time() - began
    began = time.time()
    decoded, leftover = coder.decode(words, len(x))
    decode_seconds = time.time() - began
    res[name] = dict(
        bits_per_image=(32 * len(words) - initial) / len(x), initial_bits=initial,
        file_bits_per_image=32 * len(words) / len(x),
        ideal_bits_per_image=lengths.net / len(x), pixel_bits_per_image=lengths.pixels / len(x),
        latent_net_bits_per_image=(lengths.latent_pushed - lengths.latent_popped) / len(x),
        encode_seconds=encode_seconds, decode_seconds=decode_seconds,
        exact=bool(np.array_equal(decoded, x)),
        leftover_is_initial=bool(np.array_equal(leftover, coder.initial_words())),
        batches=len(coder.schedule(len(x))))
    print(name, json.dumps(res[name]), file=sys.stderr, flush=True)
  elbos = []
  for sample in range(8):
    for start in range(0, len(x), 500):
      elbo = model.elbo(tf.constant(x[start:start + 500]), tf.constant([sample, start], tf.int32))
      elbos.append(elbo['elbo'].numpy())
  per_image = -np.concatenate(elbos).reshape(8, -1).mean(0) / np.log(2)
  res['neg_elbo_bits_per_image'] = float(per_image.mean())
  res['neg_elbo_bits_se'] = float(per_image.std() / np.sqrt(len(x)))
  for name, _ in coders:
    res[name]['above_neg_elbo_percent'] = 100 * (res[name]['bits_per_image'] /
                                                 res['neg_elbo_bits_per_image'] - 1)
  res['load_average_at_end'] = open('/proc/loadavg').read().split()[:3]
  with open(out, 'w') as stream:
    json.dump(res, stream, indent=2, sort_keys=True)
  print(json.dumps(res, indent=2, sort_keys=True))


if __name__ == '__main__':
  args = [a for a in sys.argv[1:] if not a.startswith('--')]
  model_dirs = [a.split('=', 1)[1] for a in sys.argv[1:] if a.startswith('--model_dir=')]
  main(args[0], int(args[1]) if len(args) > 1 else 10000, '--no-float' not in sys.argv,
       model_dirs[0] if model_dirs else None)
