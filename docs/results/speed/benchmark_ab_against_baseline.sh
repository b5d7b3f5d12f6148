#!/bin/bash
# A/B: today's bin/benchmark (TCMalloc preloaded by the binary) against 5b799a6's (glibc), same flags,
# gin/mnist_vlae.gin (the decoder of 5b799a6), train + eval, alternating order.
FLAGS="--gin_file=mnist_vlae.gin --data_dir=/work/shared/data --what=train,eval --steps_per_chunk=10 --repeats=3 --warmup=1 --num_samples=512 --eval_batch_size=8 --peak_repeats=3"
export PATH=/work/venv/bin:$PATH
run_new() { (cd /work/main && PYTHONPATH=/work/main python bin/benchmark $FLAGS 2>/dev/null | grep '"what"' | sed 's/^/NEW /'); }
run_old() { (cd /work/old && PYTHONPATH=/work/old VLAE_TF_ALLOCATOR=system python bin/benchmark $FLAGS 2>/dev/null | grep '"what"' | sed 's/^/OLD /'); }
git -C /work/main rev-parse --short HEAD | sed 's/^/NEW commit /'
run_new; run_old; run_old; run_new
