#!/usr/bin/env bash
# Set up (or check) the project-local virtual environment `.venv/`.
#
#   bash tools/setup_env.sh           # the whole stack (tests, segmentation)
#   bash tools/setup_env.sh --light   # pre-training only (also: CIM_MM_SETUP=light)
#
# Safe to run again: a no-op when nothing changed. $CIM_MM_VENV puts the venv
# elsewhere, $CIM_MM_CACHE the mmcv wheel cache.
#
# Whole stack: torch 2.14.1 + torchvision 0.29.1, mmcv 2.1.0 *with compiled ops*,
# mmengine, mmpretrain 1.2.0, mmsegmentation 1.2.2 (+ ftfy, regex), timm, pytest and
# cim_mm itself (editable, with its `seg` and `tests` extras).
# --light: torch, mmcv-lite 2.1.0 (mmcv without compiled ops: a PyPI wheel, nothing
# to build), mmengine, mmpretrain, timm and cim_mm: what pre-training and fine-tuning
# (tools/run_demo.sh) need. A later whole set-up replaces mmcv-lite by mmcv with ops;
# a light set-up of a whole venv keeps everything.
#
# mmcv with ops: a matching prebuilt wheel is taken when pip is offered one (standard
# `PIP_FIND_LINKS`, e.g. CI points it at ../shared/wheels, or our wheel cache);
# otherwise it is built once from the PyPI source with the C++20 fix and cached in
# "${CIM_MM_CACHE:-$HOME/.cache/cim_mm}/wheels", so a second set-up is fast.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CIM_MM_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"
TORCH_SPEC=(torch==2.14.1 torchvision==0.29.1)
MMCV_VERSION=2.1.0
CACHE="${CIM_MM_CACHE:-$HOME/.cache/cim_mm}"
WHEELS="$CACHE/wheels/torch-2.14.1"

log() { printf '[setup_env] %s\n' "$*" >&2; }

MODE="${CIM_MM_SETUP:-full}"
for arg in "$@"; do
  case "$arg" in
    --light) MODE=light ;;
    --full) MODE=full ;;
    *) echo "setup_env.sh: error: unknown argument $arg (use --light or --full)" >&2; exit 2 ;;
  esac
done
case "$MODE" in
  light|full) ;;
  *) echo "setup_env.sh: error: CIM_MM_SETUP=$MODE: use light or full" >&2; exit 2 ;;
esac
# what a finished set-up of each mode imports
if [ "$MODE" = full ]; then
  IMPORTS="import cim_mm, cim_mm.seg, mmcv.ops, mmseg.models, mmpretrain.models, timm"
else
  IMPORTS="import cim_mm, mmpretrain.models, timm"
fi

stamp_of() {
  cat "$ROOT/setup.py" "$ROOT/requirements/"*.txt "$ROOT/tools/setup_env.sh" | sha256sum | cut -d' ' -f1
}

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# "<hash of the set-up files> <mode>"; a whole set-up also serves a light one
STAMP_FILE="$VENV/.cim_mm_setup_stamp"
if [ -f "$STAMP_FILE" ]; then
  read -r stamp_hash stamp_mode < "$STAMP_FILE" || true
  if [ "${stamp_hash:-}" = "$(stamp_of)" ] \
     && { [ "${stamp_mode:-}" = full ] || [ "$MODE" = light ]; } \
     && "$PY" -c "$IMPORTS" >/dev/null 2>&1; then
    log "environment up to date ($VENV, ${stamp_mode:-?})"
    exit 0
  fi
fi
log "setting up $VENV ($MODE)"

# torch 2.14 needs setuptools >= 77.0.3; mmengine 0.10.7 (Config `mmpretrain::`
# bases, is_installed) imports pkg_resources, which setuptools 81 removed.
SETUPTOOLS_SPEC='setuptools>=77.0.3,<81'

have_mmcv_ops() {
  "$PY" - <<EOF >/dev/null 2>&1
import mmcv, mmcv.ops
assert mmcv.__version__ == '$MMCV_VERSION'
EOF
}

