#!/bin/bash
# Issue 4 side study on one GPU, after bench/inpaint_priors_gpu.sh: the same box-inpainting
# scoring (32 posterior samples per solver) with 50 solver steps instead of 10, for the
# CPU-trained 32 x 32 prior (.carry/photos32) and the GPU-trained 64 x 64 prior B
# (.carry/B64: the B/ folder that inpaint_priors_gpu.sh returned). Needs PyWavelets as a wheel
# in .whl/ (see inpaint_priors_gpu.sh).
# Writes $OUT/{log.txt, C32_50.json, B_50.json}.
set -u
source "$(dirname "$0")/gpu_env.sh"
SOLVERS='inpaint:ddnm+warm0.3*32,inpaint:ddnm+warm0.6*32,inpaint:ddnm+warm1.0*32,inpaint:repaint*32'

score() {  # name model seconds
  timeout "$3" python3 bench/restoration.py --device cuda --tile-batch 2048 --steps 50 \
    --model "$2" --tasks inpaint --solvers "$SOLVERS" --out /tmp/score_$1 > /tmp/log.$1 2>&1
  echo "score $1 exit $? at $(date +%T)" >> /tmp/log.$1
  cp /tmp/score_$1/restoration.json "$OUT/$1.json"
}

score C32_50 .carry/photos32 230 &
score B_50 .carry/B64 230 &
wait
cat /tmp/log.* > "$OUT/log.txt"
