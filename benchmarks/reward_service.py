"""Reward-service throughput, measured in one run (``make bench``):

    .venv/bin/python -m benchmarks.reward_service [--quick]

1. CNN scorer frames/s vs batch size (1, 8, 32, 64): in-process ``score_batch`` vs over gRPC
   (RewardClient -> one reward server in another process, 128x128 RGB raw frames, a few requests
   pipelined); ratio gRPC / in-process (goal >= 0.9 at batch 32). The CNN runs at the frames' own
   128x128 resolution; a second line at batch 32 downsamples to 64x64 first (4x cheaper scorer), which
   shows where the Python gRPC transport (~0.2 ms per 49 KB frame on this machine) becomes the limit.
2. Dynamic batching gain: 32 concurrent batch-1 requests vs batch-1 requests one at a time,
   for the synthetic accelerator-like scorer (goal >= 4x) and, for reference, the CPU CNN.
3. Synthetic scorer (fixed 20 ms + 0.5 ms/item, spent sleeping: releases the GIL like a GPU
   call) with 1 vs 2 workers, each a reward server in its own process (``ServerThread`` in a
   forkserver child, see vlmrl.reward_workers.server_process; no Ray) (goal >= 1.8x).

Servers run in separate processes (as in deployment: actors and workers never share a GIL);
torch uses 1 thread everywhere so in-process and served numbers compare like for like.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any, Dict, List

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from benchmarks.record import add_record_args, record_from_args, val

FRAME = 128
TASK = "push the red cube onto the green goal"
CNN_PARAMS = {"image_size": 128, "num_threads": 1}
CHEAP_CNN_PARAMS = {"image_size": 64, "num_threads": 1}
SYNTH_PARAMS = {"fixed_ms": 20.0, "per_item_ms": 0.5}


def _info_dict(info) -> Dict[str, float]:
    s = info.stats
    return {"batches": s.batches, "items": s.items, "mean_batch": s.mean_batch_size, "scorer_ms": s.mean_scorer_ms}


class ServerProcess:
    """A reward server in its own process (vlmrl.reward_workers.server_process); ``stop()`` returns its stats."""

    def __init__(self, scorer: str, params: Dict[str, Any], max_batch: int, max_wait_ms: float = 2.0) -> None:
        from vlmrl.reward_workers.server_process import ServerProcess as _Proc

        self._proc = _Proc(scorer, params, f"bench-{scorer}",
                           server_cfg={"max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_queue_items": 1 << 16})
        self.address = self._proc.address

    def stop(self) -> Dict[str, float]:
        info = _info_dict(self._proc.info())
        self._proc.stop(0)
        return info


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, FRAME, FRAME, 3), dtype=np.uint8)


def closed_loop(client, batch: int, concurrency: int, seconds: float, pool: np.ndarray) -> float:
    """Frames/s with ``concurrency`` requests of ``batch`` frames always outstanding, for ``seconds``."""
    from vlmrl.reward_workers.frames import make_item
    from vlmrl.reward_workers.scorers.base import ItemKind

    items = [make_item(f, ItemKind.FRAME) for f in pool]  # pre-encoded: measure the service, not numpy
    sem = threading.Semaphore(concurrency)
    done = [0]
    lock = threading.Lock()
    errors: List[BaseException] = []

    def on_done(fut, n=batch):
        if fut.exception() is not None:
            errors.append(fut.exception())
        with lock:
            done[0] += n
        sem.release()

    # warm-up
    client.score(TASK, items[:batch])
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        sem.acquire()
        start = (i * batch) % (len(items) - batch)
        client.submit(TASK, items[start:start + batch]).add_done_callback(on_done)
        i += 1
    for _ in range(concurrency):
        sem.acquire()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return done[0] / elapsed


def bench_cnn_batch_sizes(seconds: float, repeats: int, sizes=(1, 8, 32, 64),
                          params: Dict[str, Any] = CNN_PARAMS) -> List[Dict[str, float]]:
    """In-process and served runs alternate ``repeats`` times per batch size; medians are reported
    (the machine is shared, so a single run can be hit by someone else's load)."""
    import torch

    torch.set_num_threads(1)
    from vlmrl.reward_workers.client import RewardClient
    from vlmrl.reward_workers.scorers import build_scorer
    from vlmrl.system.config import ClientConfig

    pool = frames(256)
    items = [f[None] for f in pool]
    scorer = build_scorer("cnn", params)
    rows = []
    for b in sizes:
        scorer.score_batch([TASK] * b, items[:b])  # warm-up
        srv = ServerProcess("cnn", params, max_batch=b, max_wait_ms=2.0)
        inprocs, serveds = [], []
        with RewardClient(ClientConfig(max_items_per_request=b, max_in_flight=4), addresses=[srv.address]) as client:
            for _ in range(repeats):
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    start = (n * b) % (len(items) - b)
                    scorer.score_batch([TASK] * b, items[start:start + b])
                    n += 1
                inprocs.append(n * b / (time.perf_counter() - t0))
                serveds.append(closed_loop(client, b, concurrency=4, seconds=seconds, pool=pool))
        info = srv.stop()
        inproc, served = float(np.median(inprocs)), float(np.median(serveds))
        rows.append({"batch": b, "in_process": inproc, "grpc": served, "ratio": served / inproc,
                     "server_mean_batch": info["mean_batch"], "server_scorer_ms": info["scorer_ms"]})
        print(f"  cnn@{params['image_size']}px batch {b:3d}: in-process {inproc:8.1f} frames/s | gRPC {served:8.1f} frames/s | "
              f"ratio {served / inproc:.2f} (scorer ms/call: in-process {1000 * b / inproc:.1f}, "
              f"in the server {info['scorer_ms']:.1f}; runs: in-process "
              + "/".join(f"{x:.0f}" for x in inprocs) + ", gRPC " + "/".join(f"{x:.0f}" for x in serveds) + ")",
              flush=True)
    return rows


def bench_batching_gain(scorer: str, params: Dict[str, Any], seconds: float, concurrency: int = 32) -> Dict[str, float]:
    from vlmrl.reward_workers.client import RewardClient
    from vlmrl.system.config import ClientConfig

    pool = frames(256, seed=1)
    srv = ServerProcess(scorer, params, max_batch=concurrency, max_wait_ms=2.0)
    cfg = ClientConfig(max_items_per_request=1, max_in_flight=concurrency)
    with RewardClient(cfg, addresses=[srv.address]) as client:
        serial = closed_loop(client, 1, concurrency=1, seconds=seconds, pool=pool)
        concurrent = closed_loop(client, 1, concurrency=concurrency, seconds=seconds, pool=pool)
    info = srv.stop()
    gain = concurrent / serial
    print(f"  {scorer}: batch-1 serial {serial:8.1f} frames/s | {concurrency} concurrent batch-1 {concurrent:8.1f} frames/s"
          f" | gain {gain:.1f}x (server mean batch {info['mean_batch']:.1f} overall)", flush=True)
    return {"scorer": scorer, "serial": serial, "concurrent": concurrent, "gain": gain, "mean_batch": info["mean_batch"]}


def bench_scaling(seconds: float, batch: int = 8, in_flight_per_worker: int = 16) -> Dict[str, float]:
    from vlmrl.reward_workers.client import RewardClient
    from vlmrl.system.config import ClientConfig

    pool = frames(256, seed=2)
    out = {}
    for n in (1, 2):
        servers = [ServerProcess("synthetic", SYNTH_PARAMS, max_batch=32, max_wait_ms=2.0) for _ in range(n)]
        cfg = ClientConfig(max_items_per_request=batch, max_in_flight=in_flight_per_worker)
        with RewardClient(cfg, addresses=[s.address for s in servers]) as client:
            out[n] = closed_loop(client, batch, concurrency=in_flight_per_worker * n, seconds=seconds, pool=pool)
        infos = [s.stop() for s in servers]
        print(f"  synthetic, {n} worker(s): {out[n]:8.1f} frames/s (server mean batch "
              + ", ".join(f"{i['mean_batch']:.1f}" for i in infos) + ")", flush=True)
    ratio = out[2] / out[1]
    print(f"  2 vs 1 workers: {ratio:.2f}x", flush=True)
    return {"one": out[1], "two": out[2], "ratio": ratio}


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per configuration")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats per batch size in part 1 (median)")
    parser.add_argument("--quick", action="store_true", help="1 s per configuration, 1 repeat (smoke run)")
    parser.add_argument("--parts", default="123", help="which parts to run, e.g. 3 or 13 (default: all)")
    parser.add_argument("--batch-sizes", default="1,8,32,64", help="part 1 batch sizes (default: %(default)s)")
    add_record_args(parser)
    args = parser.parse_args(argv)
    values: Dict[str, dict] = {}
    load_start = os.getloadavg()[0]
    seconds = 1.0 if args.quick else args.seconds
    repeats = 1 if args.quick else args.repeats
    print(f"reward service benchmark ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, "
          f"{seconds:g} s per configuration, {FRAME}x{FRAME} RGB raw)")
    if "1" in args.parts:
        print("1. CNN scorer, frames/s vs batch size (in-process score_batch vs client -> 1 server process):")
        rows = bench_cnn_batch_sizes(seconds, repeats, [int(b) for b in args.batch_sizes.split(",")])
        for r in rows:
            if r["batch"] == 32:
                print(f"   ratio gRPC/in-process at batch 32: {r['ratio']:.2f} (goal >= 0.9)")
                values["grpc_vs_inprocess_b32"] = val(r["ratio"], goal=">= 0.9", unit="ratio",
                                                      note="CNN at 128 px, frames/s served / in-process, median")
                values["grpc_frames_per_s_b32"] = val(r["grpc"], unit="frames/s")
        print("   the same at batch 32 with a 4x cheaper scorer (frames downsampled to 64x64 first):")
        cheap = bench_cnn_batch_sizes(seconds, repeats, [32], CHEAP_CNN_PARAMS)[0]
        print(f"   ratio with the cheap scorer: {cheap['ratio']:.2f} (transport-bound at {cheap['grpc']:.0f} frames/s)")
        values["grpc_vs_inprocess_b32_cheap_scorer"] = val(cheap["ratio"], unit="ratio", note="CNN at 64 px")
        values["grpc_frames_per_s_b32_cheap_scorer"] = val(cheap["grpc"], unit="frames/s")
    if "2" in args.parts:
        print("2. dynamic batching gain, 32 concurrent batch-1 requests vs batch-1 one at a time:")
        synth = bench_batching_gain("synthetic", SYNTH_PARAMS, seconds)
        cnn = bench_batching_gain("cnn", CNN_PARAMS, seconds)
        print(f"   gain: synthetic {synth['gain']:.1f}x (goal >= 4x), cnn on CPU {cnn['gain']:.1f}x")
        values["batching_gain_synthetic"] = val(synth["gain"], goal=">= 4", unit="x")
        values["batching_gain_cnn"] = val(cnn["gain"], unit="x")
    if "3" in args.parts:
        print("3. synthetic scorer (20 ms + 0.5 ms/item, sleeping), 1 vs 2 worker processes "
              "(ServerThread each, no Ray; 8-frame requests, 16 in flight per worker):")
        scaling = bench_scaling(seconds)
        print(f"   scaling 2 vs 1 workers: {scaling['ratio']:.2f}x (goal >= 1.8x)")
        values["worker_scaling_2v1"] = val(scaling["ratio"], goal=">= 1.8", unit="x", note="synthetic scorer")
    load_end = os.getloadavg()[0]
    print(f"load average at end: {load_end:.1f}")
    if values:
        record_from_args(args, "reward_service" + ("_quick" if args.quick else ""), values,
                         notes=f"{seconds:g} s per configuration, {repeats} repeat(s); load average "
                               f"{load_start:.1f} at start, {load_end:.1f} at end", argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
