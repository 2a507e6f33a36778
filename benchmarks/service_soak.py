"""Reward-service soak: a normal client beside a flooding and a never-reading client (issue 26), one run:

    .venv/bin/python -m benchmarks.service_soak [--quick] [--seconds 15] [--json PATH]

One reward server (``vlmrl.reward_workers.server_process``: its own process, default server limits,
synthetic scorer with ``--fixed-ms`` + ``--per-item-ms`` per batch, spent sleeping like a GPU call)
on 127.0.0.1, and clients, each in its own process, on raw ScoreStreams (no retries, so every
error is counted):

* normal: one request of 1 frame every ``--period-ms`` (default 100 ms), latency per request;
* flood: one stream sending 8-frame requests as fast as gRPC takes them, reading its answers;
* never-reading: one stream sending 1,024-frame requests (the same frame and task: cache hits, so
  answers are large and fast) and never reading an answer.

The normal and flood requests carry a new task text each, so the reward cache never answers them.
Optional (``--noisy ...,png``): a client streaming requests of 42 black 1024x1024 PNGs (about 130 KB
on the wire, 126 MiB decoded each), as fast as it is read: the decode budgets' worst case.

Phase 1 runs the normal client alone (its solo p50/p99), phase 2 runs all three together. Printed:
each client's p50/p99 latency and RESOURCE_EXHAUSTED count, the normal client's soak p99 / solo p99
(goal <= 2), how many requests the never-reading client got onto the wire, and the server's peak RSS
(VmHWM) vs ``--rss-bound-mb`` (goal: under it; default 2048). Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import threading
import time
from typing import Any, Dict, List

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from benchmarks.record import add_record_args, record_from_args, val

_CTX = mp.get_context("spawn")
TASK = "push the cube"
METHOD = "/vlmrl.reward.v1.RewardService/ScoreStream"
RESOURCE_EXHAUSTED = 8


def _items_bytes(n_items: int, size: int, value: int, encoding: str = "raw") -> bytes:
    """The serialized ``items`` field of a ScoreRequest: n items of one frame."""
    from vlmrl.reward_workers.frames import make_item
    from vlmrl.reward_workers.proto import reward_pb2

    item = make_item(np.full((size, size, 3), value, np.uint8), "frame", encoding=encoding)
    return reward_pb2.ScoreRequest(items=[item] * n_items).SerializeToString()


def _request(request_id: str, task: str, items: bytes) -> bytes:
    """A serialized ScoreRequest built by concatenating its fields (cheap enough to flood with)."""
    rid, text = request_id.encode(), task.encode()
    return b"\x0a" + bytes([len(rid)]) + rid + b"\x12" + bytes([len(text)]) + text + items


def _percentiles(lat_ms: List[float]) -> Dict[str, float]:
    if not lat_ms:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    a = np.asarray(lat_ms)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max())}


def _client(role: str, address: str, seconds: float, period_ms: float, conn) -> None:
    """One client process: sends for ``seconds``, then reports {latencies, errors, sent, answered} on ``conn``."""
    import grpc

    from vlmrl.reward_workers.proto import reward_pb2

    n_items, size, encoding = {"normal": (1, 64, "raw"), "flood": (8, 64, "raw"), "never_read": (1024, 16, "raw"),
                               "png": (42, 1024, "png")}[role]
    items = _items_bytes(n_items, size, 77 if role == "normal" else 10, encoding)

    def task_of(i: int) -> str:  # normal and flood: a new task text per request, so the reward cache never answers
        return TASK if role == "never_read" else f"{TASK} {os.getpid()} #{i}"
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20),
                                                      ("grpc.max_receive_message_length", 64 << 20)])
    call_fn = channel.stream_stream(METHOD, response_deserializer=reward_pb2.ScoreResponse.FromString)
    sent_at: Dict[str, float] = {}
    latencies: List[float] = []
    errors: Dict[int, int] = {}
    counts = {"sent": 0, "answered": 0, "stream_errors": 0}
    stop_at = time.perf_counter() + seconds
    outbox: "queue.Queue[bytes | None]" = queue.Queue()

    def requests():  # normal: one per period; flood / never_read: as fast as gRPC takes them (flow control blocks)
        i = 0
        while time.perf_counter() < stop_at:
            rid = f"{role}-{i}"
            sent_at[rid] = time.perf_counter()
            counts["sent"] += 1
            yield _request(rid, task_of(i), items)
            i += 1
            if role == "normal":
                time.sleep(period_ms / 1000.0)

    call = call_fn(requests(), timeout=seconds + 60)
    if role == "never_read":
        time.sleep(seconds)
        call.cancel()
    else:
        try:
            for resp in call:
                t = time.perf_counter()
                counts["answered"] += 1
                if resp.HasField("error") and resp.error.code:
                    errors[resp.error.code] = errors.get(resp.error.code, 0) + 1
                elif resp.request_id in sent_at:
                    latencies.append((t - sent_at.pop(resp.request_id)) * 1000.0)
        except grpc.RpcError as e:
            counts["stream_errors"] += 1
            errors[e.code().value[0]] = errors.get(e.code().value[0], 0) + 1
    channel.close()
    conn.send({"role": role, "latencies_ms": latencies, "errors": errors, **counts})


def _start(role: str, address: str, seconds: float, period_ms: float):
    parent, child = _CTX.Pipe()
    proc = _CTX.Process(target=_client, args=(role, address, seconds, period_ms, child), daemon=True)
    proc.start()
    child.close()
    return proc, parent


def _collect(started, timeout: float) -> Dict[str, Dict[str, Any]]:
    out = {}
    for proc, conn in started:
        if conn.poll(timeout):
            r = conn.recv()
            out[r["role"]] = r
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return out


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every 50 ms; ``peak_mb`` also reads the kernel's VmHWM (exact peak)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples_mb, self._halt = pid, [], threading.Event()

    def _status(self, key: str) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def run(self) -> None:
        while not self._halt.wait(0.05):
            try:
                self.samples_mb.append(self._status("VmRSS:"))
            except OSError:
                return

    def stop(self) -> Dict[str, float]:
        self._halt.set()
        self.join(2)
        return {"start_mb": self.samples_mb[0] if self.samples_mb else float("nan"),
                "peak_sampled_mb": max(self.samples_mb, default=float("nan")), "peak_hwm_mb": self._status("VmHWM:")}


def _summary(r: Dict[str, Any]) -> Dict[str, Any]:
    return {**_percentiles(r["latencies_ms"]), "sent": r["sent"], "answered": r["answered"],
            "resource_exhausted": r["errors"].get(RESOURCE_EXHAUSTED, 0), "errors": r["errors"],
            "stream_errors": r["stream_errors"]}


def run(seconds: float, fixed_ms: float, per_item_ms: float, period_ms: float, rss_bound_mb: float,
        noisy_roles=("flood", "never_read")) -> Dict[str, Any]:
    from vlmrl.reward_workers.server_process import ServerProcess

    server = ServerProcess("synthetic", {"fixed_ms": fixed_ms, "per_item_ms": per_item_ms}, "soak",
                           server_cfg={"cache_size": 4096})
    rss = RssSampler(server.proc.pid)
    rss.start()
    try:
        solo = _collect([_start("normal", server.address, seconds, period_ms)], seconds + 90)["normal"]
        ramp = 2.0  # the flood and the never-reading client fill their caps before the normal client starts
        noisy = [_start(role, server.address, seconds + 2 * ramp, period_ms) for role in noisy_roles]
        time.sleep(ramp)
        normal = [_start("normal", server.address, seconds, period_ms)]
        soak = _collect(normal + noisy, seconds + 2 * ramp + 90)
        info = server.proc.is_alive() and server.info()
    finally:
        mem = rss.stop()
        server.stop(0)
    solo_s, soak_s = _summary(solo), {role: _summary(r) for role, r in soak.items()}
    ratio = soak_s["normal"]["p99_ms"] / solo_s["p99_ms"]
    return {
        "config": {"noisy_clients": list(noisy_roles), "seconds": seconds, "fixed_ms": fixed_ms, "per_item_ms": per_item_ms, "period_ms": period_ms,
                   "server": "default ServerConfig limits + cache_size=4096", "max_batch": 32, "max_wait_ms": 5.0},
        "solo": solo_s, "soak": soak_s,
        "normal_p99_ratio": {"value": ratio, "goal": "<= 2"},
        "normal_resource_exhausted": {"value": soak_s["normal"]["resource_exhausted"], "goal": 0},
        "server_peak_rss_mb": {"value": mem["peak_hwm_mb"], "goal": f"< {rss_bound_mb:g}", **mem},
        "server_stats": {"requests": info.stats.requests, "items": info.stats.items,
                         "rejected_requests": info.stats.rejected_requests,
                         "mean_batch_size": info.stats.mean_batch_size} if info else None,
    }


def _print(res: Dict[str, Any], rss_bound_mb: float) -> None:
    c = res["config"]
    print(f"synthetic scorer {c['fixed_ms']:g} ms + {c['per_item_ms']:g} ms/item per batch, {c['seconds']:g} s per phase, "
          f"normal client 1 frame every {c['period_ms']:g} ms")
    print(f"{'client':<22}{'n':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'RES_EXH':>9}{'sent':>9}{'answered':>10}")
    rows = [("normal, solo", res["solo"])] + [(f"{r}, soak", s) for r, s in res["soak"].items()]
    for name, s in rows:
        print(f"{name:<22}{s['n']:>8}{s['p50_ms']:>10.1f}{s['p99_ms']:>10.1f}{s['max_ms']:>10.1f}"
              f"{s['resource_exhausted']:>9}{s['sent']:>9}{s['answered']:>10}")
    print(f"normal client p99 soak / solo: {res['normal_p99_ratio']['value']:.2f}  (goal <= 2); "
          f"RESOURCE_EXHAUSTED to it: {res['normal_resource_exhausted']['value']} (goal 0)")
    m = res["server_peak_rss_mb"]
    print(f"server RSS: start {m['start_mb']:.0f} MB, peak {m['value']:.0f} MB (bound {rss_bound_mb:g} MB)")
    if res["server_stats"]:
        print(f"server: {res['server_stats']}")


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="5 s phases (smoke run)")
    parser.add_argument("--fixed-ms", type=float, default=20.0, help="synthetic scorer cost per batch")
    parser.add_argument("--per-item-ms", type=float, default=0.5, help="synthetic scorer cost per item")
    parser.add_argument("--period-ms", type=float, default=100.0, help="normal client's request period")
    parser.add_argument("--rss-bound-mb", type=float, default=2048.0, help="server RSS bound to check")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--noisy", default="flood,never_read", help="clients beside the normal one in phase 2")
    add_record_args(parser)
    args = parser.parse_args(argv)
    seconds = 5.0 if args.quick else args.seconds
    res = run(seconds, args.fixed_ms, args.per_item_ms, args.period_ms, args.rss_bound_mb,
              tuple(r for r in args.noisy.split(",") if r))
    _print(res, args.rss_bound_mb)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    solo, soak = res["solo"], res["soak"]["normal"]
    values = {
        "normal_p99_ratio": val(res["normal_p99_ratio"]["value"], goal="<= 2", unit="ratio",
                                note="normal client's p99 beside the noisy clients / its solo p99"),
        "normal_resource_exhausted": val(res["normal_resource_exhausted"]["value"], goal="0", unit="requests"),
        "server_peak_rss_mb": val(res["server_peak_rss_mb"]["value"], goal=f"< {args.rss_bound_mb:g}", unit="MB",
                                  note="VmHWM of the server process"),
        "normal_solo_p50_ms": val(solo["p50_ms"], unit="ms"), "normal_solo_p99_ms": val(solo["p99_ms"], unit="ms"),
        "normal_soak_p50_ms": val(soak["p50_ms"], unit="ms"), "normal_soak_p99_ms": val(soak["p99_ms"], unit="ms"),
    }
    for role in res["soak"]:
        if role != "normal":
            values[f"{role}_sent"] = val(res["soak"][role]["sent"], unit="requests")
            values[f"{role}_resource_exhausted"] = val(res["soak"][role]["resource_exhausted"], unit="requests")
    record_from_args(args, "service_soak", values, argv=argv,
                     notes=f"one run; load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
