"""Offline labelling throughput (``vlmrl label``): frames/s with 1 vs 2 reward workers.

Each worker is a separate ``vlmrl serve`` process (as in a real pool, no shared GIL); the labeller runs
in this process over a SYNTHETIC episode dataset and talks to the workers with the RewardClient
(``label.workers=addresses``). Two scorers:

* ``synthetic`` in window mode with an accelerator-like cost (``fixed_ms`` + ``per_item_ms`` per batch,
  spent in sleep: the worker's CPU is free while it "computes");
* ``window`` (RG-VLM two-stage prompt) on the tiny random Qwen2.5-VL of ``vlmrl build-tiny-vlm``
  (CPU, 1 torch thread per worker: plumbing cost, not a real VLM's).

Usage::

    .venv/bin/python -m benchmarks.labelling [--episodes 24] [--steps 24] [--window 8] [--vlm-episodes 4]

Prints frames/s for each (scorer, workers) and the 2-vs-1 worker ratio per scorer.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

from omegaconf import OmegaConf

from benchmarks.record import add_record_args, record_from_args, val

from vlmrl.envs.offline_readers import open_reader
from vlmrl.envs.synthetic_episodes import write_synthetic_dataset
from vlmrl.learner.labels.labelling import LabelSettings, label_dataset
from vlmrl.reward_workers.client import RewardClient
from vlmrl.system.config import ClientConfig


def start_workers(n: int, overrides: List[str], log_dir: Path) -> tuple[list, list]:
    procs, addrs = [], []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for i in range(n):
        log = open(log_dir / f"w{i}.log", "w+")
        p = subprocess.Popen([sys.executable, "-m", "vlmrl.system.cli", "serve", *overrides,
                              f"output_dir={log_dir}", f"run_name=w{i}", "--worker-id", f"w{i}", "--stats-every", "0"],
                             stdout=log, stderr=subprocess.STDOUT, env=env)
        procs.append((p, log))
    deadline = time.time() + 300
    for p, log in procs:
        while True:
            log.seek(0)
            text = log.read()
            line = next((ln for ln in text.splitlines() if ln.startswith("serving ")), None)
            if line:
                addrs.append(line.rsplit(" on ", 1)[1].strip())
                break
            if p.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"worker failed to start:\n{text[-2000:]}")
            time.sleep(0.2)
    return procs, addrs


def stop_workers(procs) -> None:
    for p, _ in procs:
        p.terminate()
    for p, log in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
        log.close()


def measure(dataset: Path, scorer_overrides: List[str], n_workers: int, window: int, work: Path, max_episodes: int,
            repeats: int) -> float:
    procs, addrs = start_workers(n_workers, scorer_overrides + ["server.max_batch=32", "server.max_wait_ms=5"], work)
    try:
        client_cfg = OmegaConf.structured(ClientConfig(max_items_per_request=16, max_in_flight=8))
        with RewardClient(client_cfg, addresses=addrs) as client:
            s = LabelSettings(dataset=str(dataset), window_size=window, episodes_per_shard=4, max_episodes=max_episodes,
                              scorer=scorer_overrides[0].split("=")[1])
            label_dataset(open_reader(dataset), client, s, work / f"warm{n_workers}", overwrite=True,
                          request_items=16)  # warm-up (connections, first batches)
            best = 0.0
            for r in range(repeats):
                rep = label_dataset(open_reader(dataset), client, s, work / f"out{n_workers}_{r}", overwrite=True,
                                    request_items=16, max_items_in_flight=512)
                best = max(best, rep.frames_per_s)
            return best
    finally:
        stop_workers(procs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=24)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--fixed-ms", type=float, default=20.0)
    ap.add_argument("--per-item-ms", type=float, default=2.0)
    ap.add_argument("--vlm-episodes", type=int, default=4, help="episodes labelled with the tiny VLM (0 = skip)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-synthetic", action="store_true", help="only the tiny VLM case")
    add_record_args(ap)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_label_"))
    ds = write_synthetic_dataset(work / "ds", args.episodes, seed=0, num_steps=args.steps, image_size=args.image_size)
    cases = [("synthetic", [f"scorer.name=synthetic", "scorer.params.item_kind=window", f"scorer.params.window={args.window}",
                            f"scorer.params.fixed_ms={args.fixed_ms}", f"scorer.params.per_item_ms={args.per_item_ms}"],
              0)][args.skip_synthetic:]
    if args.vlm_episodes > 0:
        from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen_vl

        vlm = build_tiny_qwen_vl(work / "tiny_qwen")
        cases.append(("window (tiny VLM)", ["scorer.name=window", f"scorer.params.model={vlm}",
                                            f"scorer.params.window_size={args.window}", "scorer.params.max_new_tokens=8",
                                            "scorer.params.device=cpu"], args.vlm_episodes))
    print(f"dataset: {args.episodes} episodes x {args.steps} steps, {args.image_size}x{args.image_size} frames, "
          f"window {args.window}; workers are `vlmrl serve` processes; {os.cpu_count()} CPU cores")
    values = {}
    for name, overrides, max_eps in cases:
        fps = {n: measure(ds, overrides, n, args.window, work, max_eps, args.repeats) for n in (1, 2)}
        print(f"{name:>20}: 1 worker {fps[1]:8.1f} frames/s | 2 workers {fps[2]:8.1f} frames/s | "
              f"ratio {fps[2] / fps[1]:.2f}x", flush=True)
        key = "synthetic" if name == "synthetic" else "tiny_vlm_window"
        values[f"{key}_1_worker_frames_per_s"] = val(fps[1], unit="frames/s")
        values[f"{key}_2_workers_frames_per_s"] = val(fps[2], unit="frames/s")
        values[f"{key}_2v1_ratio"] = val(fps[2] / fps[1], unit="x")
    if values:
        record_from_args(args, "labelling", values,
                         notes=f"SYNTHETIC dataset, {args.episodes} episodes x {args.steps} steps, {args.image_size} px, "
                               f"window {args.window}; best of {args.repeats} runs; synthetic cost {args.fixed_ms} ms + "
                               f"{args.per_item_ms} ms/item; tiny VLM on {args.vlm_episodes} episodes", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
