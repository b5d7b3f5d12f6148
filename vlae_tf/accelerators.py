"""What a run computes on: XLA on or off (`train.jit_compile`), and the line that says so.

    jit_compile       'auto' | True | False, the gin setting `train.jit_compile` (settings.py);
                      `bound_jit_compile` reads it from a parsed config
    use_xla(v, s)     the setting resolved for strategy s: 'auto' is on when every device of the
                      strategy is a GPU, off otherwise (on this project's CPUs XLA measured 2-3x
                      slower, docs/RESULTS.md "Speed and precision")
    compiled(fn, on)  fn as a tf.function with jit_compile=True (no autograph), or fn itself
    start_line        "GPUs: 2x NVIDIA A100 (80.0 GiB each); precision mixed_float16; XLA on
                      (train.jit_compile = 'auto')": what bin/train and bin/eval print at start
                      when their strategy runs on GPUs
    slow_precision_note
                      the warning of a float16 run on CPUs (float16 convolutions there are
                      emulated and several times slower than float32)

What XLA compiles. The training step's per-replica forward and backward pass (loss and gradients:
the encoder, flows, context network, decoder, likelihood and their gradients, `Trainer`), and the
per-replica statistics of evaluation and validation (the importance-weighted log-likelihood and
the ELBO terms, `distribution.DistributedEvaluator`). The all-reduce, the skip of non-finite steps,
the optimizer update and the Polyak averages stay outside: they synchronize the replicas, which a
function compiled on one device cannot do (MirroredStrategy's merge_call). With jit_compile=True
TensorFlow raises when an op of the function has no XLA kernel instead of running it without XLA,
so a compiled run is compiled whole: nothing here catches that error.
"""

from absl import logging
import gin
import tensorflow as tf

AUTO = 'auto'  # train.jit_compile's default (training/settings.py checks the values)


def strategy_device_types(strategy):
  """The device types ('GPU', 'CPU', ...) of the strategy's local replicas."""
  return {tf.DeviceSpec.from_string(device).device_type
          for device in strategy.extended.worker_devices}


def on_gpus(strategy):
  """Whether every local replica of `strategy` runs on a GPU."""
  return strategy_device_types(strategy) == {'GPU'}


def use_xla(jit_compile, strategy=None):
  """The setting `jit_compile` resolved for `strategy` (None: the default device, a GPU if there
  is one): a bool."""
  if jit_compile == AUTO:
    return on_gpus(strategy) if strategy else bool(tf.config.list_logical_devices('GPU'))
  return jit_compile


def bound_jit_compile():
  """`train.jit_compile` as the parsed gin config binds it (a run's config.gin), else AUTO: what
  the readers of a run (the evaluator) use without importing training/."""
  try:
    return gin.get_bindings('train', resolve_references=True).get('jit_compile', AUTO)
  except ValueError:  # 'train' is not registered: nothing can bind it.
    return AUTO


def compiled(fn, jit_compile):
  """`fn` compiled by XLA as one tf.function (without autograph), or `fn` unchanged."""
  if not jit_compile:
    return fn
  return tf.function(fn, jit_compile=True, autograph=False)


def gpu_description():
  """'2x NVIDIA A100-SXM4-80GB (80.0 GiB each)', or None without a GPU.

  The memory is the device's total as TensorFlow reports it (`get_memory_info` gives what
  TensorFlow allocated; the card's total comes from the device's details when present).
  """
  gpus = tf.config.list_physical_devices('GPU')
  if not gpus:
    return None
  details = tf.config.experimental.get_device_details(gpus[0])
  name = details.get('device_name', 'GPU')
  capability = details.get('compute_capability')
  suffix = f', compute capability {capability[0]}.{capability[1]}' if capability else ''
  return f'{len(gpus)}x {name}{suffix}'


def start_line(strategy, precision, jit_compile):
  """The line the binaries log at start on GPUs (None on CPUs, whose runs say nothing new).

  Args:
    strategy: the run's strategy.
    precision: the model's precision (`VLAE.precision`).
    jit_compile: the setting `train.jit_compile` as bound.

  Returns:
    e.g. "GPUs: 1x NVIDIA A100-SXM4-80GB, compute capability 8.0 (1 replica); precision
    mixed_float16; XLA on (train.jit_compile = 'auto')", or None.
  """
  if not on_gpus(strategy):
    return None
  replicas = strategy.num_replicas_in_sync
  xla = 'on' if use_xla(jit_compile, strategy) else 'off'
  return (f'GPUs: {gpu_description() or "GPU"} ({replicas} replica{"s" * (replicas != 1)}); '
          f'precision {precision}; XLA {xla} (train.jit_compile = {jit_compile!r})')


def slow_precision_note(precision, strategy):
  """The one-line warning of mixed_float16 on CPUs (None otherwise)."""
  if precision != 'mixed_float16' or on_gpus(strategy):
    return None
  return ('mixed_float16 on CPUs runs, but slowly: their float16 convolutions are emulated; '
          "use VLAE.precision = 'mixed_bfloat16' (CPUs with AMX or AVX512-BF16) or 'float32' "
          'there, and mixed_float16 on GPUs.')


def log_start(strategy, precision, jit_compile):
  """Logs `start_line` (on GPUs) and `slow_precision_note` (mixed_float16 on CPUs)."""
  line = start_line(strategy, precision, jit_compile)
  if line:
    logging.info('%s', line)
  note = slow_precision_note(precision, strategy)
  if note:
    logging.warning('%s', note)

