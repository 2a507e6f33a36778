"""The reward worker pool on Ray (one local Ray per module): a worker SIGKILLed while a client streams through
registry discovery is replaced (with hot-swapped weights), scaling 1 -> 2 -> 1 under load, infeasible sizes
fail fast, status() contents. Multi-node placement and autoscaling: test_pool_cluster.py."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time

import numpy as np
import pytest
import ray

from vlmrl.reward_workers.client import RewardClient
from vlmrl.reward_workers.pool import PoolError, RewardWorkerPool
from vlmrl.reward_workers.registry import RegistryNotFound, RegistryView
from vlmrl.reward_workers.scorers.synthetic import SyntheticScorer
from vlmrl.system.config import load_config

TASK = "lift the cube"


def pool_config(name: str):
    return load_config(None, [
        "scorer.name=synthetic", "scorer.params.fixed_ms=10", "scorer.params.per_item_ms=0.2",
        "server.max_wait_ms=2", "server.grace_s=2",
        "pool.num_cpus_per_worker=0.5", f"pool.registry_name={name}", "pool.namespace=vlmrl-test",
        "client.discovery_interval_s=0.2", "client.max_items_per_request=4", "client.max_in_flight=4",
        "client.deadline_s=10", "client.retry_backoff_s=0.05",
    ])


def wait_until(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 10, 10, 3), dtype=np.uint8)


def expected(f: np.ndarray) -> list[float]:
    return [SyntheticScorer.expected_reward(x[None]) for x in f]


class Streamer:
    """Submits up to ``n`` requests of ``k`` items at a steady pace in a thread (until :meth:`stop`);
    records each answer per request id."""

    def __init__(self, client: RewardClient, n: int, k: int, pace_s: float) -> None:
        self.client, self.n, self.k, self.pace = client, n, k, pace_s
        self.data = frames(min(n, 2000) * k, seed=7)
        self.futures: dict[str, tuple[int, object]] = {}
        self.answers: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def items(self, i: int) -> np.ndarray:
        j = i % (len(self.data) // self.k)
        return self.data[j * self.k:(j + 1) * self.k]

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        for i in range(self.n):
            if self._stop.is_set():
                self.n = i
                break
            rid = f"r{i}"
            fut = self.client.submit(TASK, self.items(i), request_id=rid)
            fut.add_done_callback(lambda _f, rid=rid: self._count(rid))
            self.futures[rid] = (i, fut)
            time.sleep(self.pace)

    def _count(self, rid: str) -> None:
        with self._lock:
            self.answers[rid] = self.answers.get(rid, 0) + 1

    def done_count(self) -> int:
        return sum(f.done() for _, f in list(self.futures.values()))

    def check(self) -> set[str]:
        """Every request answered exactly once with the right rewards; returns the worker ids that answered."""
        self.thread.join(60)
        workers = set()
        for rid, (i, fut) in self.futures.items():
            try:
                res = fut.result(timeout=60)
            except concurrent.futures.TimeoutError:
                pending = [r for r, (_, f) in self.futures.items() if not f.done()]
                raise AssertionError(f"{len(pending)} requests unanswered after 60 s ({pending[:8]}); "
                                     f"client stats: {self.client.stats()}") from None
            np.testing.assert_allclose([r.reward for r in res], expected(self.items(i)),
                                       rtol=1e-5)
            workers |= {r.worker_id for r in res}
        assert len(self.futures) == self.n
        assert self.answers == {f"r{i}": 1 for i in range(self.n)}
        return workers


def test_sigkilled_worker_is_replaced_and_no_item_is_lost(ray_local):
    """SIGKILL a worker's process mid-stream: its requests are resent (none lost), the supervisor starts a
    replacement (w2) that registers and takes traffic without any client restart."""
    cfg = pool_config("reg-kill")
    pool = RewardWorkerPool(cfg)
    try:
        addrs = pool.start(2)
        assert len(addrs) == 2 and len(set(addrs.values())) == 2
        with RewardClient(cfg.client, registry=pool.registry_view()) as client:
            assert sorted(client.workers()) == sorted(addrs.values())
            s = Streamer(client, n=100_000, k=5, pace_s=0.01)
            s.thread.start()
            wait_until(lambda: s.done_count() >= 15)
            os.kill(pool.workers()["w0"]["pid"], signal.SIGKILL)
            t_kill = time.monotonic()
            wait_until(lambda: set(pool.addresses()) == {"w1", "w2"}, timeout=60)
            healed_s = time.monotonic() - t_kill
            answered_before = s.done_count()
            wait_until(lambda: s.done_count() >= answered_before + 30)
            time.sleep(0.5)
            s.stop()
            workers = s.check()
            stats = client.stats()
        assert workers == {"w0", "w1", "w2"}  # the replacement served without a client restart
        assert stats["failures"] == 0 and stats["items"] == 5 * s.n
        health = pool.health()
        assert health["target"] == 2 and health["live"] == 2
        assert health["counters"]["lost"] == 1 and health["counters"]["replaced"] == 1
        assert [e["event"] for e in health["events"]][-2:] == ["lost", "replaced"]
        print(f"replacement serving {healed_s:.1f}s after the kill")  # timed in benchmarks/pool_healing.py
    finally:
        pool.shutdown()


def test_a_warm_spare_takes_a_lost_workers_place_at_once(ray_local):
    """pool.spares=1: a ready, unregistered worker waits; when a worker dies it is registered in its place (no
    start-up on the critical path) and a new spare starts behind it. Spares get no traffic before that."""
    cfg = pool_config("reg-spare")
    cfg.pool.spares = 1
    pool = RewardWorkerPool(cfg)
    try:
        pool.start(1)
        wait_until(lambda: pool.health()["spares"] == 1, timeout=60)
        assert list(pool.workers()) == ["w0"]  # the spare (w1) is not listed: clients cannot send to it
        os.kill(pool.workers()["w0"]["pid"], signal.SIGKILL)
        t0 = time.monotonic()
        wait_until(lambda: list(pool.workers()) == ["w1"], timeout=30)
        promoted_s = time.monotonic() - t0
        with RewardClient(cfg.client, registry=pool.registry_view()) as client:
            res = client.score(TASK, frames(3), timeout=30)
        assert {r.worker_id for r in res} == {"w1"}
        wait_until(lambda: pool.health()["spares"] == 1, timeout=60)  # w2 is the new spare
        h = pool.health()
        assert h["counters"]["replaced"] == 1 and "warm spare promoted" in [
            e for e in h["events"] if e["event"] == "replaced"][0]["detail"]
        assert list(pool.workers()) == ["w1"]
        print(f"spare promoted {promoted_s:.1f}s after the kill")  # timed in benchmarks/pool_healing.py
    finally:
        pool.shutdown()


def test_a_replacement_serves_the_hot_swapped_weights(ray_local):
    """The hot-swapped weights reach the warm spare too; the spare promoted after a SIGKILL serves them."""
    from vlmrl.reward_workers.models.bt_reward_model import BtModelParams, BtRewardModel, state_to_bytes

    params = {"image_size": 16, "channels": [4], "embed_dim": 4, "hidden": 8, "ensemble_size": 1, "seed": 0}
    cfg = load_config(None, [
        "scorer.name=bt_reward", f"scorer.params={params}".replace("'", ""), "server.grace_s=1",
        "pool.num_cpus_per_worker=0.5", "pool.registry_name=reg-weights", "pool.namespace=vlmrl-test", "pool.spares=1",
        "client.discovery_interval_s=0.2", "client.retry_backoff_s=0.05"])
    pool = RewardWorkerPool(cfg)
    try:
        pool.start(1)
        wait_until(lambda: pool.health()["spares"] == 1, timeout=60)  # w1 waits, unregistered
        new = BtRewardModel(BtModelParams(**{**params, "seed": 7}))
        assert pool.update_weights("v7", state_to_bytes(new)) == {"w0": "v7"}
        os.kill(pool.workers()["w0"]["pid"], signal.SIGKILL)
        wait_until(lambda: list(pool.workers()) == ["w1"], timeout=60)
        assert pool.workers()["w1"]["model_version"] == "v7"
        data = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
        with RewardClient(cfg.client, registry=pool.registry_view()) as client:
            res = client.score(TASK, data, timeout=60)
        assert {r.model_version for r in res} == {"v7"} and {r.worker_id for r in res} == {"w1"}
        assert pool.health()["weights_version"] == "v7"
        # w2, the spare started after the swap, got the weights at construction: promoted, it serves v7 too
        wait_until(lambda: pool.health()["spares"] == 1, timeout=60)
        os.kill(pool.workers()["w1"]["pid"], signal.SIGKILL)
        wait_until(lambda: list(pool.workers()) == ["w2"], timeout=60)
        assert pool.workers()["w2"]["model_version"] == "v7"
    finally:
        pool.shutdown()


def test_a_size_the_cluster_can_never_hold_fails_fast_listing_its_resources(ray_local):
    cfg = pool_config("reg-infeasible")
    pool = RewardWorkerPool(cfg)
    try:
        pool.start(1)
        t0 = time.monotonic()
        with pytest.raises(PoolError, match=r"can never be placed.*at most 4.*CPU: 2"):
            pool.scale(5)  # 0.5 CPU each on a 2-CPU Ray
        assert time.monotonic() - t0 < 5
        assert pool.size() == 1 and pool.health()["target"] == 1
        other = RewardWorkerPool(load_config(None, [
            "scorer.name=synthetic", "pool.registry_name=reg-infeasible-2", "pool.namespace=vlmrl-test",
            "pool.resources={reward_node: 1}"]))
        with pytest.raises(PoolError, match=r"'reward_node': 1\.0.*at most 0"):
            other.start(1)
        other.shutdown()
    finally:
        pool.shutdown()


def test_the_supervisor_checks_once_per_interval_when_nothing_happens(ray_local):
    cfg = pool_config("reg-idle")
    pool = RewardWorkerPool(cfg)
    try:
        pool.start(2)
        before = pool.health()["supervise_passes"]
        time.sleep(3.0)
        passes = pool.health()["supervise_passes"] - before
        interval = float(cfg.pool.supervise_interval_s)
        # each pass pings every worker: back-to-back passes would cost a core's share on an idle pool
        assert 1 <= passes <= 3.0 / interval + 2, passes
    finally:
        pool.shutdown()


def test_scale_up_and_down_while_streaming_and_status(ray_local):
    cfg = pool_config("reg-scale")
    pool = RewardWorkerPool(cfg)
    try:
        pool.start(1)
        with RewardClient(cfg.client, registry=pool.registry_view()) as client:
            s = Streamer(client, n=100_000, k=4, pace_s=0.02)
            s.thread.start()
            wait_until(lambda: s.done_count() >= 10)
            assert len(pool.scale(2)) == 2
            rows = pool.status()
            time.sleep(0.6)  # the client discovers w1 and sends it work
            remaining = pool.scale(1)  # removes the newest (w1): deregister, drain, kill
            assert list(remaining) == ["w0"]
            time.sleep(0.3)  # still streaming to the one worker left
            s.stop()
            workers = s.check()
            stats = client.stats()
        assert workers == {"w0", "w1"}
        assert stats["failures"] == 0 and stats["items"] == 4 * s.n and s.n > 50
        assert [r["worker_id"] for r in rows] == ["w0", "w1"]
        for r in rows:
            assert r["model_version"] == "synthetic-1" and r["scorer"] == "synthetic" and "error" not in r
            assert {"address", "queue_depth", "items_per_s", "batches", "cache_hits"} <= set(r)
        assert rows[0]["batches"] > 0 and rows[0]["items"] > 0 and rows[0]["items_per_s"] > 0
        # Attach from "another process": the named registry is all it needs.
        attached = RewardWorkerPool.attach(cfg)
        final = attached.status()
        assert [r["worker_id"] for r in final] == ["w0"] and final[0]["items"] >= rows[0]["items"]
        assert RegistryView.from_pool_config(cfg.pool).workers() == {"w0": remaining["w0"]}
    finally:
        pool.shutdown()
    with pytest.raises(RegistryNotFound, match="reg-scale"):
        RewardWorkerPool.attach(cfg)
