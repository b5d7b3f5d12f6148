"""Throughput benchmarks: training, importance-weighted evaluation, sampling, and a step profile.

Every measurement is a median over timed repetitions after warm-up, reported as one JSON-able dict
(`bin/benchmark` prints one line per dict) together with the machine it ran on: the float32 and
bfloat16 matmul peaks measured in the same process, device, replicas, TensorFlow version, load
average and peak memory.

Each measurement is made for each precision of `precisions` (gin `VLAE.precision`, one model per
precision, the measurements of one benchmark interleaved: train float32, train mixed_bfloat16,
eval float32, ...), and train and eval also for each value of `jit_compiles` (gin
`train.jit_compile`) within a precision. Every line has "precision", "compute_dtype" and
"peak_flops", the matmul peak of the dtype the model's convolutions compute in, so that
fraction_of_peak is relative to that; "jit_compile" and "xla" (whether it ran compiled); and
machine.py's "device_name" and "device_peak_memory_mb" (the GPU's peak during that measurement;
None on a CPU).

    what       how                                               keys
    train      trainer.train_loop(iterator, n), built by         images_per_s, flops_per_image,
               `trainer.make_trainer` as `loop.train` builds   peak_flops, fraction_of_peak
               it (strategy, real data, data-dependent init,
               Polyak averaging with its warm-up, Adamax)
    eval       model.log_likelihood(x, K, seed, chunk) in a      importance_samples_per_s
               tf.function on a batch of real images             (= batch * K / seconds)
    sample     100 images with model.sample(method=...)          naive_seconds_per_100 ('sequential'),
                                                                 fast_seconds_per_100 ('fast')
    profile    forward and forward+backward of one replica's     seconds per part, with and without
               loss, and each part of the ELBO on its own        XLA (jit_compile)

FLOPs are counted from the traced graph of the training loss, not estimated (flop_counting.py).
"""

import json
import math
from typing import Dict, List, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from vlae_tf.data import batching
# The counts are part of this module's API: benchmark.count_flops, benchmark.train_step_flops.
from vlae_tf.experiments.flop_counting import count_flops
from vlae_tf.experiments.flop_counting import loss_function
from vlae_tf.experiments.flop_counting import train_step_flops
from vlae_tf.experiments import machine
from vlae_tf.data import datasets
from vlae_tf import accelerators
from vlae_tf import distribution
from vlae_tf import errors
from vlae_tf.layers import precision as precision_lib
from vlae_tf.models import vlae as model_lib
from vlae_tf.runs import run_config
from vlae_tf.training import trainer as trainer_lib
from vlae_tf.training import settings as settings_lib

WHATS = ('train', 'eval', 'sample', 'profile')
NUM_SAMPLE_IMAGES = 100
SAMPLE_METHODS = {'sequential': 'naive', 'fast': 'fast', 'fixed_point': 'fixed_point'}

# ---------------------------------------------------------------------------------------------
# The machine.


# In machine.py; here too, where bin/benchmark's callers and tests have read them.
matmul_peak_flops = machine.matmul_peak_flops
machine_info = machine.machine_info


_median_seconds = machine.median_seconds


# ---------------------------------------------------------------------------------------------
# Models on real data.


def real_batch(batch_size: int, data_dir=None, split='train', seed: int = 0) -> tf.Tensor:
  """The first training batch of the gin-bound `train.dataset`, as `loop.train` draws it."""
  images = datasets.load(run_config.run_dataset(), split, data_dir=data_dir, seed=seed)
  return next(iter(batching.training_batches(images, batch_size, seed, 0, shuffle_buffer=1024)))


def initialized_model(batch: tf.Tensor):
  """A model from gin with its data-dependent init run on `batch` (no strategy)."""
  model = model_lib.make_model()
  model.initialize(batch)
  return model


# ---------------------------------------------------------------------------------------------
# The benchmarks.


