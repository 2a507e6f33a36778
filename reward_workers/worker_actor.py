"""One reward worker as a Ray actor: builds the scorer, hosts its gRPC server, registers the address.

:class:`RewardWorkerActor` runs a :class:`~vlmrl.reward_workers.server.ServerThread` on the
node Ray placed it on (1 GPU per worker on a GPU cluster, per ``pool.num_gpus_per_worker``).
When the server binds ``0.0.0.0`` the advertised address is the node IP, so clients on other
nodes can reach it. It registers with the pool's :class:`~vlmrl.reward_workers.registry.WorkerRegistry`
once serving and deregisters on :meth:`stop` before draining. Method calls run on a small
thread pool so a liveness ping never waits behind a slow ``stop``.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional

import ray

from vlmrl.reward_workers.registry import get_registry

_WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


def info_to_dict(info: Any) -> Dict[str, Any]:
    """The fields of an ``InfoResponse`` that ``vlmrl workers status`` shows."""
    s = info.stats
    return {
        "worker_id": info.worker_id, "scorer": info.scorer, "item_kind": info.item_kind,
        "model_id": info.model_id, "model_version": info.model_version,
        "queue_depth": s.queue_depth, "items_per_s": s.items_per_second, "requests": s.requests,
        "items": s.items, "batches": s.batches, "mean_batch_size": s.mean_batch_size,
        "cache_hits": s.cache_hits, "cache_misses": s.cache_misses, "in_flight_requests": s.in_flight_requests,
        "rejected_requests": s.rejected_requests, "invalid_requests": s.invalid_requests,
        "mean_scorer_ms": s.mean_scorer_ms, "mean_latency_ms": s.mean_latency_ms,
    }


class RewardWorkerActor:
    """A reward worker: scorer + gRPC server on a Ray node, listed in the pool's registry."""

    def __init__(self, cfg: Dict[str, Any], worker_id: str, weights_version: Optional[str] = None,
                 weights_state: Optional[bytes] = None, register: bool = True) -> None:
        from vlmrl.reward_workers.scorers import build_scorer
        from vlmrl.reward_workers.server import ServerThread
        from vlmrl.reward_workers.config import reward_service_config

        self.cfg = reward_service_config(cfg)
        self.worker_id = worker_id
        if float(self.cfg.pool.num_gpus_per_worker) == 0:
            import torch

            torch.set_num_threads(max(1, int(self.cfg.pool.num_cpus_per_worker)))
        self.scorer = build_scorer(self.cfg.scorer.name, self.cfg.scorer.params)
        self.server = ServerThread(self.cfg.server, self.scorer, worker_id)
        bound = self.server.start()
        if weights_version is not None:  # a replacement or late starter: the pool's current (hot-swapped) weights
            self.server.update_weights(weights_version, weights_state)
        port = bound.rsplit(":", 1)[1]
        host = str(self.cfg.server.host)
        if host in _WILDCARD_HOSTS:
            host = ray.util.get_node_ip_address()
        self.address = f"{host}:{port}"
        self.started_at = time.time()
        self.registry = get_registry(self.cfg.pool.registry_name, self.cfg.pool.namespace)
        if register:  # a warm spare registers later, when the supervisor promotes it
            self.register()

    def register(self) -> str:
        """List this worker in the pool's registry (clients start sending to it); returns its address."""
        ray.get(self.registry.register.remote(
            self.worker_id, self.address, self.model_version(), ray.get_runtime_context().current_actor,
            {"scorer": self.scorer.name, "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
             "node_id": ray.get_runtime_context().get_node_id()}), timeout=30)
        return self.address

    def ping(self) -> str:
        return "ok"

    def get_address(self) -> str:
        return self.address

    def model_version(self) -> str:
        return str(self.scorer.model_version)

    def info(self) -> Dict[str, Any]:
        d = info_to_dict(self.server.info())
        d["address"] = self.address
        return d

    def update_weights(self, version: str, state: bytes) -> str:
        """Hot-swap the scorer's weights without restarting (see ``RewardServer.update_weights``); returns the
        version now served and records it in the registry."""
        served = self.server.update_weights(version, state)
        ray.get(self.registry.set_model_version.remote(self.worker_id, served), timeout=30)
        return served

    def stop(self, grace_s: float | None = None) -> bool:
        """Deregister (clients stop sending new requests), then drain in-flight requests and stop."""
        try:
            ray.get(self.registry.deregister.remote(self.worker_id), timeout=10)
        finally:
            self.server.stop(grace_s)
        return True


def worker_options(pool_cfg: Any) -> Dict[str, Any]:
    """Ray actor options placing one worker: CPUs/GPUs, ``pool.resources``, ``pool.label_selector``, SPREAD."""
    opts: Dict[str, Any] = dict(num_cpus=float(pool_cfg.num_cpus_per_worker),
                                num_gpus=float(pool_cfg.num_gpus_per_worker))
    resources = {str(k): float(v) for k, v in (pool_cfg.get("resources") or {}).items()}
    if resources:
        opts["resources"] = resources
    labels = {str(k): str(v) for k, v in (pool_cfg.get("label_selector") or {}).items()}
    if labels:
        opts["label_selector"] = labels
    if pool_cfg.get("spread", True):
        opts["scheduling_strategy"] = "SPREAD"
    return opts


def remote_worker_class(pool_cfg: Any):
    """``RewardWorkerActor`` as a Ray actor class with the pool's resources and placement (:func:`worker_options`).

    ``max_restarts=0`` on purpose: a Ray restart re-runs ``__init__`` with the weights of the first start (not the
    hot-swapped ones) and leaves the actor neither dead nor alive to the registry meanwhile; the pool's supervisor
    starts a fresh worker with the current weights instead (see ``reward_workers/supervisor.py``).
    """
    return ray.remote(max_concurrency=4, max_restarts=0, **worker_options(pool_cfg))(RewardWorkerActor)
