"""--dataset, --image_size and --binarize: one's own images on the command line (docs/usage.md,
"Your own images").

    bin/train --dataset=NAME_OR_PATH [--image_size=HxW] [--binarize=threshold|dynamic]
    bin/eval / bin/inspect --dataset=...   (another dataset of the same image shape)

bin/train binds the flags in gin after every other binding (`train.dataset`,
`user_images.image_size`, `user_images.binarize`), so config.gin records them and the run's readers
(eval, sample, inspect, export, compress) read the same images. With no model in the gin files,
`prepare_training_config` parses gin again with the model family that fits the pixels
(data/model_choice.py) right after base.gin.
"""

from absl import flags
from absl import logging

from vlae_tf import errors
from vlae_tf import gin_parsing


def define_dataset_flags(train=False, of_run=True):
  """--dataset (every binary that reads data); --image_size and --binarize for bin/train.

  `of_run`: the binary reads a run, whose own dataset is the default.
  """
  flags.DEFINE_string(
      'dataset', None, 'The data: a dataset name (static_mnist, ...), a folder of images '
      '(PNG/JPEG/BMP/GIF; flat, one subfolder per class, or train/ and test/), a .npy/.npz array '
      '[N, H, W(, C)] or tfds:NAME. ' + ('Default: the run\'s own.' if of_run and not train else
                                         'Default: the gin files\' train.dataset.'))
  if train:
    flags.DEFINE_string('image_size', None, 'Resize one\'s own images to HEIGHTxWIDTH, e.g. '
                        '52x52 (default: their own size).')
    flags.DEFINE_enum('binarize', None, ['threshold', 'dynamic'], 'Binarize grey images: '
                      'threshold (>= 128) or dynamic (Bernoulli samples, afresh every epoch).')


def resolve(dataset):
  """The --dataset of a reader as `run_config.reading_dataset` takes it (None: the run's)."""
  if not dataset:
    return None
  from vlae_tf.data import user_images  # pylint: disable=g-import-not-at-top
  return user_images.resolve_source(dataset)


def dataset_bindings(dataset, image_size=None, binarize=None):
  """The gin bindings of the flags (the dataset path made absolute)."""
  from vlae_tf.data import user_images  # pylint: disable=g-import-not-at-top
  if not dataset:
    if image_size or binarize:
      raise errors.CliError('--image_size and --binarize apply to one\'s own images: give '
                            '--dataset=FOLDER_OR_ARRAY too.')
    return []
  if not user_images.is_user_source(dataset) and (image_size or binarize):
    raise errors.CliError(f'--image_size and --binarize apply to one\'s own images, not to '
                          f'the catalogue dataset {dataset}.')
  bindings = [f'train.dataset = {user_images.resolve_source(dataset)!r}']
  if image_size:
    size = user_images.parse_image_size(image_size)
    bindings.append(f'user_images.image_size = {size!r}')
  if binarize:
    bindings.append(f'user_images.binarize = {binarize!r}')
  return bindings


def _describe(dataset):
  """(shape, kind, training images, one's own images or None) of a dataset name or source."""
  # pylint: disable=g-import-not-at-top
  from vlae_tf.data import catalogue
  from vlae_tf.data import user_images
  # pylint: enable=g-import-not-at-top
  if user_images.is_user_source(dataset):
    images = user_images.read_configured(dataset)
    return images.shape, images.kind, images.sizes()['train'], images
  info = catalogue.info(dataset)
  return info.shape, info.kind, info.split_sizes['train'], None


def prepare_training_config(gin_files=(), gin_params=(), dataset=None, image_size=None,
                            binarize=None):
  """Parses bin/train's gin config with the dataset flags; picks a model when none is bound.

  Reads one's own images before anything is written (each problem one DatasetError line), prints
  what they are and their split sizes, and checks that the training split fills a batch.

  Returns:
    The gin text parsed after base.gin ('' when the gin files configure the model).
  """
  # pylint: disable=g-import-not-at-top
  import gin
  from vlae_tf.data import model_choice
  from vlae_tf.data import user_images
  # pylint: enable=g-import-not-at-top
  params = list(gin_params or []) + dataset_bindings(dataset, image_size, binarize)
  gin_parsing.parse_gin(gin_files, params, check_macros=False)
  try:
    dataset = gin.query_parameter('train.dataset')
  except ValueError:
    return ''  # No dataset: TrainSettings says so, as it always did.
  shape, kind, num_train, own = _describe(dataset)
  try:
    gin.query_parameter('VLAE.decoder')
    chooses_model = False
  except ValueError:  # No model in the gin files: the family that fits the pixels.
    chooses_model = True
  if chooses_model and own is not None and user_images.options()[0] is None:
    size = model_choice.training_size(shape, kind)
    if size is not None:  # Large images: a size that trains, bound like --image_size.
      params.append(f'user_images.image_size = {size!r}')
      gin_parsing.parse_gin(gin_files, params, check_macros=False)
      logging.info('%s', model_choice.describe_size(shape, size))
      shape, kind, num_train, own = _describe(dataset)
  if own is not None:
    logging.info('%s', own.summary())
  after_base = ''
  if chooses_model:
    after_base = model_choice.choose(shape, kind, num_train)
  gin_parsing.parse_gin(gin_files, params, after_base=after_base)
  from vlae_tf.training import settings  # pylint: disable=g-import-not-at-top
  in_force = settings.train_settings()
  if after_base:
    channels = gin.query_parameter('%LATENT_CHANNELS') if kind == '8bit' else None
    logging.info('%s', model_choice.describe(shape, kind, num_train, int(in_force['train_steps']),
                                             int(in_force['batch_size']), channels))
  if own is not None:
    user_images.check_batch_size(own, int(in_force['batch_size']), in_force['train_split'])
  return after_base


def check_reader_dataset(model_dir, dataset):
  """DatasetError when a reader's --dataset does not fit the run's model (shape or pixel kind).

  Returns the dataset as `run_config.reading_dataset` takes it (None: the run's own).
  """
  # pylint: disable=g-import-not-at-top
  from vlae_tf.data import catalogue
  from vlae_tf.data import user_images
  from vlae_tf.models import vlae as model_lib
  from vlae_tf.runs import run_config
  # pylint: enable=g-import-not-at-top
  dataset = resolve(dataset)
  if dataset is None:
    return None
  run_config.load_run_config(model_dir)
  model = model_lib.make_model()
  if user_images.is_user_source(dataset):
    images = user_images.read_configured(dataset)
    shape, kind = images.shape, images.kind
  else:
    shape, kind = catalogue.info(dataset).shape, catalogue.info(dataset).kind
  if tuple(shape) != tuple(model.image_shape) or kind != model.data_kind:
    text = lambda s: 'x'.join(map(str, s))
    raise errors.DatasetError(
        f'--dataset={dataset}: {text(shape)} {kind} images, but the run in {model_dir} models '
        f'{text(model.image_shape)} {model.data_kind} images: give a dataset of that shape and '
        'kind (or leave --dataset out for the run\'s own).')
  return dataset
