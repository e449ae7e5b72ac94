#!/usr/bin/env bash
# The GPU check: step time, MFU, loader, precision, resume on one GPU (docs/gpu/README.md).
#
#   bash tools/gpu_check.sh [--dry-run] [--out DIR] [tools/gpu_check.py flags ...]
#   bash tools/gpu_check.sh --pack-deps [DEST]
#
# Full run: one GPU, at most 8 minutes (hard cap), results in
#   benchmarks/results/gpu/<UTC date> (or --out). Exit 3: a REGRESSION (see results.md).
# --dry-run: every stage at toy size on the CPU (~1 min idle), results in a temp folder.
# --pack-deps: run where the project's .venv is; copies the pure-Python packages
#   a bare GPU machine lacks (mmengine, mmcv without ops, mmpretrain, dall_e, ...;
#   ~11 MB) to DEST (default work_dirs/gpu_deps, git-ignored) to carry there.
#
# Python: $PYTHON, else .venv/bin/python, else python3 (a GPU machine's own, with
# its torch). Packages it lacks are taken from $CIM_GPU_DEPS (default
# work_dirs/gpu_deps) when that folder is there.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="${CIM_GPU_DEPS:-$ROOT/work_dirs/gpu_deps}"
say() { printf '[gpu_check] %s\n' "$*" >&2; }

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi

if [ "${1:-}" = "--pack-deps" ]; then
  DEST="${2:-$DEPS}"
  cd "$ROOT" && exec "$PY" -m benchmarks.gpu_check.deps "$DEST"
fi

# tools/gpu_check.py puts $CIM_GPU_DEPS on the path itself when $PY lacks the stack
export CIM_GPU_DEPS="$DEPS" PYTHONUNBUFFERED=1
DRY=0
OUT=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1; ARGS+=("$1") ;;
    --out) OUT="${2:?--out needs a folder}"; shift ;;
    --out=*) OUT="${1#--out=}" ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
if [ -z "$OUT" ]; then
  if [ "$DRY" = 1 ]; then OUT="$(mktemp -d -t cim_gpu_check_dry.XXXXXX)"; else OUT="$ROOT/benchmarks/results/gpu/$(date -u +%F)"; fi
fi
mkdir -p "$OUT"
# hard cap on the whole run (the stages stop themselves inside it)
CAP="${CIM_GPU_CHECK_CAP_S:-$([ "$DRY" = 1 ] && echo 180 || echo 480)}"
say "$PY -> $OUT (hard cap ${CAP} s)"
timeout --signal=TERM --kill-after=20 "$CAP" \
  "$PY" "$ROOT/tools/gpu_check.py" --out "$OUT" ${ARGS[@]+"${ARGS[@]}"} 2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 124 ] && say "stopped at the ${CAP} s cap; $OUT/results.json holds the stages that finished"
exit "$rc"
