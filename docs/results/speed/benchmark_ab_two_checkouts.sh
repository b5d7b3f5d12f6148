#!/bin/bash
# A/B of two checkouts: NEW against OLD with the same bin/benchmark flags on gin/mnist_vlae.gin,
# train + eval, each process measuring float32 and mixed_bfloat16, in the order NEW (f32, bf16),
# OLD (f32, bf16), OLD (bf16, f32), NEW (bf16, f32). Run it idle.
# Usage: benchmark_ab_two_checkouts.sh NEW_CHECKOUT OLD_CHECKOUT DATA_DIR > lines.txt
# (one JSON line per measurement, prefixed with NEW or OLD and the order).
# NEW_GIN=models/depth_limited_decoder.gin adds a gin file to NEW's runs (5b799a6's decoder);
# OLD_PRECISIONS=none runs OLD without --precisions (checkouts older than the flag: float32).
NEW=$1 OLD=$2 DATA=$(cd "$3" && pwd)
FLAGS="--gin_file=mnist_vlae.gin --data_dir=$DATA --what=train,eval --steps_per_chunk=10 --repeats=3 --warmup=1 --num_samples=512 --eval_batch_size=8 --peak_repeats=3"
run() {  # label checkout precisions [extra flags]
  local precisions=()
  [ "$3" != none ] && precisions=(--precisions="$3")
  (cd "$2" && PYTHONPATH="$2" python bin/benchmark $FLAGS "${precisions[@]}" ${4:+"$4"} 2>/dev/null \
     | grep '"what"' | sed "s/^/$1 $3 /")
}
NEW_EXTRA=${NEW_GIN:+--gin_file=$NEW_GIN}
echo "NEW commit $(git -C "$NEW" rev-parse --short HEAD), OLD commit $(git -C "$OLD" rev-parse --short HEAD)"
run NEW "$NEW" float32,mixed_bfloat16 "$NEW_EXTRA"
run OLD "$OLD" "${OLD_PRECISIONS:-float32,mixed_bfloat16}"
run OLD "$OLD" "${OLD_PRECISIONS:-mixed_bfloat16,float32}"
run NEW "$NEW" mixed_bfloat16,float32 "$NEW_EXTRA"
