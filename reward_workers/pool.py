"""The reward worker pool on Ray: start, scale, inspect and stop the reward workers of a job.

:class:`RewardWorkerPool` is the handle of one pool: its named
:class:`~vlmrl.reward_workers.supervisor.PoolSupervisor` (keeps the target size, replaces dead workers,
autoscales) and its named, detached :class:`~vlmrl.reward_workers.registry.WorkerRegistry` (where clients
find the workers), so any process attached to the same Ray cluster (``vlmrl workers scale/status``)
manages the same pool.
Clients find the workers through :meth:`RewardWorkerPool.registry_view`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import ray
from omegaconf import DictConfig, OmegaConf

from vlmrl.reward_workers.ray_attach import prepare_ray_auth
from vlmrl.reward_workers.registry import RegistryNotFound, RegistryView, get_or_create_registry, get_registry
from vlmrl.reward_workers.supervisor import get_or_create_supervisor, get_supervisor, supervisor_name

log = logging.getLogger(__name__)

RAY_START_ATTEMPTS = 3
RAY_START_TIMEOUT = "timed out during startup"
"""Ray gives a new local node's raylet a fixed 30 s to register; on a loaded machine that start is retried."""

WATCHDOG_INTERVAL_S = 2.0
"""How often the pool's owner checks that its supervisor is alive (0 = never)."""


class PoolError(RuntimeError):
    """A pool operation failed (a worker did not start, bad size, no pool to attach to)."""


def ensure_ray(pool_cfg: Any, **init_kwargs: Any) -> None:
    """Connect to Ray if not yet: ``pool.ray_address`` (``auto`` = running cluster) or a new local one."""
    if ray.is_initialized():
        return
    kwargs = dict(namespace=pool_cfg.namespace, include_dashboard=False, log_to_driver=True)
    kwargs.update(init_kwargs)
    prepare_ray_auth(pool_cfg.ray_address)  # host:port: find the auth token like Ray's CLI, fail fast otherwise
    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        try:
            ray.init(address=pool_cfg.ray_address, **kwargs)
            return
        except Exception as e:  # noqa: BLE001 - only Ray's own start-up timeout is retried
            if RAY_START_TIMEOUT not in str(e) or attempt == RAY_START_ATTEMPTS:
                raise
            ray.shutdown()
            _stop_partial_ray_start()
            print(f"Ray's local node did not register within Ray's 30 s (a loaded machine?); starting it again "
                  f"(attempt {attempt + 1} of {RAY_START_ATTEMPTS})", file=sys.stderr, flush=True)


def _stop_partial_ray_start() -> None:
    """Stop what a timed-out local Ray start left running (its GCS, raylet and helper processes, children of
    this process), so a retry does not leave them competing for the same loaded CPUs."""
    import os

    import psutil

    ray_dir = os.path.dirname(ray.__file__)
    procs = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any(ray_dir in part for part in child.cmdline()):
                procs.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for child in procs:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


