#!/bin/bash
cd /work/runs/code8 && export PYTHONPATH=/work/runs/code8 && . /work/main/.venv/bin/activate
OUT=/work/runs/compress/cli
rm -rf $OUT; mkdir -p $OUT
echo "commit $(git rev-parse HEAD)"
s=$(date +%s.%N)
bin/compress --model_dir=/work/runs/headline/runs/mnist_vlae --input=../../shared/data/binarized_mnist/binarized_mnist_test.amat.gz --output=$OUT/test.vlae; rc=$?
e=$(date +%s.%N); echo "compress rc=$rc wall=$(echo "$e - $s" | bc)"
s=$(date +%s.%N)
bin/decompress --model_dir=/work/runs/headline/runs/mnist_vlae --input=$OUT/test.vlae --output=$OUT/test.amat.gz; rc=$?
e=$(date +%s.%N); echo "decompress rc=$rc wall=$(echo "$e - $s" | bc)"
cmp <(zcat $OUT/test.amat.gz) <(zcat /work/shared/data/binarized_mnist/binarized_mnist_test.amat.gz) && echo "IDENTICAL to binarized_mnist_test.amat"
ls -l $OUT/test.vlae /work/shared/data/binarized_mnist/binarized_mnist_test.amat.gz
