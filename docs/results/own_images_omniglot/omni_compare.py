# Writes the test split of the OMNIGLOT folder at 52x52 as 1-bit PNGs and prints PNG and bzip2 bits/image.
import bz2, os, sys
import numpy as np
from PIL import Image
from vlae_tf.data import user_images
out, limit = sys.argv[1], (int(sys.argv[2]) if len(sys.argv) > 2 else None)
images = user_images.read('/tmp/omniglot_png', (52, 52)).splits['test'][:limit, ..., 0]  # uint8 0/1
os.makedirs(out)
png_bytes = 0
for index, image in enumerate(images):
  path = os.path.join(out, f'{index:05d}.png')
  Image.fromarray(image * 255).convert('1').save(path, optimize=True)
  png_bytes += os.path.getsize(path)
packed = np.packbits(images.reshape(len(images), -1), axis=1).tobytes()
n = len(images)
print(f'{n} test images 52x52: 1-bit PNG {8 * png_bytes / n:.1f} bits/image (sum of files), '
      f'bzip2 -9 of the packed bits {8 * len(bz2.compress(packed, 9)) / n:.1f} bits/image, '
      f'raw {52 * 52} bits/image')
