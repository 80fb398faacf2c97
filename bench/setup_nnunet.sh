#!/usr/bin/env bash
# Idempotently create the nnU-Net v2 (2.8.1) benchmark venv, OUTSIDE the repo:
#   ${NNSEG_BENCH_CACHE:-$HOME/.cache/nnseg-bench}/nnunet-venv
# Never touches NNSeg's own venv (/work/main/.venv).
set -euo pipefail

CACHE="${NNSEG_BENCH_CACHE:-$HOME/.cache/nnseg-bench}"
VENV="$CACHE/nnunet-venv"
PY="${PYTHON:-python3.11}"
TORCH_VER="2.13.0"
NNUNET_VER="2.8.1"

mkdir -p "$CACHE"
PIN="$CACHE/torch-pin.txt"
echo "torch==$TORCH_VER" > "$PIN"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup_nnunet] creating venv $VENV with $PY"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi

have() {  # have PKG VERSION -> installed at exactly that version?
    "$VENV/bin/python" - "$1" "$2" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    v = version(sys.argv[1])
except PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if v.split('+')[0] == sys.argv[2] else 1)
PYEOF
}

# 1. CPU torch first (local wheel)
if ! have torch "$TORCH_VER"; then
    echo "[setup_nnunet] installing torch==$TORCH_VER"
    "$VENV/bin/pip" install "torch==$TORCH_VER"
fi

# 2. nnunetv2 with torch pinned (otherwise pip pulls a CUDA torch + nvidia libs)
if ! have nnunetv2 "$NNUNET_VER"; then
    echo "[setup_nnunet] installing nnunetv2==$NNUNET_VER (torch pinned)"
    "$VENV/bin/pip" install "nnunetv2==$NNUNET_VER" -c "$PIN"
fi

# 3. torchvision workaround: the PyPI torchvision is CUDA-built; its ops are missing beside a
#    CPU torch and `_meta_registrations.py` then fails at import (torchvision::nms does not exist).
#    Make its register_fake decorators no-ops when torchvision's compiled ops are unavailable.
"$VENV/bin/python" - <<'PYEOF'
import importlib.util, pathlib, re, sys
spec = importlib.util.find_spec("torchvision")
if spec is None or not spec.submodule_search_locations:
    print("[setup_nnunet] torchvision not installed; nothing to patch"); sys.exit(0)
f = pathlib.Path(list(spec.submodule_search_locations)[0]) / "_meta_registrations.py"
src = f.read_text()
MARK = "# NNSEG-BENCH PATCH"
if MARK in src:
    print(f"[setup_nnunet] {f} already patched"); sys.exit(0)
shim = (
    f"{MARK}: no-op fake registrations when torchvision's compiled ops are missing\n"
    "def _nnseg_bench_register_fake(*args, **kwargs):\n"
    "    try:\n"
    "        from torchvision.extension import _has_ops as _nnseg_has_ops\n"
    "        ok = _nnseg_has_ops()\n"
    "    except Exception:\n"
    "        ok = False\n"
    "    if ok:\n"
    "        return torch.library.register_fake(*args, **kwargs)\n"
    "    return lambda fn: fn\n"
)
# insert the shim after the last top-level import line, then redirect decorator uses
lines = src.splitlines(keepends=True)
last_imp = max(i for i, l in enumerate(lines) if re.match(r"(import |from \S+ import )", l))
# handle multi-line parenthesised import
j = last_imp
if "(" in lines[j] and ")" not in lines[j]:
    while ")" not in lines[j]:
        j += 1
lines.insert(j + 1, "\n" + shim + "\n")
new = "".join(lines)
n = len(re.findall(r"@torch\.library\.register_fake\(", new))
new = re.sub(r"@torch\.library\.register_fake\(", "@_nnseg_bench_register_fake(", new)
if n == 0:
    print("[setup_nnunet] WARNING: no @torch.library.register_fake decorators found in", f)
f.write_text(new)
print(f"[setup_nnunet] patched {n} decorators in {f}")
PYEOF

# 4. verify
"$VENV/bin/python" -c "import torch, nnunetv2, torchvision; print('[setup_nnunet] torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda)"
"$VENV/bin/python" -c "from importlib.metadata import version; print('[setup_nnunet] nnunetv2', version('nnunetv2'))"
"$VENV/bin/nnUNetv2_plan_and_preprocess" -h > /dev/null
echo "[setup_nnunet] OK: $VENV"
