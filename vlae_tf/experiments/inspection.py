"""What the lossy code keeps: the report behind bin/inspect.

    bin/inspect --model_dir=D [--max_examples=1000] [--probe_train_examples=10000] [--data_dir=...]
    bin/inspect --model_dir=A --model_dir=B ... --output_dir=O     (several runs side by side)

With the Polyak-averaged weights of a run, on an evenly spread subset of the test split, it writes
into <model_dir>/inspect/ (atomically):

* report.json
  - `rate_distortion`: per image, with one z ~ q(z|x),
        rate       = log q(z|x) - log p(z)       (the KL, bits per image)
        distortion = -log p(x|z)                 (bits per image)
    and their sum (-ELBO), means with standard errors. A local-window decoder makes the rate small
    and keeps it global: what the window can model locally is cheaper in the decoder.
  - `probe`: a multinomial logistic regression (scikit-learn, `pip install vlae_tf[inspect]`) on
    the encoder's posterior means (the mean of q's base Gaussian; for a diagonal-Gaussian posterior
    the posterior mean of z), fitted on `probe_train_examples` evenly spread training images with
    their labels (L2 strength chosen on a held-out fifth of them) and scored on the test subset
    (accuracy, cross-entropy in nats); the same probe on raw pixels is the reference. Datasets
    without labels give a message instead.
  - `pixel_maps`: bits per image (the maps summed, averaged over the mapped images) under z from
    the posterior and under z from the prior (or the model of `compare_model_dir`).
* pixel_maps.png: for a few test images, one row each: the image, -log2 p(x_ij | window, z) with z
  from the posterior, the same with z from the prior (or under the comparison model), and their
  difference (red: bits that z saves).
* reconstructions.png: each test image beside several decodings of its own z (`image_grids`).

With several runs (`compare`): comparison.md (one row per run: window, rate, distortion, probe),
rate_vs_window.png (rate against the decoder's receptive field, when the windows differ) and
reconstructions.png (the runs' reconstruction grids of the same test images, one under the other).
"""

import json
import math
import os
import sys
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from vlae_tf.data import batching
from vlae_tf.data import datasets
from vlae_tf import errors
from vlae_tf import files
from vlae_tf.data import labels as labels_lib
from vlae_tf.runs import opening
from vlae_tf import image_grids
from vlae_tf import seeds

REPORT_FILE = 'report.json'
MAPS_FILE = 'pixel_maps.png'
RECONSTRUCTIONS_FILE = 'reconstructions.png'
INSPECT_DIR = 'inspect'
_LOG2 = math.log(2.0)


def _log(message: str, stream=None):
  stream = stream or sys.stderr
  stream.write(f'inspect: {message}\n')
  stream.flush()


def _mean_and_stderr(values: np.ndarray) -> dict:
  values = np.asarray(values, np.float64)
  return {'mean': float(values.mean()),
          'stderr': (float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1
                     else float('nan'))}


def _subset(dataset_name: str, split: str, max_examples: Optional[int], data_dir):
  """(images float32 [N, H, W, C], indices into the split) of the evenly spread subset."""
  images = datasets.load(dataset_name, split, data_dir=data_dir)
  size = batching.cardinality(images)
  subset = batching.strided_subset(images, max_examples, size)
  array = np.concatenate([batch for batch in subset.batch(1000).as_numpy_iterator()])
  return array, batching.subset_indices(size, max_examples)


def _seed(seed: int, *salts):
  return seeds.stateless_seed(seed, seeds.INSPECTION_SALT, *salts)


def rate_distortion(model, images: np.ndarray, batch_size: int = 100, seed: int = 0) -> dict:
  """Per-image rate (KL) and distortion (-log p(x|z)) in bits, one z ~ q(z|x) each.

  Returns:
    {'rate_bits', 'distortion_bits', 'nll_bound_bits'}: each {'mean', 'stderr'}, and
    'per_image': {'rate_bits': [N], 'distortion_bits': [N]}.
  """
  elbo = tf.function(lambda x, s: model.elbo(x, s, training=False), autograph=False)
  rates, distortions = [], []
  for index, start in enumerate(range(0, len(images), batch_size)):
    terms = elbo(tf.constant(images[start:start + batch_size]), _seed(seed, 1, index))
    rates.append(terms['kl'].numpy() / _LOG2)
    distortions.append(-terms['log_px_z'].numpy() / _LOG2)
  rate, distortion = np.concatenate(rates), np.concatenate(distortions)
  return {'rate_bits': _mean_and_stderr(rate),
          'distortion_bits': _mean_and_stderr(distortion),
          'nll_bound_bits': _mean_and_stderr(rate + distortion),
          'per_image': {'rate_bits': rate, 'distortion_bits': distortion}}


