#!/usr/bin/env bash
# README command 1: set up what pre-training needs and run the main job on an embedded
# default: CIM-ResPix pre-training on real Fashion-MNIST, on CPU (about 8-10 minutes on
# 2 cores).
#
#   bash tools/run_demo.sh [CIM_CONFIG] [extra tools/train.py args...]
#
# The set-up is tools/setup_env.sh --light (no mmcv ops build, no mmsegmentation; a
# venv that has the whole stack is used as it is). $CIM_MM_VENV: the venv to use.
#
# Leaves in work_dirs/<config name>/: checkpoints (iter_*.pth), the log
# (<timestamp>/<timestamp>.log + vis_data/scalars.json) and the corruption /
# recovery pictures (vis/*.png); the small tokenizer it trains first (if absent)
# goes to work_dirs/vqtokenizer_d4-v512_fashion-mnist-32px/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CONFIG="${1:-configs/cim/cim-respix_vit-tiny-p4_1xb64-500it_fashion-mnist-32px.py}"
shift || true
NAME="$(basename "$CONFIG" .py)"
WORK_DIR="work_dirs/$NAME"
TOK_CONFIG=configs/tokenizers/vqtokenizer_d4-v512_fashion-mnist-32px.py
TOK_DIR=work_dirs/vqtokenizer_d4-v512_fashion-mnist-32px
PY="${CIM_MM_VENV:-$ROOT/.venv}/bin/python"

start=$(date +%s)
bash tools/setup_env.sh --light
echo "[demo] set up in $(($(date +%s) - start)) s" >&2
bash tools/prepare_fashion_mnist.sh

if [ ! -s "$TOK_DIR/tokenizer.pth" ]; then
  echo "[demo] training the small VQ tokenizer ($TOK_CONFIG)" >&2
  "$PY" tools/train_tokenizer.py "$TOK_CONFIG" --work-dir "$TOK_DIR"
else
  echo "[demo] tokenizer found: $TOK_DIR/tokenizer.pth" >&2
fi

echo "[demo] CIM pre-training: $CONFIG" >&2
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"

end=$(date +%s)
echo "[demo] done in $((end - start)) s. Outputs in $WORK_DIR:" >&2
ls "$WORK_DIR"/*.pth "$WORK_DIR"/vis/*.png 2>/dev/null | tail -n 6 >&2 || true