def benchmark_train(batch_size: int, data_dir=None, steps_per_chunk: int = 20, repeats: int = 3,
                    warmup: int = 1, strategy=None, peak_flops: Optional[float] = None) -> Dict:
  """Training images/s of `Trainer.train_loop`, built by `trainer.make_trainer` as `loop.train`
  builds it: the settings bound to `train` in gin, the same data order and initialization."""
  strategy = strategy or distribution.make_strategy()
  settings = settings_lib.train_settings()
  seed = settings['seed']
  train_images = datasets.load(run_config.run_dataset(), 'train', data_dir=data_dir,
                               seed=seed)
  trainer = trainer_lib.make_trainer(strategy, global_batch_size=batch_size,
                                     **settings_lib.trainer_settings())
  batches = batching.training_batches(train_images, batch_size, seed, 0,
                                      settings['shuffle_buffer'])
  trainer.initialize(next(iter(batches)))
  iterator = iter(batches)

  for _ in range(max(1, warmup)):  # The first call traces; run at least one.
    trainer.train_loop(iterator, steps_per_chunk)
  seconds = _median_seconds(lambda: trainer.train_loop(iterator, steps_per_chunk), repeats)

  model = trainer.model
  free_bits_lambda = settings['free_bits_lambda']
  counted = train_step_flops(model, batch_size, free_bits_lambda, backward=True)
  forward = train_step_flops(model, batch_size, free_bits_lambda, backward=False)
  images_per_s = steps_per_chunk * batch_size / seconds
  peak = peak_flops or matmul_peak_flops()
  num_parameters = int(sum(np.prod(v.shape) for v in model.trainable_variables))
  return {
      'what': 'train',
      'images_per_s': images_per_s,
      'steps_per_s': steps_per_chunk / seconds,
      'flops_per_image': counted['matmul_conv'],
      'flops_per_image_counted': 'forward+backward (conv/matmul, graph ops, static shapes)',
      'forward_flops_per_image': forward['matmul_conv'],
      'elementwise_flops_per_image': counted['elementwise'],
      'counted_function_calls': counted['function_calls'],
      'counted_loops': counted['loops'],
      'peak_flops': peak,
      'achieved_flops': images_per_s * counted['matmul_conv'],
      'fraction_of_peak': images_per_s * counted['matmul_conv'] / peak,
      'batch_size': batch_size,
      'replicas': strategy.num_replicas_in_sync,
      'steps_per_chunk': steps_per_chunk,
      'repeats': repeats,
      'trainable_parameters': num_parameters,
      'xla': trainer.jit_compile,
      'accumulation_steps': trainer.accumulation_steps,
      'gradient_bytes_per_step': 4 * num_parameters,
  }


def benchmark_eval(model, images: tf.Tensor, num_samples: int = 4096, chunk_size: int = 64,
                   repeats: int = 3, warmup: int = 1, jit_compile: bool = False) -> Dict:
  """Importance samples per second of `model.log_likelihood` on `images` in a tf.function
  (compiled by XLA with `jit_compile`, as the evaluator compiles it)."""
  log_likelihood = tf.function(
      lambda x, seed: model.log_likelihood(x, num_samples, seed, chunk_size=chunk_size),
      autograph=False, jit_compile=bool(jit_compile))
  seed = tf.constant([0, 1], tf.int32)
  for _ in range(max(1, warmup)):
    log_likelihood(images, seed).numpy()
  seconds = _median_seconds(lambda: log_likelihood(images, seed).numpy(), repeats)
  batch = int(images.shape[0])
  return {
      'what': 'eval',
      'importance_samples_per_s': batch * num_samples / seconds,
      'seconds_per_batch': seconds,
      'batch_size': batch,
      'num_samples': num_samples,
      'chunk_size': chunk_size,
      'replicas': 1,
      'repeats': repeats,
  }


def benchmark_sample(model, methods: Sequence[str] = ('sequential', 'fast'), repeats: int = 3,
                     naive_repeats: int = 1, warmup: int = 1) -> Dict:
  """Seconds to draw 100 images with each sampler, timed exactly (never extrapolated).

  The naive sampler ('sequential', one decoder pass per pixel) is timed `naive_repeats` times;
  its warm-up is one trace (`get_concrete_function`), not a run, so its time includes graph
  optimization of the first run (a fraction of a second).
  """
  result = {'what': 'sample', 'num_images': NUM_SAMPLE_IMAGES, 'replicas': 1}
  for method in methods:
    key = SAMPLE_METHODS[method]
    sampler = tf.function(lambda seed, method=method: model.sample(NUM_SAMPLE_IMAGES, seed,
                                                                   method=method),
                          autograph=False)
    seed = tf.constant([2, 3], tf.int32)
    if method == 'sequential':
      sampler.get_concrete_function(seed)
      result[f'{key}_seconds_per_100'] = _median_seconds(lambda: sampler(seed).numpy(),
                                                         naive_repeats)
      result[f'{key}_repeats'] = naive_repeats
      result['naive_decoder_passes'] = math.prod(model.image_shape[:2])
      result['naive_extrapolated'] = False
    else:
      for _ in range(max(1, warmup)):
        sampler(seed).numpy()
      result[f'{key}_seconds_per_100'] = _median_seconds(lambda: sampler(seed).numpy(), repeats)
      result[f'{key}_repeats'] = repeats
  return result


