#!/usr/bin/env bash
# The README's quick-start commands, timed one after another on an idle machine.
cd "$(dirname "$0")/../../.." && . .venv/bin/activate
rm -rf /tmp/vlae_smoke /tmp/readme_runs /tmp/samples
t() { local start=$(date +%s.%N); "$@" > /tmp/readme_cmd.out 2> /tmp/readme_cmd.err; local rc=$?; local end=$(date +%s.%N); echo "$(python -c "print(f'{$end-$start:.1f}')") s rc=$rc: $*"; }
t bin/train --gin_file=mnist_vlae.gin --gin_file=testing/tiny.gin --gin_param=TRAIN_STEPS=2 --model_dir=/tmp/vlae_smoke --data_dir=../shared/data
t bin/train --gin_file=mnist_vlae.gin --gin_param=TRAIN_STEPS=200 --model_dir=/tmp/readme_runs/mnist_vlae --data_dir=../shared/data
t bin/eval --model_dir=/tmp/readme_runs/mnist_vlae
cat /tmp/readme_cmd.out
t bin/sample --pretrained=static_mnist --output=/tmp/samples --data_dir=../shared/data
lscpu | grep "Model name"; python -c "from vlae_tf import allocator; print(allocator.__file__)"; echo LD_PRELOAD=$LD_PRELOAD