build_mmcv() {
  # Build mmcv from the PyPI source with compiled CPU ops. Its setup.py needs
  # pkg_resources (setuptools < 70) while torch 2.14 needs setuptools >= 77, so the
  # build runs in a throw-away build venv that sees torch through a .pth file.
  local tmp; tmp="$(mktemp -d)"
  log "building mmcv $MMCV_VERSION with ops from source (about 15 min on 2 cores; cached after)"
  "$PYTHON_BIN" -m venv "$tmp/buildenv"
  local bpy="$tmp/buildenv/bin/python"
  "$bpy" -m pip --disable-pip-version-check install -q 'setuptools<70' wheel ninja
  local main_site; main_site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  local build_site; build_site="$("$bpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$main_site" > "$build_site/zz_main_venv.pth"
  "$bpy" -m pip --disable-pip-version-check download -q --no-deps --no-binary :all: \
    "mmcv==$MMCV_VERSION" -d "$tmp"
  tar xzf "$tmp/mmcv-$MMCV_VERSION.tar.gz" -C "$tmp"
  # torch >= 2.10 headers need C++20
  sed -i 's/-std=c++14/-std=c++20/g; s/-std=c++17/-std=c++20/g' "$tmp/mmcv-$MMCV_VERSION/setup.py"
  mkdir -p "$WHEELS"
  (cd "$tmp/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="$(nproc)" \
    "$bpy" -m pip --disable-pip-version-check wheel -q --no-deps --no-build-isolation . -w "$WHEELS")
  rm -rf "$tmp"
}

have_mmcv() {
  "$PY" -c "import mmcv; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1
}

drop_mmcv() {
  # mmcv-lite and mmcv install the same `mmcv` package: remove both dists first
  log "removing the installed mmcv ($1)"
  "${PIP[@]}" uninstall -q -y mmcv-lite mmcv mmcv-full 2>&1 | grep -v 'not installed' >&2 || true
}

if [ "$MODE" = light ]; then
  PKGS=("${TORCH_SPEC[@]}" "$SETUPTOOLS_SPEC")
  if have_mmcv; then
    log "mmcv $MMCV_VERSION already installed: kept"
  else
    "$PY" -c "import mmcv" >/dev/null 2>&1 && drop_mmcv "not $MMCV_VERSION"
    PKGS+=("mmcv-lite==$MMCV_VERSION")
  fi
  # One pip run; --no-compile: Python writes the .pyc files of what it imports on first
  # import instead of pip compiling every file (torch's thousands) at install.
  log "installing ${PKGS[*]}, mmengine, mmpretrain, timm and cim_mm (editable)"
  "${PIP[@]}" install -q --no-compile "${PKGS[@]}" -e "$ROOT"
else
  log "installing torch + torchvision"
  "${PIP[@]}" install -q "${TORCH_SPEC[@]}" "$SETUPTOOLS_SPEC"
  if have_mmcv_ops; then
    log "mmcv $MMCV_VERSION with ops already installed"
  else
    # a light venv's mmcv-lite (or another mmcv) makes way for the build with ops
    "$PY" -c "import mmcv" >/dev/null 2>&1 && drop_mmcv "no compiled ops, or not $MMCV_VERSION"
    log "installing mmcv $MMCV_VERSION (prebuilt wheel if offered)"
    mkdir -p "$WHEELS"
    # with its dependencies (mmengine, numpy, opencv, ...): `import mmcv.ops` needs them
    if ! "${PIP[@]}" install -q --only-binary mmcv --find-links "$WHEELS" \
          "mmcv==$MMCV_VERSION" "${TORCH_SPEC[@]}" "$SETUPTOOLS_SPEC"; then
      log "no prebuilt mmcv $MMCV_VERSION wheel offered for this torch; building one"
      build_mmcv
      "${PIP[@]}" install -q --only-binary mmcv --find-links "$WHEELS" \
        "mmcv==$MMCV_VERSION" "${TORCH_SPEC[@]}" "$SETUPTOOLS_SPEC"
    fi
    if ! have_mmcv_ops; then
      "$PY" -c "import mmcv.ops" || true   # show why
      log "ERROR: mmcv $MMCV_VERSION installed but mmcv.ops does not import (see above)"
      exit 1
    fi
  fi

  log "installing mmengine / mmpretrain / mmsegmentation / timm and cim_mm (editable)"
  "${PIP[@]}" install -q -e "$ROOT[seg,tests]" "mmcv==$MMCV_VERSION" "${TORCH_SPEC[@]}" \
    "$SETUPTOOLS_SPEC"
  # reference implementation of the DALL-E dVAE, used only by the equivalence test;
  # its own requirements (blobfile, mypy, ...) are not needed for that.
  "${PIP[@]}" install -q --no-deps dall-e==0.1
fi

# (mmcv-lite warns that mmcv.ops is missing: expected here)
"$PY" -W 'ignore:Fail to import' -c "$IMPORTS" \
  || { log "ERROR: the environment does not import; see the messages above"; exit 1; }
echo "$(stamp_of) $MODE" > "$STAMP_FILE"
log "environment ready: $VENV ($MODE)"
