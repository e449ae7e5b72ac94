#!/usr/bin/env bash
# Put the real Fashion-MNIST (Debian package dataset-fashion-mnist) where the
# configs read it: data/fashion_mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC=/usr/share/datasets/fashion-mnist
DST="${1:-$ROOT/data/fashion_mnist}"
if [ ! -f "$SRC/train-images-idx3-ubyte.gz" ]; then
  echo "[prepare_fashion_mnist] installing dataset-fashion-mnist (Debian)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
mkdir -p "$DST"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ ! -s "$DST/$f" ]; then
    gunzip -c "$SRC/$f.gz" > "$DST/$f.tmp" && mv "$DST/$f.tmp" "$DST/$f"
  fi
done
echo "[prepare_fashion_mnist] ready: $DST" >&2
