"""bin/compress and bin/decompress: lossless coding of binary or 8-bit images through a run's
model.

    bin/compress (--model_dir=DIR | --pretrained=NAME) --input=IMAGES --output=FILE
        [--checkpoint=STEP] [--first_batch=N]
    bin/decompress (--model_dir=DIR | --pretrained=NAME) --input=FILE --output=IMAGES
        [--checkpoint=STEP]

The code is bits-back ANS (vlae_tf/compression/codec.py); the `run_*` functions take plain
arguments, the mains read the flags and print the result on stdout (a line, or --json).
"""

from absl import flags

from vlae_tf.cli import shared_flags
from vlae_tf.cli import user_errors

FLAGS = flags.FLAGS


def run_compress(model_dir, input_path, output_path, checkpoint=None, first_batch=1):
  """Compresses binary or 8-bit images losslessly through the run's model (bits-back ANS); a
  report. `first_batch`: the images of the chain's first batch (--first_batch)."""
  from vlae_tf.compression import codec  # pylint: disable=g-import-not-at-top
  return codec.compress(model_dir, input_path, output_path, checkpoint=checkpoint,
                        coder_settings=dict(first_batch=first_batch))


def run_decompress(model_dir, input_path, output_path, checkpoint=None):
  """Restores the images of a file of bin/compress; a report."""
  from vlae_tf.compression import codec  # pylint: disable=g-import-not-at-top
  return codec.decompress(model_dir, input_path, output_path, checkpoint=checkpoint)


def define_compress_flags():
  shared_flags.define_model_dir(reading=True)
  flags.DEFINE_string('input', None, 'Images as the model takes them (binary, or 8-bit grey or '
                      'RGB): an .amat or .amat.gz file (binary only), a .npy array or a directory '
                      'of PNG files.')
  flags.DEFINE_string('output', None, 'The compressed file to write.')
  flags.mark_flags_as_required(['input', 'output'])
  shared_flags.define_checkpoint()
  flags.DEFINE_integer('first_batch', 1, 'Images in the first batch of the chain (at most the '
                       'number of images). Decoding runs every pixel of a batch in turn, so '
                       'more at first means fewer batches and faster decoding, for a one-off '
                       'cost of about 40 bits per latent dimension per image of the first batch, '
                       'recorded in the file (e.g. 20 for 1,000 CIFAR-10 images: 3 times fewer '
                       'batches for +1.5% on the file).', lower_bound=1, upper_bound=500)
  shared_flags.define_json()


def define_decompress_flags():
  shared_flags.define_model_dir(reading=True)
  flags.DEFINE_string('input', None, 'A file written by bin/compress.')
  flags.DEFINE_string('output', None, 'Where the images go: an .amat/.amat.gz (binary only) or '
                      '.npy file, or a new directory of PNG files.')
  flags.mark_flags_as_required(['input', 'output'])
  shared_flags.define_checkpoint()
  shared_flags.define_json()


def compress_main(argv):
  shared_flags.no_positional(argv)
  report = user_errors.guard(lambda: run_compress(FLAGS.model_dir, FLAGS.input, FLAGS.output,
                                                  FLAGS.checkpoint, FLAGS.first_batch))
  shared_flags.print_result(
      f'compressed {report["images"]} images into {FLAGS.output}: {report["bytes"]} bytes, '
      f'{report["bits_per_image"]:.2f} bits/image, {report["bits_per_pixel"]:.4f} bits/pixel '
      f'(of which {report["initial_bits"]} one-off initial bits; the stream alone '
      f'{report["payload_bits_per_image"]:.2f} bits/image), model step {report["step"]}, '
      f'{report["seconds"]:.1f} s, {report["codec"]} codec'
      + (f', first batch of {report["first_batch"]}' if report['first_batch'] > 1 else '')
      + ('' if report['portable'] else f'; note: {codec_note()}'),
      dict(report, output=FLAGS.output))


def codec_note():
  from vlae_tf.compression import codec  # pylint: disable=g-import-not-at-top
  return codec.MACHINE_BOUND_NOTE


def decompress_main(argv):
  shared_flags.no_positional(argv)
  report = user_errors.guard(lambda: run_decompress(FLAGS.model_dir, FLAGS.input,
                                                    FLAGS.output, FLAGS.checkpoint))
  shared_flags.print_result(
      f'decompressed {report["images"]} images into {FLAGS.output} (checksum verified), '
      f'{report["seconds"]:.1f} s, {report["codec"]} codec', dict(report, output=FLAGS.output))
