"""The worker registry: where clients find the reward workers of a running pool.

:class:`WorkerRegistry` is a named, detached Ray actor (``pool.registry_name`` in namespace
``pool.namespace``) holding ``{worker_id: {address, model_version, started_at, ...}}``. Workers
register when their gRPC server is up and deregister before they stop; workers whose actor died
(``ray.kill``, node loss) are dropped the next time the list is read, found by a cheap ping.
:class:`RegistryView` is the client-side handle the :class:`~vlmrl.reward_workers.client.RewardClient`
polls for addresses.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List, Optional

import ray

PING_TIMEOUT_S = 2.0
"""A worker that does not answer a ping this fast is kept (busy); one whose actor died is dropped."""
PRUNE_INTERVAL_S = 0.5
"""Liveness pings run at most this often, however often the list is read."""


class RegistryNotFound(RuntimeError):
    """No registry actor of that name runs in that namespace (no pool started there)."""


@ray.remote(num_cpus=0, max_restarts=0)
class WorkerRegistry:
    """Named detached actor listing the live reward workers of one pool (async actor)."""

    def __init__(self) -> None:
        self._workers: Dict[str, Dict[str, Any]] = {}
        self._handles: Dict[str, Any] = {}
        self._next_id = 0
        self._last_prune = 0.0

    async def ping(self) -> str:
        return "ok"

    async def next_worker_ids(self, n: int) -> List[str]:
        """``n`` fresh worker ids (``w0``, ``w1``, ...), unique for the registry's lifetime."""
        ids = [f"w{self._next_id + i}" for i in range(n)]
        self._next_id += n
        return ids

    async def register(self, worker_id: str, address: str, model_version: str, handle: Any,
                       extra: Optional[Dict[str, Any]] = None) -> None:
        self._workers[worker_id] = {"worker_id": worker_id, "address": address, "model_version": model_version,
                                    "started_at": time.time(), **(extra or {})}
        self._handles[worker_id] = handle

    async def set_model_version(self, worker_id: str, model_version: str) -> bool:
        """Record a worker's new model version after a weight hot swap; True if it is listed."""
        if worker_id not in self._workers:
            return False
        self._workers[worker_id]["model_version"] = model_version
        return True

    async def deregister(self, worker_id: str) -> bool:
        """Remove a worker from the list (clients stop sending to it); True if it was listed."""
        self._handles.pop(worker_id, None)
        return self._workers.pop(worker_id, None) is not None

    async def _prune(self) -> None:
        if time.monotonic() - self._last_prune < PRUNE_INTERVAL_S:
            return
        self._last_prune = time.monotonic()
        ids = list(self._handles)

        async def alive(wid: str) -> bool:
            try:
                await asyncio.wait_for(self._handles[wid].ping.remote(), PING_TIMEOUT_S)
                return True
            except asyncio.TimeoutError:
                return True  # slow, not dead
            except Exception:  # noqa: BLE001 - RayActorError & co.: the actor is gone
                return False

        results = await asyncio.gather(*(alive(w) for w in ids))
        for wid, ok in zip(ids, results):
            if not ok:
                self._workers.pop(wid, None)
                self._handles.pop(wid, None)

    async def list_workers(self) -> Dict[str, Dict[str, Any]]:
        """``{worker_id: {address, model_version, started_at, ...}}`` of the live workers."""
        await self._prune()
        return {wid: dict(w) for wid, w in self._workers.items()}

    async def handles(self) -> Dict[str, Any]:
        """``{worker_id: actor handle}`` of the live workers (for the pool's scale/status)."""
        await self._prune()
        return dict(self._handles)


def get_registry(name: str, namespace: str) -> Any:
    """The handle of a running registry; :class:`RegistryNotFound` if there is none."""
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError as e:
        raise RegistryNotFound(
            f"no reward worker registry {name!r} in Ray namespace {namespace!r}: start a pool first "
            f"(`vlmrl workers start`)") from e


def near_the_caller() -> Any:
    """Scheduling for the pool's own small actors (registry, supervisor): on the caller's node (the job's driver,
    usually the head), so losing a reward node never takes the actors that rebuild the pool with it. Hard affinity:
    with ``soft=True`` Ray placed the supervisor on a reward node of a 2-node cluster (tests/reward_workers/
    test_pool_cluster.py), and removing that node took the pool's healer with it. The actors need no CPU, so the
    caller's live node can always host them."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def get_or_create_registry(name: str, namespace: str) -> Any:
    return WorkerRegistry.options(name=name, namespace=namespace, lifetime="detached", get_if_exists=True,
                                  scheduling_strategy=near_the_caller()).remote()


class RegistryView:
    """What a :class:`RewardClient` polls: ``workers() -> {worker_id: address}`` from the registry actor."""

    def __init__(self, name: str, namespace: str, timeout_s: float = 5.0, handle: Any = None) -> None:
        self._name, self._namespace, self._timeout = name, namespace, timeout_s
        self._handle = handle
        self._job = ray.get_runtime_context().get_job_id() if handle is not None and ray.is_initialized() else None

    @classmethod
    def from_pool_config(cls, pool_cfg: Any) -> "RegistryView":
        return cls(pool_cfg.registry_name, pool_cfg.namespace)

    def workers(self) -> Dict[str, str]:
        # Never auto-start Ray from a client's polling thread, and never use a handle from an earlier
        # Ray session in this process (a client that outlived its cluster): both fail fast instead.
        if not ray.is_initialized():
            raise RegistryNotFound(f"Ray is not running in this process: registry {self._name!r} is unreachable")
        job = ray.get_runtime_context().get_job_id()
        if self._handle is not None and self._job not in (None, job):
            raise RegistryNotFound(f"registry {self._name!r} belongs to an earlier Ray session of this process")
        if self._handle is None:
            self._handle, self._job = get_registry(self._name, self._namespace), job
        try:
            listed = ray.get(self._handle.list_workers.remote(), timeout=self._timeout)
        except ray.exceptions.RayActorError:
            self._handle = None  # the registry died (its node was lost): look it up by name again next time
            raise
        return {wid: w["address"] for wid, w in listed.items()}
