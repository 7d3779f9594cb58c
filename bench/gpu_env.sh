# Sourced by the bench/*_gpu.sh scripts on the device machine: run from the repository root,
# $OUT for the results, PyWavelets from the carried .whl/ (no network there), diffvision from src/.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD/src:/tmp/site
