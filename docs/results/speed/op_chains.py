"""Micro-benchmark: ms per op of chains of 20 small ops on a [128, 28, 28, 12] float32 tensor,
the shapes of the first author's decoder (docs/RESULTS.md, "Speed and precision").
Run it on an idle machine: python docs/results/speed/op_chains.py
"""
import time
import numpy as np
import tensorflow as tf
r = np.random.default_rng(0)
h0 = tf.Variable(r.normal(size=[128, 28, 28, 12]).astype(np.float32) * 0.1)
pb = tf.Variable(r.normal(size=[1, 28, 28, 12]).astype(np.float32) * 0.01)
cb = tf.Variable(r.normal(size=[12]).astype(np.float32) * 0.01)
k1 = tf.Variable(r.normal(size=[1, 1, 12, 12]).astype(np.float32) * 0.1)
k3 = tf.Variable(r.normal(size=[3, 3, 12, 24]).astype(np.float32) * 0.05)
k3b = tf.Variable(r.normal(size=[3, 3, 12, 12]).astype(np.float32) * 0.05)
k3r = tf.Variable(r.normal(size=[3, 3, 24, 12]).astype(np.float32) * 0.05)
N = 20
chains = {  # h -> h  (12 channels)
 'elu': lambda h: tf.nn.elu(h),
 'add': lambda h: h + h0,
 'mul scalar': lambda h: 0.9 * h,
 'add per-pixel bias': lambda h: h + pb,
 'biasadd [C]': lambda h: tf.nn.bias_add(h, cb),
 'sigmoid': lambda h: tf.sigmoid(h),
 'tanh': lambda h: tf.tanh(h),
 'conv1x1 12->12': lambda h: tf.nn.conv2d(h, k1, 1, 'SAME'),
 'matmul 12x12': lambda h: tf.reshape(tf.matmul(tf.reshape(h, [-1, 12]), k1[0, 0]), [128, 28, 28, 12]),
 'conv1x1+biasadd+elu': lambda h: tf.nn.elu(tf.nn.bias_add(tf.nn.conv2d(h, k1, 1, 'SAME'), cb)),
 'NIN as now': lambda h: h + 0.1 * tf.nn.elu(tf.nn.conv2d(h, k1, 1, 'SAME') + pb),
 'conv3x3 12->12': lambda h: tf.nn.conv2d(h, k3b, 1, 'SAME'),
 'conv3x3 12->24->12': lambda h: tf.nn.conv2d(tf.nn.conv2d(h, k3, 1, 'SAME'), k3r, 1, 'SAME'),
 'slice+gate of 24': lambda h: (lambda a: tf.sigmoid(a[..., :12]) * tf.tanh(a[..., 12:]))(tf.concat([h, h], -1)),
 'concat only': lambda h: tf.concat([h, h], -1)[..., 6:18],
 'bf16 elu (cast in/out)': lambda h: tf.cast(tf.nn.elu(tf.cast(h, tf.bfloat16)), tf.float32),
 'cast round trip': lambda h: tf.cast(tf.cast(h, tf.bfloat16), tf.float32),
}
for name, f in chains.items():
  @tf.function
  def g(f=f):
    h = tf.convert_to_tensor(h0)
    for _ in range(N):
      h = f(h)
    return tf.reduce_sum(h)
  g(); g()
  ts = []
  for _ in range(7):
    t = time.perf_counter(); g().numpy(); ts.append(time.perf_counter() - t)
  print(f'{name:28s} {min(ts) / N * 1000:.3f} ms', flush=True)
