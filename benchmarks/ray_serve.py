"""Ray Serve's gRPC ingress vs the reward pool's direct per-worker streams, measured in one run (issue 22, item 5):

    PYTHONPATH=<dir with fastapi, starlette, uvicorn, watchfiles, grpcio-reflection> \\
        .venv/bin/python -m benchmarks.ray_serve [--requests 120]

Both paths run the same code behind the ingress: one ``RewardServer`` (validation, decoding, dynamic batcher,
cache off) around the synthetic scorer (20 ms + 0.5 ms per item, spent sleeping like a GPU call), one replica /
worker with 0.5 CPU, on the same local Ray:

* direct: ``RewardWorkerPool`` (1 worker, its own gRPC server) + ``RewardClient`` (one ScoreStream, pipelined);
* Serve: a deployment whose ``Score`` method hands the request to a ``RewardServer`` in the replica; clients call
  Serve's gRPC proxy (``reward.RewardService/Score``, unary: Serve's gRPC ingress has no bidirectional streams).

Measured: frames/s at batch 32 with 4 requests in flight, p50/p99 request latency; recovery after the replica /
worker process is SIGKILLed while one request at a time is sent: seconds until the next answer, and requests that
failed meanwhile (the direct client waits for the supervisor's replacement; Serve answers errors until its
controller has restarted the replica).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import threading
import time
from typing import Any, Callable, Dict, List

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np

TASK = "push the red cube onto the green goal"
SYNTH = {"fixed_ms": 20.0, "per_item_ms": 0.5}
FRAME = 64
BATCH = 32
SERVE_GRPC_PORT = 9310


def _request(i: int, frames: np.ndarray):
    from vlmrl.reward_workers.frames import make_item
    from vlmrl.reward_workers.proto import reward_pb2

    return reward_pb2.ScoreRequest(request_id=f"r{i}", task=TASK, items=[make_item(f, "frame") for f in frames])


def _throughput(call: Callable[[int], Any], n: int, in_flight: int) -> Dict[str, float]:
    """``call(i)`` from ``in_flight`` threads, ``n`` calls in all: frames/s and latency percentiles."""
    lat: List[float] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t = time.perf_counter()
            call(i)
            with lock:
                lat.append((time.perf_counter() - t) * 1e3)

    for i in range(4):
        call(10_000 + i)  # warm-up
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(in_flight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {"frames_per_s": n * BATCH / wall, "p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99) - 1]}


def _recovery(call: Callable[[int], Any], kill: Callable[[], None], timeout_s: float = 120.0) -> Dict[str, float]:
    """One request at a time; SIGKILL the serving process; time until the next answer and failures meanwhile."""
    for i in range(3):
        call(20_000 + i)
    kill()
    t_kill = time.perf_counter()
    failed = 0
    i = 30_000
    while time.perf_counter() - t_kill < timeout_s:
        i += 1
        try:
            call(i)
            return {"recovery_s": time.perf_counter() - t_kill, "failed_requests": failed}
        except Exception:  # noqa: BLE001 - counted: the caller saw an error for this request
            failed += 1
            time.sleep(0.05)
    return {"recovery_s": float("nan"), "failed_requests": failed}


def run_direct(n: int, in_flight: int, frames: np.ndarray) -> Dict[str, Any]:
    from vlmrl.reward_workers.client import RewardClient
    from vlmrl.reward_workers.pool import RewardWorkerPool
    from vlmrl.system.config import load_config

    cfg = load_config(None, ["scorer.name=synthetic", f"scorer.params={SYNTH}".replace("'", ""),
                             "server.cache_size=0", "server.max_wait_ms=2", "pool.num_cpus_per_worker=0.5",
                             "pool.registry_name=bench-serve-direct", "pool.namespace=bench-serve",
                             "client.discovery_interval_s=0.2", "client.max_items_per_request=64"])
    pool = RewardWorkerPool(cfg)
    pool.start(1)
    try:
        with RewardClient(cfg.client, registry=pool.registry_view()) as client:
            call = lambda i: client.score(TASK, frames, timeout=120)  # noqa: E731
            out = _throughput(call, n, in_flight)
            pid = next(iter(pool.workers().values()))["pid"]
            out.update(_recovery(lambda i: client.score(TASK, frames[:1], timeout=120),
                                 lambda: os.kill(int(pid), signal.SIGKILL)))
        return out
    finally:
        pool.shutdown()


def run_serve(n: int, in_flight: int, frames: np.ndarray) -> Dict[str, Any]:
    import grpc
    from ray import serve
    from ray.serve.config import gRPCOptions

    from vlmrl.reward_workers.proto import reward_pb2_grpc

    @serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
    class RewardDeployment:
        def __init__(self) -> None:
            from vlmrl.reward_workers.scorers import build_scorer
            from vlmrl.reward_workers.server import RewardServer
            from vlmrl.system.config import load_config

            cfg = load_config(None, ["server.cache_size=0", "server.max_wait_ms=2"])
            self.server = RewardServer(cfg.server, build_scorer("synthetic", dict(SYNTH)), "serve")

        async def Score(self, request):  # noqa: N802 - the gRPC method name
            if self.server.batcher._task is None:  # the batcher's loop task, on the replica's event loop
                self.server.batcher.start()
            return await self.server.score_or_error(request)

        def pid(self) -> int:
            return os.getpid()

    serve.start(grpc_options=gRPCOptions(port=SERVE_GRPC_PORT, grpc_servicer_functions=[
        "vlmrl.reward_workers.proto.reward_pb2_grpc.add_RewardServiceServicer_to_server"]))
    handle = serve.run(RewardDeployment.bind(), name="reward", route_prefix="/reward")
    channel = grpc.insecure_channel(f"127.0.0.1:{SERVE_GRPC_PORT}", options=[
        ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])
    stub = reward_pb2_grpc.RewardServiceStub(channel)
    requests = {}

    def call(i: int, k: int = BATCH):
        req = requests.get((i % 8, k)) or requests.setdefault((i % 8, k), _request(i, frames[:k]))
        resp = stub.Score(req, timeout=60, metadata=(("application", "reward"),))
        if resp.HasField("error") and resp.error.code:
            raise RuntimeError(resp.error.message)
        assert len(resp.rewards) == k
        return resp

    try:
        deadline = time.monotonic() + 120
        while True:  # the proxy learns the new application's route a moment after serve.run returns
            try:
                call(0)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        out = _throughput(call, n, in_flight)
        pid = handle.pid.remote().result()
        out.update(_recovery(lambda i: call(i, 1), lambda: os.kill(int(pid), signal.SIGKILL)))
        return out
    finally:
        channel.close()
        serve.shutdown()


def main(argv: List[str] | None = None) -> int:
    import ray

    from benchmarks.record import add_record_args, record_from_args, val

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=120, help="requests of 32 frames per path")
    p.add_argument("--in-flight", type=int, default=4)
    add_record_args(p)
    args = p.parse_args(argv)
    frames = np.random.default_rng(0).integers(0, 256, (BATCH, FRAME, FRAME, 3), dtype=np.uint8)
    # Serve's gRPC proxy pickles each request to hand it to a replica, by class reference; the generated messages
    # call their module ``reward_pb2`` (protoc's name), which no Serve process can import: a one-line alias module
    # on every Ray process's path makes the classes resolvable (a friction of adopting Serve, noted in the results).
    import tempfile
    from pathlib import Path

    shim = Path(tempfile.mkdtemp(prefix="serve_pb2_")) / "reward_pb2.py"
    shim.write_text("from vlmrl.reward_workers.proto.reward_pb2 import *  # noqa: F401,F403\n")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(shim.parent), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="bench-serve")
    try:
        direct = run_direct(args.requests, args.in_flight, frames)
        print(f"direct streams: {direct}", flush=True)
        served = run_serve(args.requests, args.in_flight, frames)
        print(f"Ray Serve gRPC: {served}", flush=True)
    finally:
        ray.shutdown()
    ratio = served["frames_per_s"] / direct["frames_per_s"]
    print(f"Serve / direct frames/s at batch {BATCH}: {ratio:.2f}")
    values = {
        "direct_frames_per_s_b32": val(direct["frames_per_s"], unit="frames/s"),
        "serve_frames_per_s_b32": val(served["frames_per_s"], unit="frames/s"),
        "serve_over_direct_b32": val(ratio, goal=">= 0.9 to consider adopting", unit="ratio"),
        "direct_p50_ms": val(direct["p50_ms"], unit="ms"), "direct_p99_ms": val(direct["p99_ms"], unit="ms"),
        "serve_p50_ms": val(served["p50_ms"], unit="ms"), "serve_p99_ms": val(served["p99_ms"], unit="ms"),
        "direct_recovery_s": val(direct["recovery_s"], unit="s", note="worker SIGKILLed; next answer after"),
        "direct_failed_during_recovery": val(direct["failed_requests"], goal="== 0", unit="requests"),
        "serve_recovery_s": val(served["recovery_s"], unit="s", note="replica SIGKILLed; next answer after"),
        "serve_failed_during_recovery": val(served["failed_requests"], unit="requests"),
    }
    record_from_args(args, "ray_serve", values, notes=(
        f"synthetic scorer {SYNTH}, {FRAME}x{FRAME} raw frames, batch {BATCH}, {args.in_flight} in flight, "
        f"{args.requests} requests per path, 1 worker / replica of 0.5 CPU, one local Ray; Serve via its gRPC "
        f"proxy (unary Score), direct via RewardClient's ScoreStream"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
