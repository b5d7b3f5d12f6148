"""Session 12 micro-benchmark (issue 22): the first author's decoder (batch 128, 28x28, 4 context
channels) forward and forward+backward, float32 against mixed_bfloat16 as the layer computes it
(every op in bfloat16) and against bfloat16 convolutions with float32 elementwise work (conv
outputs cast to float32 before the bias, ELU, gate and residual adds).

    python docs/results/bf16_elementwise_s12.py     # prints min ms over rounds per variant
"""
import time

import numpy as np
import tensorflow as tf

from vlae_tf.layers import precision
from vlae_tf.models import gated_resnet_pixelcnn as g

tf.random.set_seed(0)
rng = np.random.default_rng(0)
B = 128
x = tf.constant(rng.choice([-1., 1.], size=[B, 28, 28, 1]).astype(np.float32))
c = tf.constant(rng.normal(size=[B, 28, 28, 4]).astype(np.float32))
dec = g.GatedResNetPixelCNN(num_outputs=1)
dec(x, c)
dec16 = precision.apply(g.GatedResNetPixelCNN(num_outputs=1), 'mixed_bfloat16')
dec16(x, c)
dec16.set_weights(dec.get_weights())
RS = dec.residual_scale


def conv_f32_out(use, h, parts=1):
  """bf16 convolution, output cast to float32, float32 bias added."""
  k = tf.cast(use.effective_kernel(), tf.bfloat16)
  hb = tf.cast(h, tf.bfloat16)
  if parts == 1:
    return tf.cast(tf.nn.conv2d(hb, k, 1, 'SAME'), tf.float32) + use.bias
  return [tf.cast(tf.nn.conv2d(hb, kp, 1, 'SAME'), tf.float32) + bp
          for kp, bp in zip(tf.split(k, parts, -1), tf.split(use.bias, parts, -1))]


def bf16_convs_f32_elementwise(x, c):
  h = tf.nn.elu(conv_f32_out(dec.stem, tf.concat([x, c], -1)))
  def nins(s, h):
    for cv in dec.nin_convs[s]:
      h = h + RS * tf.nn.elu(conv_f32_out(cv, h))
    return h
  h = nins(0, h)
  for s in range(1, dec.num_stages):
    a, b = conv_f32_out(dec.gated_convs[s - 1], h, 2)
    gg = tf.sigmoid(a) * tf.tanh(b)
    h = tf.nn.elu(h + RS * conv_f32_out(dec.post_convs[s - 1], gg))
    h = nins(s, h)
  return conv_f32_out(dec.output_conv, h)


variants = {'float32 layer': (dec, lambda x, c: dec(x, c)),
            'mixed_bfloat16 layer': (dec16, lambda x, c: tf.cast(dec16(x, c), tf.float32)),
            'bf16 convs, f32 elementwise': (dec, bf16_convs_f32_elementwise)}


def forward_backward(model, f):
  @tf.function
  def step(x, c):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(x), f(x, c)))
    return loss, tape.gradient(loss, model.trainable_variables)
  return step


def best(fn, n=7):
  fn(); fn()
  times = []
  for _ in range(n):
    start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
  return min(times)


ref = tf.function(variants['float32 layer'][1])(x, c)
results = {}
for round_ in range(3):
  for name, (model, f) in variants.items():
    fwd, fb = tf.function(f), forward_backward(model, f)
    if round_ == 0:
      print(name, 'max |diff| to float32', float(tf.reduce_max(tf.abs(fwd(x, c) - ref))))
    results.setdefault(name, []).append(
        (best(lambda: fwd(x, c).numpy()), best(lambda: [v.numpy() for v in fb(x, c)[1]])))
for name, v in results.items():
  print(f'{name:30s} forward {min(a for a, _ in v) * 1e3:.1f} ms  '
        f'forward+backward {min(b for _, b in v) * 1e3:.1f} ms')
