#!/usr/bin/env bash
# Multi-GPU / multi-node training through torchrun and mmengine's 'pytorch' launcher.
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=host0 bash tools/dist_train.sh CONFIG 8
# Without CUDA the same command runs GPUS CPU processes: gloo instead of nccl, DDP and
# SyncBN on CPU (cim_mm/compat/dist.py); each process gets cores / GPUS threads
# unless OMP_NUM_THREADS is set. PORT=... when another run holds 29500.
CONFIG=$1
GPUS=$2
if [ -z "$CONFIG" ] || [ -z "$GPUS" ]; then
    echo "usage: bash tools/dist_train.sh CONFIG GPUS [train.py args...]" >&2
    exit 2
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(dirname "$0")/.."
PYTHON=${PYTHON:-"$ROOT/.venv/bin/python"}
[ -x "$PYTHON" ] || PYTHON=python
if [ -z "${OMP_NUM_THREADS:-}" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    CORES=$(nproc 2>/dev/null || echo 1)
    THREADS=$((CORES / GPUS))
    export OMP_NUM_THREADS=$((THREADS > 0 ? THREADS : 1))  # torchrun's default: 1
fi

PYTHONPATH="$ROOT":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/tools/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
