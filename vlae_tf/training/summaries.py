"""TensorBoard summaries of a training run: ELBO scalars, image grids and the hparams dashboard.

Where `train` writes them (each a TensorBoard run):

    <model_dir>/              hparams: the run's main settings (`run_hparams`) and the metrics
                              the hparams table shows (`METRICS`: their last values)
    <model_dir>/train/        training scalars; images when there is no validation
    <model_dir>/validation/   validation scalars; samples and reconstructions

so that `tensorboard --logdir=<dir>` over several run directories (bin/reproduce's
<output_dir>/runs) lists every run in one hparams table, one row per run, with the final
validation bound, KL and throughput beside dataset, model classes, latent size, learning rate,
batch size, free bits, steps and seed.

Images (`ImageSummaries`) are grids of the Polyak-averaged model, enlarged `IMAGE_SCALE` times by
nearest neighbour (TensorBoard shows images at their own size, and a 28x28 digit is too small to
read): `samples`, and `reconstructions`, rows of a fixed image followed by `NUM_DECODINGS`
decodings of one z ~ q(z|x). The seeds are the same at every step, so the grids of successive
steps show the same draws as the model trains. Rendering runs the autoregressive sampler, so a
write costs more than a step; `ImageSummaries.due` keeps it under `IMAGE_BUDGET` of the wall time.
"""

import math
import time

import numpy as np
from tensorboard.plugins.hparams import api as hp
import tensorflow as tf

from vlae_tf.models import objectives
from vlae_tf import image_grids

IMAGE_SCALE = 4
IMAGE_BUDGET = 0.05
NUM_DECODINGS = 3

# (run subdirectory, scalar tag) of the metrics in the hparams table.
METRICS = (
    ('validation', 'nll_bound_nats'),
    ('validation', 'nll_bound_bits_per_dim'),
    ('validation', 'kl_nats'),
    ('validation', 'reconstruction_nats'),
    ('train', 'loss'),
    ('train', 'examples_per_second'),
)
# The model's parts whose class names are hparams.
MODEL_PARTS = ('encoder', 'posterior', 'prior', 'context_network', 'decoder', 'likelihood')


def write_train_scalars(means, num_dims, learning_rate, bad_steps, steps_per_second, batch_size):
  """The training scalars of one summary (call under a default summary writer and step).

  Args:
    means: `trainer.METRIC_KEYS` averaged over the steps since the last summary.
    num_dims: H * W * C.
    learning_rate: the optimizer's current learning rate.
    bad_steps: steps skipped since the last summary (non-finite loss or gradient).
    steps_per_second: measured since the last summary; None when only a traced chunk ran.
    batch_size: the global batch, for examples per second.
  """
  write_elbo_scalars(means, num_dims)
  tf.summary.scalar('loss', means['loss'])
  tf.summary.scalar('learning_rate', learning_rate)
  tf.summary.scalar('gradient_norm', means['gradient_norm'])
  tf.summary.scalar('kl_weight', means['kl_weight'])
  tf.summary.scalar('bad_steps', bad_steps)
  if steps_per_second is not None:  # Not for the first chunk alone: it traces.
    tf.summary.scalar('steps_per_second', steps_per_second)
    tf.summary.scalar('examples_per_second', steps_per_second * batch_size)


def config_markdown(config):
  """A gin config as TensorBoard markdown: comments as text, bindings as code blocks."""
  lines = []
  for line in config.splitlines():
    if line.startswith('#'):
      lines.append(line.lstrip('# '))
    else:
      lines.append('    ' + line)
  return '\n'.join(lines)


def write_configs(operative_config, config):
  """The operative config and the config as text summaries (under a default writer and step)."""
  tf.summary.text('gin/operative_config', config_markdown(operative_config))
  tf.summary.text('gin/config', config_markdown(config))


def write_elbo_scalars(metrics, num_dims):
  """ELBO terms in nats and bits (call under a default summary writer and step)."""
  nll_bound = -metrics['elbo']
  tf.summary.scalar('elbo_nats', metrics['elbo'])
  tf.summary.scalar('nll_bound_nats', nll_bound)
  tf.summary.scalar('nll_bound_bits_per_dim', objectives.bits_per_dim(nll_bound, num_dims))
  tf.summary.scalar('kl_nats', metrics['kl'])
  tf.summary.scalar('kl_bits', metrics['kl'] / math.log(2.0))
  tf.summary.scalar('reconstruction_nats', -metrics['log_px_z'])


