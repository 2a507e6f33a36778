"""Latency of every VLM scorer on TINY RANDOM models on the CPU: plumbing cost, NOT real-model numbers.

    .venv/bin/python -m benchmarks.vlm_cpu [--reps 5] [--threads 1] [--frame 224]

Builds the tiny Qwen2.5-VL and CLIP checkpoints (reward_workers/backends/tiny_models.py) in a temp
folder, then times ``score_batch`` of the lrm, preference, window (two-stage and single-stage) and
clip scorers at batch 1 and 8, and splits each batch's time into the backend's ``timings``:
CPU preprocessing (chat template, tokenizer, image processor), model forwards (prefill scoring) and
generation (the window scorer's stage-1 description). The tiny models have 2 layers of width 128,
so these numbers show the fixed cost of the reward path (preprocessing, Python, padding), not what
a 3B VLM costs; for that see benchmarks/vlm_gpu.py.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.record import add_record_args, record_from_args, val

TASK = "push the red cube onto the green goal"
TIMING_KEYS = ("preprocess_s", "forward_s", "generate_s")


def scorer_specs(vlm: str, clip: str):
    """(label, scorer name, params, frames per item) of each benchmarked configuration."""
    common = {"model": vlm, "device": "cpu"}
    return [
        ("lrm (3 prompts/pair)", "lrm", {**common, "weights": {"progress": 1, "completion": 1, "contrastive": 1}}, 2),
        ("preference", "preference", common, 2),
        ("window w=4 two-stage", "window", {**common, "window_size": 4, "prompt": "two_stage", "max_new_tokens": 32}, 4),
        ("window w=4 single-stage", "window", {**common, "window_size": 4, "prompt": "single_stage"}, 4),
        ("clip", "clip", {"model": clip, "device": "cpu"}, 1),
    ]


def time_scorer(scorer, batch: int, frames: int, size: int, reps: int, rng: np.random.Generator) -> dict:
    """Median wall ms of one score_batch call, and the mean ms per call of each backend timing."""
    items = [rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8) for _ in range(batch)]
    tasks = [TASK] * batch
    scorer.score_batch(tasks, items)  # warm-up
    backend = getattr(scorer, "backend", None)
    before = dict(backend.timings) if backend is not None else {}
    walls = []
    for _ in range(reps):
        t0 = time.perf_counter()
        scorer.score_batch(tasks, items)
        walls.append(time.perf_counter() - t0)
    row = {"wall_ms": 1e3 * statistics.median(walls)}
    for k in TIMING_KEYS:
        row[k] = 1e3 * (backend.timings[k] - before[k]) / reps if backend is not None else None
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="timed calls per (scorer, batch); the median is shown")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--frame", type=int, default=224, help="frame side in pixels (224 -> 64 visual tokens per image)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    add_record_args(ap)
    args = ap.parse_args(argv)
    values = {}
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from vlmrl.reward_workers.backends.tiny_models import build_tiny_clip, build_tiny_qwen_vl
    from vlmrl.reward_workers.scorers import build_scorer

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        vlm = str(build_tiny_qwen_vl(Path(tmp) / "qwen"))
        clip = str(build_tiny_clip(Path(tmp) / "clip"))
        print(f"TINY RANDOM models (plumbing latency, not real-model numbers); CPU, {args.threads} thread(s), "
              f"{args.frame}x{args.frame} frames, median of {args.reps}")
        header = f"{'scorer':<26}{'batch':>6}{'ms/batch':>10}{'ms/item':>9}{'preproc ms':>12}{'forward ms':>12}{'generate ms':>13}"
        print(header)
        print("-" * len(header))
        for label, name, params, frames in scorer_specs(vlm, clip):
            scorer = build_scorer(name, params)
            try:
                for b in args.batches:
                    r = time_scorer(scorer, b, frames, args.frame, args.reps, rng)
                    cells = [f"{r[k]:>12.1f}" if r[k] is not None else f"{'n/a':>12}" for k in TIMING_KEYS[:2]]
                    gen = f"{r['generate_s']:>13.1f}" if r["generate_s"] is not None else f"{'n/a':>13}"
                    print(f"{label:<26}{b:>6}{r['wall_ms']:>10.1f}{r['wall_ms'] / b:>9.1f}{''.join(cells)}{gen}")
                    key = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
                    values[f"{key}_batch{b}_ms_per_item"] = val(r["wall_ms"] / b, unit="ms/item",
                                                                 note="TINY RANDOM model: plumbing latency")
            finally:
                scorer.close()
    print("preproc = chat template + tokenizer + image processor (overlaps the forward of the previous micro-batch); "
          "clip has no VLM backend timings (n/a).")
    record_from_args(args, "vlm_cpu", values,
                     notes=f"TINY RANDOM models (plumbing latency, not real-model numbers); CPU, {args.threads} "
                           f"thread(s), {args.frame}x{args.frame} frames, median of {args.reps} calls", argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
