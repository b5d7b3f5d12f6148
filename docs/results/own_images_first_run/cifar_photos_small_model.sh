#!/bin/bash
# The CIFAR-10 photo folder of the first half hour, with the small 8-bit model of RESULTS "8-bit
# images" (175k parameters, batch 32) instead of the chosen default: 30 minutes, then the default
# eval and samples. From the checkout root.
set -euo pipefail
PY=${PY:-python}
FOLDER=${FOLDER:-/tmp/own_images/cifar_photos}
RUN=${RUN:-$HOME/vlae_runs/own_images_cifar_small}
$PY bin/train --dataset="$FOLDER" --model_dir="$RUN" --time_limit=30m \
    --gin_param=TRAIN_STEPS=6000 --gin_param=BATCH_SIZE=32 --gin_param=LATENT_CHANNELS=4 \
    --gin_param="encoders.SpatialResNetEncoder.filters=(16, 32, 32)" \
    --gin_param="encoders.SpatialResNetEncoder.blocks=(1, 1, 1)" \
    --gin_param="context_networks.SpatialResNetDecoder.filters=(32, 32, 16)" \
    --gin_param="context_networks.SpatialResNetDecoder.blocks=(1, 1, 1)" \
    --gin_param=context_networks.SpatialResNetDecoder.context_channels=16 \
    --gin_param=gated_pixelcnn.GatedPixelCNN.filters=32 \
    --gin_param=gated_pixelcnn.GatedPixelCNN.num_blocks=2 \
    --gin_param=likelihoods.DiscretizedLogisticMixture.num_mixtures=5 \
    --gin_param=conv_flows.ConvAutoregressiveFlowPrior.num_steps=2 \
    --gin_param="conv_flows.ConvAutoregressiveFlowPrior.hidden_filters=(32,)" \
    2> "$RUN.train.log" || [ $? -eq 75 ]
$PY bin/eval --model_dir="$RUN" --json > "$RUN.eval.json" 2> "$RUN.eval.log"
$PY bin/sample --model_dir="$RUN" --output="$RUN.samples" 2> "$RUN.sample.log"
