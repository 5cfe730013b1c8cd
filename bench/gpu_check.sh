#!/usr/bin/env bash
# `make gpu-check` on the GPU machine (docs/gpu.md): install the carried wheels (.whl/, `make gpu-wheels`) into
# /tmp/site with --no-deps --target (the machine's torch is never touched), put them and the checkout on
# PYTHONPATH, then run bench/gpu_check.py: every step time-boxed, all of it within GPU_CHECK_BUDGET_S seconds
# (default 450). Results go to $OUT (the device tool's folder), else bench/results/gpu/.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  t0=$(date +%s)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu-check: installing .whl/ into /tmp/site failed" >&2; exit 2; }
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "gpu-check: $(ls .whl/*.whl | wc -l) wheels installed into /tmp/site in $(( $(date +%s) - t0 ))s"
else
  echo "gpu-check: no .whl/ (run \`make gpu-wheels\` where pip has a network); using the installed packages" >&2
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PY" -m bench.gpu_check --out "$OUT" --budget-s "${GPU_CHECK_BUDGET_S:-450}" --work "${GPU_CHECK_WORK:-/tmp/gpu-check}" "$@"
