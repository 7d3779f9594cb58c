#!/bin/bash
# Issue 4 side study on one GPU (the `device` tool's machine), in one call of under 10 minutes:
# train two 64 x 64 `photos` priors at once and score box inpainting with 32 posterior samples
# per solver, against the 32 x 32 CPU-trained prior scored the same way.
#   A: the recipe that trains in about 94 min on the 2-core benchmark CPU (batch 32, 3600 steps)
#   B: four times A's batch (128), 2400 steps (about 2.7x A's images)
#   C32: the CPU-trained 32 x 32 prior (carried in .carry/photos32), no training
# Prepare here (both folders listed in .git/info/exclude, sent with the device tool's carry):
#   .carry/photos32/: config.json + ema.safetensors of the 32 px prior (runs/photos/model)
#   .whl/: PyWavelets as a Python 3.12 wheel (bench/restoration.py checks for it; no network there)
# Writes $OUT/{log.txt, A.json, B.json, C32.json, A/, B/} (models: config.json + ema.safetensors).
# Table: python bench/inpaint_priors_report.py bench/results/inpaint_priors_gpu (JSONs renamed).
set -u
source "$(dirname "$0")/gpu_env.sh"
LOG=/tmp/log
{ date; nvidia-smi -L; python3 -c "import torch, cv2, pywt, skimage; print(torch.__version__, cv2.__version__, pywt.__version__, skimage.__version__)"; } > $LOG.setup 2>&1
SOLVERS='inpaint:ddnm+warm0.3*32,inpaint:ddnm+warm0.6*32,inpaint:ddnm+warm1.0*32,inpaint:ddnm*32,inpaint:repaint*32'

train() {  # name steps seconds batch [extra]
  timeout "$3" python3 -m diffvision train --data photos --size 64 --steps "$2" --batch "$4" \
    --lr-schedule cosine --hflip --bf16 ${5:-} --checkpoint-every 200 --keep 1 --quiet \
    --out /tmp/$1 > $LOG.$1 2>&1
  echo "train $1 exit $? at $(date +%T)" >> $LOG.$1
  local model=/tmp/$1/model
  if [ ! -f $model/config.json ]; then  # stopped at its time limit: the newest checkpoint
    model=$(ls -d /tmp/$1/checkpoints/step_* 2>/dev/null | tail -1)
    echo "using checkpoint $model" >> $LOG.$1
  fi
  mkdir -p "$OUT/$1" && cp "$model/config.json" "$model/ema.safetensors" "$OUT/$1/"
  tail -3 /tmp/$1/metrics.jsonl >> $LOG.$1
}

score() {  # name model seconds
  timeout "$3" python3 bench/restoration.py --device cuda --tile-batch 2048 --model "$2" \
    --tasks inpaint --solvers "$SOLVERS" --out /tmp/score_$1 > $LOG.score_$1 2>&1
  echo "score $1 exit $? at $(date +%T)" >> $LOG.score_$1
  cp /tmp/score_$1/restoration.json "$OUT/$1.json"
}

(train A 3600 290 32 --channels-last; score A "$OUT/A" 160) &
(train B 2400 320 128; score B "$OUT/B" 170) &
score C32 .carry/photos32 200 &
wait
cat $LOG.* > "$OUT/log.txt"
