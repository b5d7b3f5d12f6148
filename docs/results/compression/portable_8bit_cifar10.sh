#!/usr/bin/env bash
# As run for docs/RESULTS.md ("8-bit images", CIFAR-10): a small 8-bit VLAE trained for 8 minutes on
# the 4,000 CIFAR-10 training images of the data directory, then the 8-bit portable codec on its
# first 1,000 test images against PNG, WebP lossless and the model's -ELBO. From the checkout root.
set -euo pipefail
DATA=${DATA:-../shared/data}
WORK=${WORK:-/tmp/cifar}
OUT=${OUT:-docs/results/compression/portable_8bit_cifar10_test.json}
python docs/results/compression/cifar_npy.py "$DATA/cifar10/cifar-10-batches-py" "$WORK" 4000 1000
# Status 75: stopped by the time limit, the checkpoint written.
bin/train --dataset="$WORK/train.npy" --model_dir="$WORK/run" --time_limit=8m \
    --gin_param=TRAIN_STEPS=3000 --gin_param=BATCH_SIZE=32 --gin_param=LATENT_CHANNELS=4 \
    --gin_param="encoders.SpatialResNetEncoder.filters=(16, 32, 32)" \
    --gin_param="encoders.SpatialResNetEncoder.blocks=(1, 1, 1)" \
    --gin_param="context_networks.SpatialResNetDecoder.filters=(32, 32, 16)" \
    --gin_param="context_networks.SpatialResNetDecoder.blocks=(1, 1, 1)" \
    --gin_param=context_networks.SpatialResNetDecoder.context_channels=16 \
    --gin_param=gated_pixelcnn.GatedPixelCNN.filters=32 \
    --gin_param=gated_pixelcnn.GatedPixelCNN.num_blocks=2 \
    --gin_param=likelihoods.DiscretizedLogisticMixture.num_mixtures=5 \
    --gin_param=conv_flows.ConvAutoregressiveFlowPrior.num_steps=2 \
    --gin_param="conv_flows.ConvAutoregressiveFlowPrior.hidden_filters=(32,)" || [ $? -eq 75 ]
PYTHONPATH=. python docs/results/compression/portable_8bit_measure.py "$WORK/run" \
    "$WORK/test1000.npy" "$OUT" 20