class RewardWorkerPool:
    """Manages the reward workers of one pool (``cfg.pool``), each scoring with ``cfg.scorer`` behind ``cfg.server``.

    The workers belong to the pool's :class:`~vlmrl.reward_workers.supervisor.PoolSupervisor` actor, which keeps
    the pool at its target size (dead workers are replaced with the current weights), places workers per
    ``pool.resources`` / ``pool.label_selector`` (spread across nodes) and autoscales per ``pool.autoscale``.
    ``detached=True`` makes the supervisor and workers outlive this process (the ``vlmrl workers`` CLI uses it;
    stop them with :meth:`shutdown`). Ray must be initialised, or is started per ``pool.ray_address`` on first use.
    """

    def __init__(self, cfg: Any, detached: bool = False) -> None:
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.structured(cfg)
        self.cfg = cfg
        self.pool_cfg = cfg.pool
        self.detached = detached
        self._registry = None
        self._supervisor = None
        self._target: Optional[int] = None  # the size this object asked for (the watchdog restores it)
        self._last_weights: Optional[tuple] = None  # (version, state) of the last hot swap, for a revived supervisor
        self._watchdog: Optional[threading.Thread] = None
        self._closing = threading.Event()
        self.revivals = 0

    # ------------------------------------------------------------------ setup
    @classmethod
    def attach(cls, cfg: Any) -> "RewardWorkerPool":
        """The pool of a running job (its registry must exist); raises RegistryNotFound otherwise."""
        pool = cls(cfg, detached=True)
        ensure_ray(pool.pool_cfg)
        pool._registry = get_registry(pool.pool_cfg.registry_name, pool.pool_cfg.namespace)
        pool._supervisor = get_supervisor(pool.pool_cfg)
        if pool._supervisor is None:
            raise RegistryNotFound(f"reward worker pool {pool.pool_cfg.registry_name!r} has a registry but no "
                                   f"supervisor actor {supervisor_name(pool.pool_cfg)!r} (started by an older vlmrl?)")
        return pool

    @property
    def registry(self) -> Any:
        if self._registry is None:
            ensure_ray(self.pool_cfg)
            self._registry = get_or_create_registry(self.pool_cfg.registry_name, self.pool_cfg.namespace)
        return self._registry

    @property
    def supervisor(self) -> Any:
        if self._supervisor is None:
            _ = self.registry  # the supervisor's workers register there
            self._supervisor = get_or_create_supervisor(
                OmegaConf.to_container(self.cfg, resolve=True), self.pool_cfg, self.detached)
        return self._supervisor

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
        """Set the pool's target size to ``n`` and wait until exactly ``n`` workers serve (new ones registered).

        A size the cluster can never hold fails at once (:class:`PoolError` listing the nodes' resources).
        Removal (newest first) deregisters a worker first (clients stop choosing it), then drains its
        in-flight requests with a graceful server stop (``grace_s``, default ``server.grace_s``), then kills
        the actor. Returns the addresses after scaling. With autoscaling on, ``n`` is the new starting point.
        """
        n = int(n)
        if n < 0:
            raise PoolError(f"pool size must be >= 0, got {n}")
        out = ray.get(self.supervisor.scale.remote(n, grace_s))
        if not out["ok"]:
            raise PoolError(out["error"])
        self._target = n
        self._start_watchdog()
        return self.addresses()

    def _start_watchdog(self) -> None:
        """The pool's owner watches its supervisor: the supervisor (a 0-CPU actor near the owner) can still die,
        e.g. when its node is lost, and its workers die with it (Ray fate-sharing). The watchdog then starts a new
        supervisor with the same target and the last hot-swapped weights; clients wait meanwhile
        (``client.no_worker_wait_s``)."""
        if self._watchdog is not None or WATCHDOG_INTERVAL_S <= 0:
            return
        self._watchdog = threading.Thread(target=self._watch, name="reward-pool-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        while not self._closing.wait(WATCHDOG_INTERVAL_S):
            sup = self._supervisor
            if sup is None or not ray.is_initialized():
                continue
            try:
                ray.get(sup.ping.remote(), timeout=30)
                continue
            except ray.exceptions.GetTimeoutError:
                continue  # busy, not dead
            except Exception as e:  # noqa: BLE001 - RayActorError & co.: the supervisor is gone
                if self._closing.is_set():
                    return
                log.error("reward pool supervisor died (%s); starting a new one with target %s", e, self._target)
            try:
                self._supervisor = None
                try:
                    ray.get(self.registry.ping.remote(), timeout=30)
                except ray.exceptions.RayActorError:
                    self._registry = None  # lost with the same node: re-created by name
                sup = self.supervisor
                if self._last_weights is not None:
                    ray.get(sup.update_weights.remote(*self._last_weights, 120.0), timeout=180)
                ray.get(sup.set_target.remote(int(self._target or 0)), timeout=60)
                self.revivals += 1
            except Exception as e:  # noqa: BLE001 - tried again next round
                log.error("reviving the reward pool supervisor failed: %s", e)

    def health(self, timeout_s: float = 10.0) -> Dict[str, Any]:
        """The supervisor's view: target, live/starting counts, lost/replaced/scale-event counters, last error,
        recent events (see ``PoolSupervisor.state``)."""
        return ray.get(self.supervisor.state.remote(), timeout=timeout_s)

    def update_weights(self, version: str, state: bytes, timeout_s: float = 120.0) -> Dict[str, str]:
        """Hot-swap new weights into every live worker (no restart; requests keep being answered); workers
        started later (replacements, scale-ups) start with them.

        Returns ``{worker_id: version now served}``; raises :class:`PoolError` naming the workers
        that did not take the update (a worker whose scorer has no ``update_weights`` says so).
        """
        self._last_weights = (str(version), bytes(state))
        out = ray.get(self.supervisor.update_weights.remote(version, bytes(state), timeout_s))
        if out["failed"]:
            raise PoolError(f"weight update to version {version!r} failed on worker(s) {out['failed']}")
        return out["served"]

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
        """Stop every worker, the supervisor and the registry."""
        self._closing.set()
        if self._registry is None and not ray.is_initialized():
            return
        try:
            ray.get(self.supervisor.shutdown.remote(1.0), timeout=120)
        finally:
            ray.kill(self.supervisor)
            self._supervisor = None
            ray.kill(self.registry)
            self._registry = None


def _id_order(worker_id: str) -> tuple:
    digits = worker_id.lstrip("w")
    return (0, int(digits)) if digits.isdigit() else (1, worker_id)