class ImageSummaries:
  """Sample and reconstruction grids of a model, written as `tf.summary.image`.

  Cost: one write renders `count` samples and count // 4 * NUM_DECODINGS decodings with the
  autoregressive sampler (its tf.functions are traced at the first write). `due()` is False while
  the wall time since the previous write is less than its duration / `budget`, so the writes take
  at most `budget` of the run's time (the first write, which traces, is not counted).
  """

  def __init__(self, model, images, count, seed, scale=IMAGE_SCALE, budget=IMAGE_BUDGET):
    """Prepares the renderer.

    Args:
      model: the (averaged) model: `sample`, and `latent_shape`, `encode` and `decode` when it
        has a latent variable, as `image_grids.GridRenderer` reads it.
      images: a dataset of [H, W, C] images to reconstruct (its first count // 4), or None.
      count: samples per grid.
      seed: the integer seed of every write.
      scale: the nearest-neighbour enlargement.
      budget: the largest fraction of wall time spent writing images.
    """
    self.renderer = image_grids.GridRenderer(model)
    self.count = int(count)
    self.seed = int(seed)
    self.scale = int(scale)
    self.budget = float(budget)
    self.originals = None
    if images is not None and self.renderer.can_reconstruct:
      rows = max(self.count // (1 + NUM_DECODINGS), 1)
      self.originals = np.stack([image.numpy() for image in images.take(rows)])
    self.writes = 0
    self.last_seconds = None  # the last write's duration, tracing excluded
    self._last_end = None

  def due(self, now=None):
    """Whether a write now keeps the time spent on images within the budget."""
    if self.last_seconds is None or self._last_end is None:
      return True
    now = time.time() if now is None else now
    return (now - self._last_end) * self.budget >= self.last_seconds

  def write(self):
    """Writes `samples` (and `reconstructions`) under the default writer and step.

    Returns:
      The seconds it took.
    """
    began = time.time()
    grid = self.renderer.sample_grid(self.count, self.seed)
    tf.summary.image('samples', image_grids.upscale(grid, self.scale)[None])
    if self.originals is not None:
      grid = self.renderer.reconstruction_grid(self.originals, NUM_DECODINGS, self.seed)
      tf.summary.image('reconstructions', image_grids.upscale(grid, self.scale)[None])
    self._last_end = time.time()
    seconds = self._last_end - began
    self.writes += 1
    if self.writes > 1:
      self.last_seconds = seconds
    return seconds


def _hparam_value(value):
  """bool, int, float or str, as the hparams plugin takes them."""
  if isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, np.generic):
    return value.item()
  return str(value)


def run_hparams(model, **settings):
  """The run's main settings, for the hparams dashboard.

  Args:
    model: the model: its class, the classes of its parts (`MODEL_PARTS`, 'None' when absent) and
      its latent shape ('none' and 0 without latent variable).
    **settings: further values (dataset, learning_rate, ...), bool, int, float or str.

  Returns:
    {name: value}.
  """
  values = {'model': type(model).__name__}
  for part in MODEL_PARTS:
    component = getattr(model, part, None)
    values[part] = 'None' if component is None else type(component).__name__
  latent_shape = tuple(int(d) for d in getattr(model, 'latent_shape', ()) or ())
  values['latent_size'] = int(np.prod(latent_shape)) if latent_shape else 0
  values['latent_shape'] = 'x'.join(str(d) for d in latent_shape) or 'none'
  values.update(settings)
  return {name: _hparam_value(value) for name, value in values.items()}


def write_hparams(writer, hparams, start_time=None):
  """Writes the hparams table's configuration and this run's values with `writer` (step 0).

  Every run writes the same configuration (the names of `hparams` and `METRICS`), so TensorBoard
  can take any run's as the experiment's.
  """
  with writer.as_default():
    hp.hparams_config(
        hparams=[hp.HParam(name) for name in hparams],
        metrics=[hp.Metric(tag, group=group, display_name=f'{group}/{tag}')
                 for group, tag in METRICS])
    hp.hparams(hparams, start_time_secs=None if start_time is None else int(start_time))
  writer.flush()


def end_hparams_session(model_dir, status):
  """Closes the run's hparams session in <model_dir> with `status`: 'success', 'stopped' (a
  signal stopped it: the plugin has no 'aborted', so RUNNING, resumable) or 'failure'; the
  hparams table shows it instead of UNKNOWN."""
  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.hparams import api_pb2
  from tensorboard.plugins.hparams import summary as hparams_v1
  # pylint: enable=g-import-not-at-top
  code = {'success': api_pb2.STATUS_SUCCESS, 'stopped': api_pb2.STATUS_RUNNING,
          'failure': api_pb2.STATUS_FAILURE}[status]
  writer = tf.summary.create_file_writer(model_dir)
  with writer.as_default():
    tf.summary.experimental.write_raw_pb(
        hparams_v1.session_end_pb(code).SerializeToString(), step=0)
  writer.close()
