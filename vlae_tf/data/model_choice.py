"""The model family bin/train picks for a dataset when no gin file configures a model.

`choose(shape, kind, num_train_images)` turns what the data is (shape, binary or 8-bit, training
images) into gin text parsed right after base.gin, so that any --gin_file (gin/testing/tiny.gin)
and --gin_param still override it; `describe` is the line for people, written once the config is
parsed, with the budget in force:

* binary images: the paper's binary VLAE (gin/models/vlae_binary.gin: ResNet encoder, 64-dim z,
  AF prior, a 6-layer PixelCNN with Bernoulli pixels);
* 8-bit grey or RGB images: the paper's CIFAR-10 ResNet VLAE (gin/models/cifar10_vlae_resnet.gin:
  spatial z of ceil(H/4) x ceil(W/4) x 16, a gated PixelCNN with a 7x4 window and a discretized
  logistic mixture, soft free bits).

Both take any image size (the encoders halve each side with ceil, the context networks upsample to
the same sizes in reverse), but their cost grows with the pixels: on a 2-core CPU a step of the
binary VLAE at batch 128 takes about 0.4 s at 28x28 and over a minute at 105x105 (OMNIGLOT as Lake's
zip unzips). Images with a side over LARGEST_SIDE therefore train at `training_size` (longer side
28 for binary images, as MNIST and the paper's OMNIGLOT, 32 for 8-bit ones, as CIFAR-10; the
aspect ratio kept) unless --image_size says otherwise; the size is a binding of config.gin, so the
run's readers see the images as the model does. The budget is about 100 epochs of the training
split at batch 128, between 1,000 and 100,000 steps; the first progress lines of the run say what
it costs on the machine at hand (`progress.budget_line`).
"""

import math

BATCH_SIZE = 128
EPOCHS = 100
MIN_STEPS, MAX_STEPS = 1_000, 100_000

_FAMILIES = {
    'binary': ('models/vlae_binary.gin', 'binary VLAE (Bernoulli PixelCNN decoder)'),
    '8bit': ('models/cifar10_vlae_resnet.gin',
             '8-bit VLAE (ResNet, gated PixelCNN with a discretized logistic mixture)'),
}


LARGEST_SIDE = 48
TRAINING_SIDE = {'binary': 28, '8bit': 32}


def training_size(shape, kind):
  """(height, width) to train images of `shape` at, or None to keep their size (no side over
  LARGEST_SIDE): the longer side TRAINING_SIDE[kind], the other in proportion (at least 8)."""
  height, width = (int(side) for side in shape[:2])
  longer = max(height, width)
  if longer <= LARGEST_SIDE:
    return None
  side = TRAINING_SIDE[kind]
  return (max(8, round(height * side / longer)), max(8, round(width * side / longer)))


def describe_size(shape, size):
  """The line saying that images train at `size`, and how to keep their own."""
  own, chosen = (f'{int(s[0])}x{int(s[1])}' for s in (shape, size))
  return (f'Images of {own} train at {chosen}: at their own size a step would take many times '
          'longer on a CPU. config.gin records the size, so eval, sample and compress see the '
          f'images as the model does; --image_size={own} keeps their size.')


def train_steps(num_train_images: int, batch_size: int = BATCH_SIZE) -> int:
  """About EPOCHS epochs, rounded to a thousand, within [MIN_STEPS, MAX_STEPS]."""
  steps = EPOCHS * num_train_images / batch_size
  return int(min(MAX_STEPS, max(MIN_STEPS, round(steps, -3))))


def choose(shape, kind, num_train_images):
  """The gin text to parse after base.gin: the family for `kind` at the images' size.

  Args:
    shape: (height, width, channels) of the images.
    kind: 'binary' or '8bit'.
    num_train_images: images in the training split (sets the budget).
  """
  height, width, channels = (int(side) for side in shape)
  include, _ = _FAMILIES[kind]
  steps = train_steps(num_train_images)
  lines = [f"include '{include}'",
           f'IMAGE_SHAPE = ({height}, {width}, {channels})',
           f'IMAGE_SIZE = ({height}, {width})',
           f'TRAIN_STEPS = {steps}',
           f'BATCH_SIZE = {BATCH_SIZE}',
           'train.train_steps = %TRAIN_STEPS',
           'train.batch_size = %BATCH_SIZE']
  if kind == '8bit':
    latent_hw = (math.ceil(math.ceil(height / 2) / 2), math.ceil(math.ceil(width / 2) / 2))
    latent_shape = f'({latent_hw[0]}, {latent_hw[1]}, %LATENT_CHANNELS)'
    lines += [f'VLAE.latent_shape = {latent_shape}',
              f'conv_flows.ConvAutoregressiveFlowPrior.latent_shape = {latent_shape}']
  return '\n'.join(lines) + '\n'


def describe(shape, kind, num_train_images, steps, batch_size, latent_channels=16):
  """The line saying what was chosen, with the budget in force (`steps`, `batch_size` and, for
  8-bit images, `latent_channels` as parsed: --gin_param may have changed the chosen ones)."""
  height, width, channels = (int(side) for side in shape)
  include, family = _FAMILIES[kind]
  latent = 'z of 64 dimensions'
  if kind == '8bit':
    latent = (f'z of {math.ceil(math.ceil(height / 2) / 2)}x'
              f'{math.ceil(math.ceil(width / 2) / 2)}x{int(latent_channels)}')
  chosen = train_steps(num_train_images)
  epochs = steps * batch_size / max(1, num_train_images)
  budget = (f'batch {batch_size}, {steps} steps (about {epochs:.3g} epochs'
            + ('; --gin_param=TRAIN_STEPS=N to change)' if steps == chosen else
               f'; {chosen} steps, about {EPOCHS} epochs, without --gin_param)'))
  article = 'an' if kind == '8bit' else 'a'
  return (f'No model in the gin files: {article} {family} for {height}x{width}x{channels} '
          f'{"binary" if kind == "binary" else "8-bit"} images ({include}), {latent}, {budget}, '
          'recorded in config.gin.')
