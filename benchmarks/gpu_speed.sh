#!/usr/bin/env bash
# The GPU speed measurement of docs/gpu-speed.md ("The next measurement") in one command, each part's output kept.
#
#   benchmarks/gpu_speed.sh OUT_DIR [PART ...]
#
# PARTs run in the order given; the default is all five, in this order:
#   graphs    hand3d bench train --cuda-graphs on   compiled, replayed as CUDA graphs, reader processes
#   tests     pytest -m cuda                       the CUDA-only tests (skipped without a GPU)
#   profile   as 'graphs', then 10 steps of each profiled: GPU busy time and launches per step, traces in profile/
#   compiled  hand3d bench train                    compiled, without CUDA graphs, reader processes
#   threads   hand3d bench train --readers threads  as 'compiled' with reader threads, to compare with it
# OUT_DIR gets env.txt (GPU, driver, torch) and, per part, <part>.txt (its output) and, for a bench, <part>.json
# (`--json`: the figures unrounded and the compile counts). BENCH_ARGS adds options to every bench, e.g.
# BENCH_ARGS="--steps 20". It runs this checkout's hand3d with $PYTHON (default python3), which needs hand3d's
# dependencies; snakemake and moderngl are not used. A part that fails is reported and the others still run; the
# exit status is that of the last part that failed.
set -uo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
out=$1
shift
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(graphs tests profile compiled threads)
for part in "${parts[@]}"; do
  case $part in
    graphs | tests | profile | compiled | threads) ;;
    *) echo "gpu_speed.sh: unknown part '$part' (graphs, tests, profile, compiled, threads)" >&2 && exit 2 ;;
  esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$repo" || exit 2

{
  date -u +%FT%TZ
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  else
    echo "no nvidia-smi"
  fi
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'
  git -C "$repo" log -1 --format='hand3d %h %s' 2>/dev/null
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

bench() {
  local part=$1
  shift
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
  "$python" -m hand3d.cli bench train "$@" ${BENCH_ARGS:-} --json "$out/$part.json"
}

status=0
for part in "${parts[@]}"; do
  echo "== $part"
  case $part in
    graphs) bench graphs --cuda-graphs on ;;
    tests) "$python" -m pytest -m cuda -p no:cacheprovider -q -rs ;;
    profile) bench profile --cuda-graphs on --profile "$out/profile" ;;
    compiled) bench compiled ;;
    threads) bench threads --readers threads ;;
  esac 2>&1 | tee "$out/$part.txt"
  code=${PIPESTATUS[0]}
  [[ $code -eq 0 ]] || { echo "== $part failed: exit $code" && status=$code; }
done
exit "$status"