def posterior_means(model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
  """[N, prod(latent_shape)]: the means of q(z|x)'s base Gaussian."""
  encode = tf.function(
      lambda x: model.encoder(model.likelihood.network_input(x)).loc, autograph=False)
  means = [encode(tf.constant(images[start:start + batch_size])).numpy()
           for start in range(0, len(images), batch_size)]
  return np.concatenate(means).reshape(len(images), -1)


PROBE_C_GRID = (0.001, 0.01, 0.1, 1.0)


def linear_probe(train_features, train_labels, test_features, test_labels, seed=0,
                 max_iter=2000, c_grid=PROBE_C_GRID, held_out=0.2) -> dict:
  """Multinomial logistic regression on standardized features: test accuracy and cross-entropy.

  scikit-learn's LogisticRegression (lbfgs, L2) after a StandardScaler fitted on the training
  features. The inverse regularization strength C is chosen from `c_grid` by the cross-entropy on
  a held-out fraction of the training examples (every 1/held_out-th one), then the probe is refitted
  on all of them: the test split is never used for a choice.

  Returns:
    {'accuracy', 'cross_entropy_nats', 'chance_accuracy', 'c', 'num_train', 'num_test',
    'num_features', 'converged'}.
  """
  try:
    from sklearn import linear_model  # pylint: disable=g-import-not-at-top
    from sklearn import metrics  # pylint: disable=g-import-not-at-top
    from sklearn import pipeline  # pylint: disable=g-import-not-at-top
    from sklearn import preprocessing  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise errors.RunError('The linear probe needs scikit-learn: pip install '
                            '"vlae_tf[inspect]" (or scikit-learn).') from error
  train_features = np.asarray(train_features, np.float64)
  test_features = np.asarray(test_features, np.float64)
  train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
  classes = np.unique(np.concatenate([train_labels, test_labels]))

  def all_classes(fitted, features):
    """Probabilities over every class (0 for a class the probe never saw in training)."""
    probabilities = np.zeros((len(features), len(classes)))
    probabilities[:, np.searchsorted(classes, fitted.classes_)] = fitted.predict_proba(features)
    return probabilities

  def fit(features, labels, c):
    classifier = pipeline.make_pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
    return classifier.fit(features, labels)

  every = max(int(round(1.0 / held_out)), 2)
  is_held_out = np.arange(len(train_labels)) % every == every - 1
  losses = {}
  for c in c_grid:
    fitted = fit(train_features[~is_held_out], train_labels[~is_held_out], c)
    losses[c] = metrics.log_loss(train_labels[is_held_out],
                                 all_classes(fitted, train_features[is_held_out]),
                                 labels=classes)
  best_c = min(losses, key=losses.get)
  classifier = fit(train_features, train_labels, best_c)
  probabilities = all_classes(classifier, test_features)
  predicted = classes[probabilities.argmax(axis=1)]
  counts = np.bincount(np.searchsorted(classes, train_labels), minlength=len(classes))
  return {
      'accuracy': float((predicted == test_labels).mean()),
      'cross_entropy_nats': float(metrics.log_loss(test_labels, probabilities, labels=classes)),
      'classes_unseen_in_training': int(len(classes) - len(classifier.classes_)),
      'chance_accuracy': float(counts.max() / counts.sum()),
      'c': float(best_c),
      'held_out_cross_entropy_nats': {str(c): float(loss) for c, loss in losses.items()},
      'num_train': int(len(train_labels)),
      'num_test': int(len(test_labels)),
      'num_features': int(train_features.shape[1]),
      'converged': bool(np.all(np.asarray(classifier[-1].n_iter_) < max_iter)),
  }


def pixel_bits(model, images: np.ndarray, z) -> np.ndarray:
  """-log2 p(x_ij | window, z) summed over channels: [N, H, W]."""
  log_prob = model.pixel_log_prob(tf.constant(images), z)  # [N, H, W, C] nats
  return (-tf.reduce_sum(log_prob, axis=-1) / _LOG2).numpy()


def _heat(values: np.ndarray, vmax: float, diverging: bool = False) -> np.ndarray:
  """uint8 RGB [..., 3]: 0 white -> vmax dark red; diverging: -vmax blue, 0 white, +vmax red."""
  scaled = np.clip(values / max(vmax, 1e-9), -1.0 if diverging else 0.0, 1.0)
  positive, negative = np.clip(scaled, 0, 1), np.clip(-scaled, 0, 1)
  red = 255 * (1 - 0.45 * positive) * (1 - negative)
  green = 255 * (1 - positive) * (1 - 0.6 * negative)
  blue = 255 * (1 - positive) * (1 - 0.1 * negative)
  return np.stack([red, green, blue], axis=-1).astype(np.uint8)


# The maps' tiles are enlarged to at least this width, so that a column's caption (Pillow's default
# font, about 6 pixels a character) fits above it at 8x8 as at 105x105.
MIN_TILE_WIDTH = 100


def maps_grid(images_uint8: np.ndarray, posterior_bits: np.ndarray, other_bits: np.ndarray,
              scale: Optional[int] = None, headers=('image', 'bits | z~q(z|x)', 'bits | z~p(z)',
                                                    'saved by z')) -> np.ndarray:
  """Rows of [image | posterior map | other map | other - posterior], upscaled `scale` times
  (default: the smallest whole factor that makes a tile MIN_TILE_WIDTH pixels wide).

  Bits are -log2 p(x_ij | window, z) per pixel: white 0, dark red the 99.5th percentile of both
  maps; the difference is red where z saves bits, blue where it costs bits.
  """
  vmax = float(np.percentile(np.concatenate([posterior_bits, other_bits]), 99.5))
  saved = other_bits - posterior_bits
  vmax_saved = float(np.percentile(np.abs(saved), 99.5))
  images_rgb = (np.repeat(images_uint8, 3, axis=-1) if images_uint8.shape[-1] == 1
                else images_uint8)
  tiles = np.stack([images_rgb, _heat(posterior_bits, vmax), _heat(other_bits, vmax),
                    _heat(saved, vmax_saved, diverging=True)], axis=1)  # [N, 4, H, W, 3]
  scale = scale or max(1, math.ceil(MIN_TILE_WIDTH / images_uint8.shape[2]))
  tiles = tiles.repeat(scale, axis=2).repeat(scale, axis=3)
  grid = image_grids.image_grid(tiles.reshape((-1,) + tiles.shape[2:]), columns=4, padding=2,
                             background=255)
  return _with_header(grid, headers, tiles.shape[3] + 2)


def _with_header(grid: np.ndarray, headers, column_width: int, height: int = 28) -> np.ndarray:
  """The grid under a white strip with one caption per column (Pillow's default font)."""
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top
  strip = Image.new('RGB', (grid.shape[1], height), 'white')
  draw = ImageDraw.Draw(strip)
  font = ImageFont.load_default()
  for index, text in enumerate(headers):
    for line_number, line in enumerate(text.split('\n')):
      draw.text((index * column_width + 4, 2 + 12 * line_number), line, fill=(0, 0, 0),
                font=font)
  return np.concatenate([np.asarray(strip), grid], axis=0)


def inspect(model_dir: str,
            split: str = 'test',
            max_examples: Optional[int] = 1000,
            probe_train_examples: Optional[int] = 10000,
            num_maps: int = 6,
            num_reconstructions: int = 8,
            num_decodings: int = 7,
            compare_model_dir: Optional[str] = None,
            data_dir=None,
            seed: int = 0,
            stream=None,
            reuse: bool = False,
            checkpoint=None) -> dict:
  """Writes <model_dir>/inspect/{report.json, pixel_maps.png, reconstructions.png}.

  Inspects the newest intact checkpoint, or `checkpoint` (a step N or a prefix
  <model_dir>/ckpt-N; checked like bin/eval's: a damaged one is a one-line error). With `reuse`,
  an existing report of the same checkpoint and settings is returned as it is.

  Returns:
    The report.
  """
  began = time.time()
  settings = {'split': split, 'max_examples': max_examples,
              'probe_train_examples': probe_train_examples, 'num_maps': num_maps,
              'num_reconstructions': num_reconstructions, 'num_decodings': num_decodings,
              'compare_model_dir': compare_model_dir, 'seed': seed}
  output_dir = os.path.join(model_dir, INSPECT_DIR)
  existing = os.path.join(output_dir, REPORT_FILE)
  # The newest intact checkpoint (a damaged newer one is named in a warning), or the one asked.
  run = opening.open_run(model_dir, checkpoint)
  model, step, checkpoint = run.model, run.step, run.checkpoint_path
  dataset_name = run.needs_dataset()
  if reuse and os.path.isfile(existing):
    with open(existing) as f:
      previous = json.load(f)
    if previous.get('settings') == settings and previous.get('checkpoint') == checkpoint:
      _log(f'{model_dir}: reusing {existing} (same checkpoint and settings)', stream)
      return previous
  images, test_indices = _subset(dataset_name, split, max_examples, data_dir)
  _log(f'{model_dir} step {step}: {len(images)} {dataset_name} {split} images', stream)
  report = {'model_dir': model_dir, 'checkpoint': checkpoint, 'step': step,
            'dataset': dataset_name, 'split': split, 'num_examples': int(len(images)),
            'latent_shape': list(model.latent_shape), 'num_dims': int(model.num_dims),
            'settings': settings}
  window = getattr(model.decoder, 'window', None)
  report['decoder_window_pixels'] = None if window is None else len(window())

  # a. Rate and distortion.
  started = time.time()
  _log(f'rate and distortion of {len(images)} {split} images...', stream)
  rd = rate_distortion(model, images, seed=seed)  # without z, the rate is 0
  report['rate_distortion'] = {key: value for key, value in rd.items() if key != 'per_image'}
  _log(f'rate {rd["rate_bits"]["mean"]:.2f} bits, distortion {rd["distortion_bits"]["mean"]:.2f} '
       f'bits per image ({time.time() - started:.0f} s)', stream)

  # b. The linear probe.
  started = time.time()
  report['probe'] = _probe(model, dataset_name, split, images, test_indices,
                           probe_train_examples, data_dir, seed, stream)
  _log(f'probe done ({time.time() - started:.0f} s)', stream)

  # c. Per-pixel maps.
  _log('per-pixel maps and reconstructions...', stream)
  map_images = images[batching.subset_indices(len(images), num_maps)]
  report['pixel_maps'] = _pixel_maps(model, map_images, output_dir, compare_model_dir, seed)
  # d. Lossy reconstructions (the grid of bin/sample).
  if model.has_latent and num_reconstructions:
    chosen = images[batching.subset_indices(len(images), num_reconstructions)]
    image_grids.write_png(os.path.join(output_dir, RECONSTRUCTIONS_FILE), image_grids.enlarged(
        image_grids.reconstruction_grid(model, chosen, num_decodings, seed)))
    report['reconstructions_png'] = os.path.join(output_dir, RECONSTRUCTIONS_FILE)
  report['seconds'] = time.time() - began
  files.atomic_write_json(os.path.join(output_dir, REPORT_FILE), report)
  _log(f'wrote {os.path.join(output_dir, REPORT_FILE)} ({report["seconds"]:.0f} s)', stream)
  return report


def _probe(model, dataset_name, split, test_images, test_indices, probe_train_examples,
           data_dir, seed, stream):
  """The probe on z and on pixels, or {'unavailable': why}."""
  try:
    test_labels = labels_lib.load_labels(dataset_name, split, data_dir, indices=test_indices)
    train_images, train_indices = _subset(dataset_name, 'train', probe_train_examples, data_dir)
    train_labels = labels_lib.load_labels(dataset_name, 'train', data_dir, indices=train_indices)
  except errors.LabelsUnavailableError as error:
    _log(f'no probe: {error}', stream)
    return {'unavailable': str(error)}
  probe = {}
  _log(f'probe: logistic regressions on {len(train_images)} training images (z, then pixels; '
       'a minute or two)...', stream)
  if model.has_latent:
    probe['latent'] = linear_probe(posterior_means(model, train_images), train_labels,
                                   posterior_means(model, test_images), test_labels, seed)
    _log(f'probe on z: accuracy {probe["latent"]["accuracy"]:.4f}', stream)
  else:
    probe['latent'] = {'unavailable': 'the model has no latent variable'}
  flat = lambda x: x.reshape(len(x), -1)
  probe['pixels'] = linear_probe(flat(train_images), train_labels, flat(test_images),
                                 test_labels, seed)
  _log(f'probe on pixels: accuracy {probe["pixels"]["accuracy"]:.4f}', stream)
  return probe


def _pixel_maps(model, images, output_dir, compare_model_dir, seed):
  """Writes pixel_maps.png; returns the mean bits per pixel of each map."""
  if model.has_latent:
    _, posterior_z = model.encode(tf.constant(images), _seed(seed, 2))
    posterior = pixel_bits(model, images, posterior_z)
  else:
    posterior = pixel_bits(model, images, None)
  if compare_model_dir:
    other_model = opening.open_run(compare_model_dir).model
    other_z = None
    if other_model.has_latent:
      _, other_z = other_model.encode(tf.constant(images), _seed(seed, 2))
    other = pixel_bits(other_model, images, other_z)
    other_label = f'under {compare_model_dir}'
  elif model.has_latent:
    prior_z = model.prior_distribution().sample(len(images), seed=_seed(seed, 3))
    other = pixel_bits(model, images, prior_z)
    other_label = 'z from the prior'
  else:
    other, other_label = posterior, 'no latent variable'
  other_header = 'bits | z~p(z)' if other_label == 'z from the prior' else 'bits | other'
  path = image_grids.write_png(os.path.join(output_dir, MAPS_FILE), maps_grid(
      image_grids.to_uint8(images, model.data_kind), posterior, other,
      headers=('image', 'bits | z~q(z|x)', other_header, 'saved by z')))
  return {'png': path, 'num_images': int(len(images)), 'columns': [
      'image', '-log2 p(x_ij | window, z ~ q(z|x))', f'-log2 p(x_ij | ...), {other_label}',
      'difference (red: bits that z saves)'],
          'posterior_bits_per_image': float(posterior.sum(axis=(1, 2)).mean()),
          'other_bits_per_image': float(other.sum(axis=(1, 2)).mean()),
          'other': other_label}


def compare(reports, output_dir: str, labels=None) -> dict:
  """Writes comparison.md, rate_vs_window.png and reconstructions.png for several reports.

  Args:
    reports: `inspect` reports of runs on the same data (the same test images).
    output_dir: where to write.
    labels: a name per report (default: the run directories' names).

  Returns:
    {'markdown': path, 'reconstructions': path or None, 'rate_vs_window': path or None}.
  """
  from vlae_tf.evaluation import plots  # pylint: disable=g-import-not-at-top
  labels = labels or [os.path.basename(os.path.normpath(r['model_dir'])) for r in reports]
  lines = ['| run | decoder window (pixels) | step | rate = KL (bits) | distortion (bits) | '
           '-ELBO (bits) | probe accuracy on z | probe cross-entropy on z (nats) | '
           'probe accuracy on pixels |', '|---|---|---|---|---|---|---|---|---|']
  for label, report in zip(labels, reports):
    rd = report['rate_distortion']
    cells = [f'{rd[key]["mean"]:.2f} +- {rd[key]["stderr"]:.2f}'
             for key in ('rate_bits', 'distortion_bits', 'nll_bound_bits')]
    latent = report['probe'].get('latent', {})
    pixels = report['probe'].get('pixels', {})
    probe_cells = [f'{latent["accuracy"]:.3f}' if 'accuracy' in latent else '-',
                   f'{latent["cross_entropy_nats"]:.3f}' if 'accuracy' in latent else '-',
                   f'{pixels["accuracy"]:.3f}' if 'accuracy' in pixels else '-']
    lines.append(f'| {label} | {report["decoder_window_pixels"]} | {report["step"]} | ' +
                 ' | '.join(cells + probe_cells) + ' |')
  first = reports[0]
  lines += ['', f'{first["num_examples"]} evenly spread {first["dataset"]} {first["split"]} '
            'images; one z ~ q(z|x) per image; probe: logistic regression fitted on '
            f'{first["settings"]["probe_train_examples"]} training images.']
  os.makedirs(output_dir, exist_ok=True)
  paths = {'markdown': os.path.join(output_dir, 'comparison.md'), 'reconstructions': None,
           'rate_vs_window': None}
  files.atomic_write_text(paths['markdown'], '\n'.join(lines) + '\n')
  windows = [r['decoder_window_pixels'] for r in reports]
  if len(set(windows)) > 1 and None not in windows:
    points = sorted((w, r['rate_distortion']['rate_bits']['mean'],
                     r['rate_distortion']['rate_bits']['stderr'])
                    for w, r in zip(windows, reports))
    paths['rate_vs_window'] = plots.write_lines_plot(
        os.path.join(output_dir, 'rate_vs_window.png'), {'rate = KL(q(z|x) || p(z))': points},
        x_label='decoder window (pixels each pixel sees)', y_label='rate (bits per image)',
        title=f'{first["dataset"]}: what goes into z against the decoder\'s receptive field')
  grids = [r.get('reconstructions_png') for r in reports]
  if all(grids):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    arrays = [np.asarray(Image.open(path).convert('RGB')) for path in grids]
    width = max(a.shape[1] for a in arrays)
    blocks = []
    for label, array in zip(labels, arrays):
      padded = np.full((array.shape[0], width, 3), 255, np.uint8)
      padded[:, :array.shape[1]] = array
      blocks.append(_with_header(padded, [label], width, height=16))  # Enlarged already.
    paths['reconstructions'] = image_grids.write_png(
        os.path.join(output_dir, 'reconstructions.png'), np.concatenate(blocks, axis=0))
  return paths
