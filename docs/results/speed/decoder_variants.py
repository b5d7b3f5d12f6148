"""Micro-benchmarks of the first author's decoder: forward and forward+backward of
`GatedResNetPixelCNN` at batch 128, 28x28, 4 context channels, in variants computed from one set of
weights. Prints each variant's largest |output - the float32 layer's| and its best times (min over 3
rounds of 7 calls). Run it on an idle machine:

    python docs/results/speed/decoder_variants.py gate       # ways to compute the layer (12d6f7e)
    python docs/results/speed/decoder_variants.py precision  # where bfloat16 pays (fdc30a2)

docs/RESULTS.md, "Speed and precision", has the numbers.
"""
import sys
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
F, RS = dec.filters, dec.residual_scale


def conv(h, k):
  return tf.nn.conv2d(h, k, 1, 'SAME')


def rewritten(gate='two convs', fold_scale=False, cache_dirs=False, nin_matmul=False,
              split_stem=False, bfloat16_convs=False):
  """The decoder's forward pass written out with one of the alternatives switched on."""
  def f(x, c):
    cache = {}

    def kern(use):
      if not cache_dirs:
        return use.effective_kernel()
      if id(use.shared) not in cache:
        cache[id(use.shared)] = use.shared.direction()
      return cache[id(use.shared)] * use.scale

    def conv_bias(use, h, kernel=None, bias=None):
      kernel = kern(use) if kernel is None else kernel
      bias = use.bias if bias is None else bias
      if bfloat16_convs:  # bfloat16 convolution, float32 output and bias.
        return tf.cast(conv(tf.cast(h, tf.bfloat16), tf.cast(kernel, tf.bfloat16)),
                       tf.float32) + bias
      return conv(h, kernel) + bias

    if split_stem:
      ks = kern(dec.stem)
      h = tf.nn.elu(conv(x, ks[:, :, :1]) + conv(c, ks[:, :, 1:]) + dec.stem.bias)
    else:
      h = tf.nn.elu(conv_bias(dec.stem, tf.concat([x, c], -1)))

    def nins(s, h):
      for cv in dec.nin_convs[s]:
        if nin_matmul:
          z = tf.reshape(tf.matmul(tf.reshape(h, [-1, F]), kern(cv)[0, 0]), tf.shape(h)) + cv.bias
        else:
          z = conv_bias(cv, h)
        h = h + RS * tf.nn.elu(z)
      return h

    h = nins(0, h)
    for s in range(1, dec.num_stages):
      gc, pc = dec.gated_convs[s - 1], dec.post_convs[s - 1]
      k = kern(gc)
      if gate == 'tanh':  # sigmoid(a) = 0.5 + 0.5 tanh(a / 2)
        gated = (0.5 + 0.5 * tf.tanh(conv_bias(gc, h, k[..., :F] * 0.5, gc.bias[..., :F] * 0.5))
                 ) * tf.tanh(conv_bias(gc, h, k[..., F:], gc.bias[..., F:]))
      elif gate == 'two convs':
        gated = tf.sigmoid(conv_bias(gc, h, k[..., :F], gc.bias[..., :F])) * tf.tanh(
            conv_bias(gc, h, k[..., F:], gc.bias[..., F:]))
      else:  # 'slice': one 2F-channel convolution, sliced.
        a = conv_bias(gc, h, k)
        gated = tf.sigmoid(a[..., :F]) * tf.tanh(a[..., F:])
      if fold_scale:
        h = tf.nn.elu(h + conv_bias(pc, gated, kern(pc) * RS, pc.bias * RS))
      else:
        h = tf.nn.elu(h + RS * conv_bias(pc, gated))
      h = nins(s, h)
    return conv_bias(dec.output_conv, h)
  return f


def variants(group):
  layer = {'float32 layer': (dec, lambda x, c: dec(x, c))}
  if group == 'gate':
    return {**layer, **{name: (dec, rewritten(**options)) for name, options in {
        'slice one conv': dict(gate='slice'),
        'two-conv gate': dict(),
        'nin as matmul': dict(nin_matmul=True),
        'tanh gate': dict(gate='tanh'),
        'split stem': dict(split_stem=True),
        'fold scale': dict(fold_scale=True),
        'cache directions': dict(cache_dirs=True)}.items()}}
  dec16 = precision.apply(g.GatedResNetPixelCNN(num_outputs=1), 'mixed_bfloat16')
  dec16(x, c)
  dec16.set_weights(dec.get_weights())
  return {**layer,
          'mixed_bfloat16 layer': (dec16, lambda x, c: tf.cast(dec16(x, c), tf.float32)),
          'bf16 convs, f32 elementwise': (dec, rewritten(bfloat16_convs=True))}


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


def main(group):
  chosen = variants(group)
  reference = tf.function(chosen['float32 layer'][1])(x, c)
  results = {}
  for round_ in range(3):
    for name, (model, f) in chosen.items():
      fwd, fb = tf.function(f), forward_backward(model, f)
      if round_ == 0:
        print(name, 'max |diff| to float32', float(tf.reduce_max(tf.abs(fwd(x, c) - reference))))
      results.setdefault(name, []).append(
          (best(lambda: fwd(x, c).numpy()), best(lambda: [v.numpy() for v in fb(x, c)[1]])))
  for name, v in results.items():
    print(f'{name:30s} forward {min(a for a, _ in v) * 1e3:.1f} ms  '
          f'forward+backward {min(b for _, b in v) * 1e3:.1f} ms')


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else 'precision')
