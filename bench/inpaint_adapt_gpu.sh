#!/bin/bash
# Issue 4 side study on one GPU (the `device` tool's machine), in one call of a few minutes:
# `bench/inpaint_adapt.py` on the four held-out photos at once (one process each), with the
# 32 px CPU-trained prior (carried in .carry/photos32: config.json + ema.safetensors of
# runs/photos/model), adaptation for 0, 500 and 2000 steps, means of 32 draws.
# Writes $OUT/{log.txt, adapt_<photo>.json}; the table here:
#   python bench/inpaint_adapt.py --merge <files> --name inpaint_adapt_gpu
set -u
source "$(dirname "$0")/gpu_env.sh"
{ date; nvidia-smi -L; python3 -c "import torch, skimage; print(torch.__version__, skimage.__version__)"; } > /tmp/log.setup 2>&1
cd bench
for photo in camera astronaut coffee chelsea; do
  timeout 400 python3 inpaint_adapt.py --model ../.carry/photos32 --device cuda \
    --tile-batch 2048 --adapt 0,500,2000 --samples 32 --sigmas 0.3,0.6,1.0 \
    --photos $photo --out "$OUT" --name adapt_$photo > /tmp/log.$photo 2>&1 &
done
wait
date >> /tmp/log.setup
cd .. && cat /tmp/log.* > "$OUT/log.txt"
rm -f "$OUT"/*.md
