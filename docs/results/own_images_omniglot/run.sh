#!/bin/bash
# As run for docs/RESULTS.md ("Your own images"): a VLAE trained from a folder of real PNGs
# that are not 28x28 (OMNIGLOT's background alphabets of ../shared/data, 105x105, downscaled to
# 52x52 by --image_size), with --dataset alone: the model is chosen (binary VLAE, batch 128).
# Run from the checkout root. The budget was cut to 2,000 steps (the chosen default is 3,000) by
# stopping with SIGTERM at step 655 and resuming with TRAIN_STEPS=2000.
set -euo pipefail
PY=${PY:-python}
RUN=${RUN:-runs/omniglot_png_52}
DATA=${DATA:-../shared/data}
HERE=$(dirname "$0")
rm -rf /tmp/omniglot_zip /tmp/omniglot_png /tmp/omniglot_test_png /tmp/omniglot_test_back /tmp/omniglot_test.vlae
mkdir -p /tmp/omniglot_zip /tmp/omniglot_png
for z in "$DATA"/omniglot/images_background_small*.zip; do unzip -q -o "$z" -d /tmp/omniglot_zip; done
cp -r /tmp/omniglot_zip/*/* /tmp/omniglot_png/   # 8 alphabets, 4,840 PNGs
time $PY bin/train --dataset=/tmp/omniglot_png --image_size=52x52 --model_dir=$RUN --gin_param=TRAIN_STEPS=2000
time $PY bin/eval --model_dir=$RUN --max_examples=0 --num_samples=1024 --json   # all 479 test images
$PY bin/sample --model_dir=$RUN
time $PY bin/inspect --model_dir=$RUN --probe_train_examples=0
$PY "$HERE"/omni_compare.py /tmp/omniglot_test_png   # PNG and bzip2 bits/image of the 479 test images
time $PY bin/compress --model_dir=$RUN --input=/tmp/omniglot_test_png --output=/tmp/omniglot_test.vlae
time $PY bin/decompress --model_dir=$RUN --input=/tmp/omniglot_test.vlae --output=/tmp/omniglot_test_back
$PY "$HERE"/same_pngs.py /tmp/omniglot_test_png /tmp/omniglot_test_back
