"""The machine a benchmark runs on: its measured matmul peaks, its device and its memory.

Every line of bin/benchmark carries `machine_info()`:

    device                 '2x NVIDIA A100-SXM4-80GB' or 'CPU (x86_64, 2 cores)'
    device_name            the first GPU's name (tf.config.experimental.get_device_details), or
                           'cpu'
    device_peak_memory_mb  the first GPU's peak allocation by TensorFlow since the last
                           `reset_device_peak()` (tf.config.experimental.get_memory_info), i.e.
                           of this measurement; None on a CPU
    peak_rss_mb            the process's peak resident set so far
    tf_version, allocator, load_average
"""

import os
import platform
import resource
import statistics
import time
from typing import Dict

import tensorflow as tf

from vlae_tf import allocator


def matmul_peak_flops(size: int = 2048, repeats: int = 5, dtype=tf.float32) -> float:
  """The measured matmul rate in `dtype`: median over `repeats` of a [n, n] x [n, n] tf.function.

  FLOPs per product = 2 * n^3. Runs on the default device (the first GPU if there is one).
  """
  a = tf.cast(tf.random.stateless_normal([size, size], seed=[1, 2]), dtype)
  b = tf.cast(tf.random.stateless_normal([size, size], seed=[3, 4]), dtype)
  product = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)), autograph=False)
  product(a, b).numpy()  # Warm-up: trace and first run.
  seconds = median_seconds(lambda: product(a, b).numpy(), repeats)
  return 2.0 * size**3 / seconds


def machine_info() -> Dict:
  """Device, its name and peak memory, TensorFlow version, load average and peak RSS."""
  gpus = tf.config.list_physical_devices('GPU')
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    name = details.get('device_name', 'GPU')
    device = f'{len(gpus)}x {name}'
    peak = round(tf.config.experimental.get_memory_info('GPU:0')['peak'] / 2**20, 1)
  else:
    name, peak = 'cpu', None
    device = f'CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)'
  return {
      'device': device,
      'device_name': name,
      'device_peak_memory_mb': peak,
      'tf_version': tf.__version__,
      'allocator': allocator.in_use(),  # Speeds differ by allocator (allocator.py).
      'load_average': [round(x, 2) for x in os.getloadavg()],
      # Peak resident set of the whole process so far (Linux: KiB).
      'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
  }


def reset_device_peak():
  """Starts the GPU's peak memory afresh, so that the next `machine_info` is one measurement's
  (nothing to do on a CPU)."""
  if tf.config.list_physical_devices('GPU'):
    tf.config.experimental.reset_memory_stats('GPU:0')


def median_seconds(fn, repeats: int) -> float:
  """The median wall time of `repeats` calls of `fn` (at least one)."""
  times = []
  for _ in range(max(1, int(repeats))):
    began = time.perf_counter()
    fn()
    times.append(time.perf_counter() - began)
  return statistics.median(times)