def benchmark_profile(model, batch: tf.Tensor, repeats: int = 5, warmup: int = 1,
                      jit: bool = True) -> Dict:
  """Where one replica's step goes: forward, forward+backward and each ELBO part, timed apart.

  Parts (forward only, each its own tf.function on the same batch): encoder + posterior sample,
  prior log p(z) (the AF prior's MADE passes), context network g(z), PixelCNN decoder, pixel
  likelihood. With `jit`, forward and forward+backward again under XLA (jit_compile=True).
  """
  batch_size = int(batch.shape[0])
  seed = tf.constant([0, 1], tf.int32)
  result = {'what': 'profile', 'batch_size': batch_size, 'replicas': 1, 'repeats': repeats}

  def timed(fn, *args):
    for _ in range(max(1, warmup)):
      tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    return _median_seconds(lambda: tf.nest.map_structure(lambda t: t.numpy(), fn(*args)),
                           repeats)

  variants = [('', False)] + ([('xla_', True)] if jit else [])
  for prefix, jit_compile in variants:
    for name, backward in (('forward', False), ('forward_backward', True)):
      fn = tf.function(loss_function(model, batch_size, 0.01, backward), jit_compile=jit_compile,
                       autograph=False)
      try:
        result[f'{prefix}{name}_seconds'] = timed(fn, batch, seed)
      except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
        result[f'{prefix}{name}_error'] = str(error).splitlines()[0][:200]

  if model.has_latent:
    encoded = model.encoder(model.likelihood.network_input(batch))
    posterior = model.posterior(encoded.loc, encoded.scale, encoded.context)
    z = posterior.sample(seed=seed)
    context = model.context_network(z)
    params = model.decoder(model.likelihood.network_input(batch), context)

    def encode(x, seed):
      encoded = model.encoder(model.likelihood.network_input(x), training=True)
      return model.posterior(encoded.loc, encoded.scale,
                             encoded.context).experimental_sample_and_log_prob(seed=seed)

    parts = {
        'encoder_posterior': (encode, batch, seed),
        'prior_log_prob': (lambda z: model.prior_distribution().log_prob(z), z),
        'context_network': (lambda z: model.context_network(z, training=True), z),
        'decoder': (lambda x, c: model.decoder(model.likelihood.network_input(x), c,
                                               training=True), batch, context),
        'likelihood': (lambda p, x: model.likelihood(p).log_prob(x), params, batch),
    }
    for name, (fn, *args) in parts.items():
      function = tf.function(fn, autograph=False)
      result[f'{name}_seconds'] = timed(function, *args)
      graph = function.get_concrete_function(*args).graph
      result[f'{name}_forward_flops_per_image'] = count_flops(graph)['matmul_conv'] / batch_size

      def with_gradient(*args, fn=fn):
        with tf.GradientTape() as tape:
          value = tf.reduce_sum(tf.nest.flatten(fn(*args))[0])
        return tape.gradient(value, model.trainable_variables,
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)

      result[f'{name}_forward_backward_seconds'] = timed(
          tf.function(with_gradient, autograph=False), *args)
  return result


# ---------------------------------------------------------------------------------------------
# The driver.


PRECISION_BINDING = 'vlae.VLAE.precision'
JIT_COMPILE_BINDING = 'train.jit_compile'


def bound_precision() -> str:
  """The gin-bound `VLAE.precision` ('float32' when unbound)."""
  try:
    return gin.query_parameter(PRECISION_BINDING)
  except ValueError:
    return precision_lib.FLOAT32


def _bind_precision(precision: str):
  with gin.unlock_config():  # Parsing finalizes (locks) the config.
    gin.bind_parameter(PRECISION_BINDING, precision)


def _bind_jit_compile(value):
  with gin.unlock_config():
    gin.bind_parameter(JIT_COMPILE_BINDING, value)


def parse_jit_compile(text: str):
  """'auto', 'true' or 'false' (any case; bin/benchmark's --jit_compile) as train.jit_compile."""
  value = {'auto': 'auto', 'true': True, 'false': False}.get(str(text).lower())
  if value is None:
    raise errors.CliError(f'Unknown --jit_compile value {text!r}; expected some of '
                          'auto,true,false.')
  return value


