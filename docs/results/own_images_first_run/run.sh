#!/bin/bash
# As run for docs/RESULTS.md ("Your own images: a first run of half an hour"): three folders as people
# have them (examples/make_image_folders.py), each given to bin/train with --dataset alone and
# --time_limit=30m, on an otherwise idle machine; then the quick evaluation (K=128 on up to 500 test
# images) and the sample grids of what the half hour gave. Run from the checkout root.
set -euo pipefail
PY=${PY:-python}
DATA=${DATA:-../shared/data}
FOLDERS=${FOLDERS:-/tmp/own_images}
RUNS=${RUNS:-$HOME/vlae_runs/own_images_first_run}
NAMES=${NAMES:-"images_background_small1 digits cifar_photos"}
mkdir -p "$RUNS"
[ -d "$FOLDERS/digits" ] || $PY examples/make_image_folders.py --data_dir="$DATA" --output="$FOLDERS"
for name in $NAMES; do
  run="$RUNS/$name"
  # Status 75: stopped by the time limit, the checkpoint written (the run may continue later).
  $PY bin/train --dataset="$FOLDERS/$name" --model_dir="$run" --time_limit=30m \
      2> "$RUNS/$name.train.log" || [ $? -eq 75 ]
  $PY bin/eval --model_dir="$run" --json > "$RUNS/$name.eval.json" 2> "$RUNS/$name.eval.log"
  $PY bin/sample --model_dir="$run" --output="$RUNS/$name.samples" 2> "$RUNS/$name.sample.log"
done
