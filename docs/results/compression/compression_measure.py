"""Measurement of bits-back coding: BB-ANS through the headline VLAE on all 10,000 static MNIST test images."""
import bz2, gzip, io, json, subprocess, sys, time
import numpy as np
from vlae_tf import startup
startup.start_tensorflow()
import tensorflow as tf
from PIL import Image
from vlae_tf import training, datasets, bitsback

md = sys.argv[1]; out = sys.argv[2]; n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
stride = 10000 // n  # n evenly spread test images (the split is sorted by class)
training.load_run_config(md)
model, step, _ = training.restore_averaged_model(md)
test = datasets.load('static_mnist', 'test', data_dir='/work/shared/data')
x = np.stack([t.numpy() for t in test])[::stride][:n]
res = dict(model_dir=md, step=step, images=len(x), commit=subprocess.check_output(['git', 'rev-parse', 'HEAD'], text=True).strip())
# Matmul peak in this run (for context of the timings).
a = tf.random.normal([2048, 2048]); tf.linalg.matmul(a, a).numpy()
t = time.time(); [tf.linalg.matmul(a, a).numpy() for _ in range(5)]; res['matmul_gflops'] = 5 * 2 * 2048**3 / (time.time() - t) / 1e9
tf.config.experimental.enable_op_determinism()
coder = bitsback.BitsBackCoder(model)
res['batches'] = len(coder.schedule(len(x)))
t = time.time(); words, lengths, init = coder.encode(x, progress=lambda d: print(f'encode {d}/{len(x)} {time.time()-t:.0f}s', file=sys.stderr, flush=True) if d % 1000 < 60 else None)
res['encode_seconds'] = time.time() - t
t = time.time(); y, left = coder.decode(words, len(x)); res['decode_seconds'] = time.time() - t
res['exact'] = bool(np.array_equal(x, y)); res['leftover_is_initial'] = bool(np.array_equal(left, coder.initial_words()))
res['payload_bits'] = 32 * len(words); res['initial_bits'] = init
res['bits_per_image'] = (res['payload_bits'] - init) / len(x)
res['ideal_bits_per_image'] = lengths.net / len(x)
res['pixel_bits_per_image'] = lengths.pixels / len(x)
res['latent_net_bits_per_image'] = (lengths.latent_pushed - lengths.latent_popped) / len(x)
# The model's -ELBO on the same images: 8 posterior samples per image.
elbos, kls = [], []
for s in range(8):
  for i in range(0, len(x), 500):
    e = model.elbo(tf.constant(x[i:i+500]), tf.constant([s, i]))
    elbos.append(e['elbo'].numpy()); kls.append(e['kl'].numpy())
elbo = np.concatenate(elbos).reshape(8, -1); kl = np.concatenate(kls).reshape(8, -1)
per_image = -elbo.mean(0) / np.log(2)
res['neg_elbo_bits_per_image'] = float(per_image.mean()); res['neg_elbo_bits_se'] = float(per_image.std() / np.sqrt(len(x)))
res['kl_bits_per_image'] = float(kl.mean() / np.log(2))
res['overhead_percent'] = 100 * (res['bits_per_image'] / res['neg_elbo_bits_per_image'] - 1)
packed = np.packbits(x.astype(np.uint8).reshape(len(x), -1), axis=1).tobytes()
res['raw_bits_per_image'] = 784
res['gzip9_bits_per_image'] = 8 * len(gzip.compress(packed, 9)) / len(x)
res['bz2_9_bits_per_image'] = 8 * len(bz2.compress(packed, 9)) / len(x)
def png_bytes(img):
  b = io.BytesIO(); Image.fromarray(img).convert('1').save(b, format='PNG', optimize=True); return len(b.getvalue())
strip = (x[..., 0].transpose(1, 0, 2).reshape(28, -1) * 255).astype(np.uint8)
res['png_one_strip_bits_per_image'] = 8 * png_bytes(strip) / len(x)
res['png_per_image_bits_per_image'] = 8 * sum(png_bytes((im[..., 0] * 255).astype(np.uint8)) for im in x) / len(x)
for k in list(res):
  if k.endswith('per_image') and k != 'raw_bits_per_image':
    res[k.replace('per_image', 'per_pixel')] = res[k] / 784
json.dump(res, open(out, 'w'), indent=2, sort_keys=True)
print(json.dumps(res, indent=2, sort_keys=True))