def run(what: Sequence[str] = ('train', 'eval', 'sample'), batch_size: Optional[int] = None,
        data_dir=None, repeats: int = 3, warmup: int = 1, steps_per_chunk: int = 20,
        eval_batch_size: int = 8, num_samples: int = 4096, chunk_size: int = 64,
        sample_methods: Sequence[str] = ('sequential', 'fast'), naive_repeats: int = 1,
        peak_repeats: int = 5, jit: bool = True, emit=None,
        precisions: Optional[Sequence[str]] = None,
        jit_compiles: Optional[Sequence] = None) -> List[Dict]:
  """Runs the benchmarks in `what` on the model of the parsed gin config, in each precision.

  Args:
    what: a subset of WHATS.
    batch_size: the global training batch (default: gin `train.batch_size`); also the profile's.
    data_dir: where `datasets.load` finds the raw files (default: $VLAE_DATA_DIR).
    repeats: timed repetitions (the median is reported), after `warmup` untimed ones.
    warmup: untimed repetitions (at least one: it traces).
    steps_per_chunk: training steps per timed `train_loop` call.
    eval_batch_size, num_samples, chunk_size: the log_likelihood call that eval times.
    sample_methods: samplers to time ('sequential' is the naive one, 'fast', 'fixed_point').
    naive_repeats: timed runs of the naive sampler (no warm-up run).
    peak_repeats: timed repetitions of the 2048^3 matmuls (float32 and bfloat16).
    jit: also time the profile under XLA.
    emit: called with every result as soon as it is measured (e.g. to print it).
    precisions: values of gin `VLAE.precision` to measure (default: the bound one); each
      benchmark runs once per precision, one after the other.
    jit_compiles: values of gin `train.jit_compile` ('auto', True, False) to measure train and
      eval with (default: the bound one), each in turn within a precision. Every line has "xla",
      whether its measurement ran compiled (sample: never; profile: both, its xla_ keys).

  Returns:
    One dict per benchmark and precision, each with the machine's measured peaks and its state.
  """
  unknown = set(what) - set(WHATS)
  if unknown:
    raise errors.CliError(f'Unknown benchmarks {sorted(unknown)}; expected a subset of {WHATS}.')
  bound = bound_precision()
  precisions = list(precisions or [bound])
  for precision in precisions:
    if precision not in precision_lib.PRECISIONS:
      raise errors.CliError(f'Unknown precision {precision!r}; expected some of '
                            f'{",".join(precision_lib.PRECISIONS)}.')
  bound_jit = settings_lib.train_settings()['jit_compile']
  jit_compiles = [settings_lib.check_jit_compile(value) for value in jit_compiles or [bound_jit]]
  if batch_size is None:
    batch_size = settings_lib.train_settings()['batch_size']
  dtypes = {tf.float32, tf.bfloat16} | {precision_lib.compute_dtype(p) for p in precisions}
  peaks = {dtype: matmul_peak_flops(repeats=peak_repeats, dtype=dtype)
           for dtype in sorted(dtypes, key=lambda dtype: dtype.name)}
  results = []
  models = {}

  def finish(result, precision, jit_compile=None, xla=None):
    compute_dtype = precision_lib.compute_dtype(precision)
    peak = peaks[compute_dtype]
    if 'achieved_flops' in result:
      result['fraction_of_peak'] = result['achieved_flops'] / peak
    result.update(precision=precision, compute_dtype=compute_dtype.name, peak_flops=peak,
                  jit_compile=jit_compile,
                  **{f'peak_flops_{dtype.name}': value for dtype, value in peaks.items()},
                  **machine_info())
    result.setdefault('xla', xla)  # benchmark_train says what its trainer did.
    results.append(result)
    if emit:
      emit(result)

  try:
    for name in what:
      for precision in precisions:
        _bind_precision(precision)
        if name == 'train':
          for jit_compile in jit_compiles:
            _bind_jit_compile(jit_compile)
            machine.reset_device_peak()
            finish(benchmark_train(batch_size, data_dir, steps_per_chunk, repeats, warmup,
                                   peak_flops=peaks[precision_lib.compute_dtype(precision)]),
                   precision, jit_compile)
          continue
        if precision not in models:
          models[precision] = initialized_model(real_batch(batch_size, data_dir))
        model = models[precision]
        machine.reset_device_peak()  # sample, profile
        if name == 'eval':
          for jit_compile in jit_compiles:
            machine.reset_device_peak()
            xla = accelerators.use_xla(jit_compile)
            finish(benchmark_eval(model, real_batch(eval_batch_size, data_dir, split='test'),
                                  num_samples, chunk_size, repeats, warmup, xla),
                   precision, jit_compile, xla)
        elif name == 'sample':
          finish(benchmark_sample(model, sample_methods, repeats, naive_repeats, warmup),
                 precision, xla=False)
        elif name == 'profile':
          finish(benchmark_profile(model, real_batch(batch_size, data_dir), repeats, warmup, jit),
                 precision)
  finally:
    _bind_precision(bound)
    _bind_jit_compile(bound_jit)
  return results


def to_json_line(result: Dict) -> str:
  """One result as one JSON line (floats to 4 significant digits)."""

  def compact(value):
    if isinstance(value, float):
      return float(f'{value:.4g}')
    return value

  return json.dumps({key: compact(value) for key, value in result.items()})
