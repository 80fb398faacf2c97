#!/usr/bin/env bash
# Idempotently export NNSeg at one commit and give it its own venv, OUTSIDE the repo:
#   ${NNSEG_BENCH_CACHE:-$HOME/.cache/nnseg-bench}/nnseg-<commit>/src    the code (git archive)
#   ${NNSEG_BENCH_CACHE:-$HOME/.cache/nnseg-bench}/nnseg-<commit>/venv   its venv
# so that a benchmark measures exactly that commit, whatever the work tree holds meanwhile.
#
#   bash bench/setup_nnseg_pinned.sh COMMIT
#   .venv/bin/python bench/bench_accuracy.py --nnseg-python <printed python> ...
#
# Read-only with respect to the repository: only `git rev-parse` and `git archive`.
# torch==2.13.0 is installed first (the local CPU wheel) and pinned by a constraint file for
# `pip install -e` (no extras), so pip never swaps in a CUDA build.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 COMMIT" >&2
    exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${NNSEG_BENCH_CACHE:-$HOME/.cache/nnseg-bench}"
PY="${PYTHON:-python3.11}"
TORCH_VER="2.13.0"

FULL="$(git -C "$REPO" rev-parse --verify "$1^{commit}")"
SHORT="${FULL:0:7}"
DIR="$CACHE/nnseg-$SHORT"
SRC="$DIR/src"
VENV="$DIR/venv"
mkdir -p "$DIR"

# 1. the code of that commit (exported once; a partial export is redone)
if [ ! -f "$SRC/.nnseg_commit" ]; then
    echo "[setup_nnseg_pinned] exporting $FULL to $SRC"
    rm -rf "$SRC"
    mkdir -p "$SRC"
    git -C "$REPO" archive "$FULL" | tar -x -C "$SRC"
    echo "$FULL" > "$SRC/.nnseg_commit"
fi

# 2. its venv: CPU torch first, then NNSeg (editable, no extras) with torch pinned
PIN="$DIR/torch-pin.txt"
echo "torch==$TORCH_VER" > "$PIN"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup_nnseg_pinned] creating venv $VENV with $PY"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
if [ ! -f "$VENV/.installed-$SHORT" ]; then
    echo "[setup_nnseg_pinned] installing torch==$TORCH_VER"
    "$VENV/bin/python" -m pip install -q "torch==$TORCH_VER"
    echo "[setup_nnseg_pinned] installing NNSeg $SHORT (editable, torch pinned)"
    "$VENV/bin/python" -m pip install -q -c "$PIN" -e "$SRC"
    touch "$VENV/.installed-$SHORT"
fi

# 3. verify: the venv imports the exported code, and the CLI answers (from a neutral folder:
#    python puts the current folder first on sys.path, so run NNSeg from /work/main would
#    import the work tree's NNSegLib instead)
cd "$DIR"
"$VENV/bin/python" - "$SRC" <<'PYEOF'
import sys
from pathlib import Path
import NNSegLib, torch
where = Path(NNSegLib.__file__).resolve().parent.parent
if where != Path(sys.argv[1]).resolve():
    sys.exit(f"[setup_nnseg_pinned] NNSegLib imported from {where}, expected {sys.argv[1]}")
print(f"[setup_nnseg_pinned] NNSegLib {NNSegLib.__version__} from {where}, torch {torch.__version__}"
      f" (cuda {torch.version.cuda})")
PYEOF
"$VENV/bin/nnseg" train --help > /dev/null
echo "[setup_nnseg_pinned] OK: commit $FULL"
echo "$VENV/bin/python"
