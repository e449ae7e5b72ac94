#!/usr/bin/env bash
# README command 2: set up (if needed) and run the test suite.
#   bash tools/run_tests.sh [pytest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh" --full
cd "$ROOT"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}"
set +e
"$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "${@:-tests}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "run_tests.sh: error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
