"""The reward worker pool on Ray: start, scale, inspect and stop the reward workers of a job.

:class:`RewardWorkerPool` drives a set of :class:`~vlmrl.reward_workers.worker_actor.RewardWorkerActor`
through the pool's named, detached :class:`~vlmrl.reward_workers.registry.WorkerRegistry`, so any
process attached to the same Ray cluster (``vlmrl workers scale/status``) manages the same pool.
Clients find the workers through :meth:`RewardWorkerPool.registry_view`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional

import ray
from omegaconf import DictConfig, OmegaConf

from vlmrl.reward_workers.registry import RegistryView, get_or_create_registry, get_registry
from vlmrl.reward_workers.worker_actor import remote_worker_class

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0
"""A new worker must be serving (scorer built, server bound, registered) within this long."""


class PoolError(RuntimeError):
    """A pool operation failed (a worker did not start, bad size, no pool to attach to)."""


def ensure_ray(pool_cfg: Any, **init_kwargs: Any) -> None:
    """Connect to Ray if not yet: ``pool.ray_address`` (``auto`` = running cluster) or a new local one."""
    if ray.is_initialized():
        return
    kwargs = dict(namespace=pool_cfg.namespace, include_dashboard=False, log_to_driver=True)
    kwargs.update(init_kwargs)
    ray.init(address=pool_cfg.ray_address, **kwargs)


class RewardWorkerPool:
    """Manages the reward workers of one pool (``cfg.pool``), each scoring with ``cfg.scorer`` behind ``cfg.server``.

    ``detached=True`` makes the workers outlive this process (the ``vlmrl workers`` CLI uses it;
    stop them with :meth:`shutdown` or ``vlmrl workers scale 0``). Ray must be initialised, or
    is started per ``pool.ray_address`` on first use.
    """

    def __init__(self, cfg: Any, detached: bool = False) -> None:
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.structured(cfg)
        self.cfg = cfg
        self.pool_cfg = cfg.pool
        self.detached = detached
        self._registry = None
        self._actor_cls = None
        self._actors: Dict[str, Any] = {}  # handles of the workers this object started (keeps non-detached ones alive)

    # ------------------------------------------------------------------ setup
    @classmethod
    def attach(cls, cfg: Any) -> "RewardWorkerPool":
        """The pool of a running job (its registry must exist); raises RegistryNotFound otherwise."""
        pool = cls(cfg, detached=True)
        ensure_ray(pool.pool_cfg)
        pool._registry = get_registry(pool.pool_cfg.registry_name, pool.pool_cfg.namespace)
        return pool

    @property
    def registry(self) -> Any:
        if self._registry is None:
            ensure_ray(self.pool_cfg)
            self._registry = get_or_create_registry(self.pool_cfg.registry_name, self.pool_cfg.namespace)
        return self._registry

    def registry_view(self) -> RegistryView:
        """What a RewardClient polls (``RewardClient(cfg.client, registry=pool.registry_view())``)."""
        return RegistryView(self.pool_cfg.registry_name, self.pool_cfg.namespace, handle=self.registry)

    # ------------------------------------------------------------------ size
    def workers(self) -> Dict[str, Dict[str, Any]]:
        """``{worker_id: {address, model_version, started_at, ...}}`` of the live registered workers."""
        return ray.get(self.registry.list_workers.remote(), timeout=30)

    def addresses(self) -> Dict[str, str]:
        """``{worker_id: host:port}`` of the live workers."""
        return {wid: w["address"] for wid, w in self.workers().items()}

    def size(self) -> int:
        return len(self.workers())

    def start(self, n: Optional[int] = None) -> Dict[str, str]:
        """Start the pool with ``n`` workers (default ``pool.num_workers``); returns their addresses."""
        n = int(self.pool_cfg.num_workers if n is None else n)
        if n < 1:
            raise PoolError(f"a pool needs at least 1 worker, got {n}")
        return self.scale(n)

    def scale(self, n: int, grace_s: Optional[float] = None) -> Dict[str, str]:
        """Grow or shrink the running pool to ``n`` workers without touching the others.

        Removal (newest first) deregisters a worker first (clients stop choosing it), then drains
        its in-flight requests with a graceful server stop (``grace_s``, default ``server.grace_s``),
        then kills the actor. Returns the addresses after scaling.
        """
        n = int(n)
        if n < 0:
            raise PoolError(f"pool size must be >= 0, got {n}")
        current = self.workers()
        if n > len(current):
            self._add(n - len(current))
        elif n < len(current):
            by_age = sorted(current.values(), key=lambda w: w["started_at"], reverse=True)
            self._remove([w["worker_id"] for w in by_age[: len(current) - n]], grace_s)
        return self.addresses()

    def _add(self, k: int) -> None:
        if self._actor_cls is None:
            self._actor_cls = remote_worker_class(self.pool_cfg)
        ids = ray.get(self.registry.next_worker_ids.remote(k))
        cfg = OmegaConf.to_container(self.cfg, resolve=True)
        opts: Dict[str, Any] = dict(name=f"{self.pool_cfg.registry_name}.{{}}", namespace=self.pool_cfg.namespace)
        actors = []
        for wid in ids:
            o = dict(opts, name=opts["name"].format(wid))
            if self.detached:
                o["lifetime"] = "detached"
            actors.append(self._actor_cls.options(**o).remote(cfg, wid))
        try:
            ray.get([a.get_address.remote() for a in actors], timeout=START_TIMEOUT_S)
        except Exception as e:
            for a in actors:
                ray.kill(a)
            raise PoolError(f"reward worker(s) {ids} failed to start: {e}") from e
        self._actors.update(zip(ids, actors))
        log.info("started reward workers %s", ids)

    def _remove(self, worker_ids: List[str], grace_s: Optional[float]) -> None:
        handles = ray.get(self.registry.handles.remote(), timeout=30)
        stops = []
        for wid in worker_ids:
            h = handles.get(wid)
            if h is not None:
                stops.append((wid, h, h.stop.remote(grace_s)))  # deregisters, then drains
        for wid, h, ref in stops:
            try:
                ray.get(ref, timeout=float(self.cfg.server.grace_s if grace_s is None else grace_s) + 30)
            except Exception as e:  # noqa: BLE001 - a worker that fails to stop cleanly is killed anyway
                log.warning("reward worker %s did not stop cleanly: %s", wid, e)
                ray.get(self.registry.deregister.remote(wid))
            ray.kill(h)
            self._actors.pop(wid, None)
        log.info("removed reward workers %s", worker_ids)

    def update_weights(self, version: str, state: bytes, timeout_s: float = 120.0) -> Dict[str, str]:
        """Hot-swap new weights into every live worker (no restart; requests keep being answered).

        Returns ``{worker_id: version now served}``; raises :class:`PoolError` naming the workers
        that did not take the update (a worker whose scorer has no ``update_weights`` says so).
        """
        handles = ray.get(self.registry.handles.remote(), timeout=30)
        if not handles:
            raise PoolError("no live reward workers to update")
        state_ref = ray.put(bytes(state))
        refs = {wid: h.update_weights.remote(version, state_ref) for wid, h in handles.items()}
        served, failed = {}, {}
        for wid, ref in refs.items():
            try:
                served[wid] = ray.get(ref, timeout=timeout_s)
            except Exception as e:  # noqa: BLE001 - collected and raised below with every failure
                failed[wid] = f"{type(e).__name__}: {e}"
        if failed:
            raise PoolError(f"weight update to version {version!r} failed on worker(s) {failed}")
        return served

    # ------------------------------------------------------------------ inspection
    def status(self, timeout_s: float = 10.0) -> List[Dict[str, Any]]:
        """One dict per live worker: id, address, queue depth, items/s, model version, batches, cache hits, ..."""
        handles = ray.get(self.registry.handles.remote(), timeout=30)
        listed = self.workers()
        refs = {wid: h.info.remote() for wid, h in handles.items() if wid in listed}
        out = []
        for wid, ref in sorted(refs.items(), key=lambda kv: _id_order(kv[0])):
            row = {"worker_id": wid, "address": listed[wid]["address"],
                   "model_version": listed[wid]["model_version"], "started_at": listed[wid]["started_at"]}
            try:
                row.update(ray.get(ref, timeout=timeout_s))
            except Exception as e:  # noqa: BLE001 - show the worker with its error instead of failing status
                row["error"] = f"{type(e).__name__}: {e}"
            out.append(row)
        return out

    def wait_for(self, n: int, timeout_s: float = 30.0) -> Dict[str, str]:
        """Wait until exactly ``n`` workers are listed (e.g. after a worker died); returns the addresses."""
        deadline = time.monotonic() + timeout_s
        while True:
            addrs = self.addresses()
            if len(addrs) == n or time.monotonic() > deadline:
                return addrs
            time.sleep(0.2)

    def shutdown(self) -> None:
        """Stop every worker and the registry."""
        if self._registry is None and not ray.is_initialized():
            return
        try:
            self.scale(0, grace_s=1.0)
        finally:
            ray.kill(self.registry)
            self._registry = None


def _id_order(worker_id: str) -> tuple:
    digits = worker_id.lstrip("w")
    return (0, int(digits)) if digits.isdigit() else (1, worker_id)
