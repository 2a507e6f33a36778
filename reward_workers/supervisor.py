"""The pool's supervisor: keeps the reward worker pool at its target size, placed and sized by load.

:class:`PoolSupervisor` is one async Ray actor per pool (named ``<pool.registry_name>-supervisor`` in
``pool.namespace``; detached with a detached pool), started by :class:`~vlmrl.reward_workers.pool.RewardWorkerPool`.
It owns the worker actors and runs one loop every ``pool.supervise_interval_s``:

1. **liveness**: each live worker is pinged; a worker whose actor died (crash, OOM kill, SIGKILL, its node
   removed) or that missed ``UNRESPONSIVE_PINGS`` pings in a row is deregistered (clients stop choosing it)
   and counted as lost;
2. **autoscaling** (``pool.autoscale.enabled``): the workers' Info statistics go to
   :class:`~vlmrl.reward_workers.autoscale.AutoscalePolicy`, which may move the target within its bounds;
3. **reconcile**: fewer workers than the target -> a warm spare is promoted (``pool.spares``: workers started
   and ready but not registered; promotion = registering, milliseconds) or new ones are started (``pool.heal``),
   carrying the current weights and version (:meth:`update_weights` keeps them and pushes them to spares too,
   so a replacement after a hot swap serves the new model); more -> the newest are drained and stopped; then
   the spares are topped up.

Why a supervisor loop and not Ray's ``max_restarts``: a restarted actor re-runs ``__init__`` with the
arguments of its first start (the weights before any hot swap), is invisible to the registry while
restarting, and gives no hook for sizing or for placing a replacement by ``pool.resources``; the pool
needs a control loop for autoscaling anyway. Ray still does the placement (custom resources, label
selector, SPREAD) and the death detection (an actor's death fails its pending calls at once; a node's
removal after Ray's node health check). Before starting workers the supervisor refuses a size the cluster
can never hold (:mod:`~vlmrl.reward_workers.placement`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Dict, Optional

import ray

from vlmrl.reward_workers.placement import infeasible_reason
from vlmrl.reward_workers.registry import get_or_create_registry, near_the_caller
from vlmrl.reward_workers.worker_actor import remote_worker_class

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 2.0
UNRESPONSIVE_PINGS = 5
"""A worker that misses this many pings in a row (``PING_TIMEOUT_S`` each) is killed and replaced."""
MAX_START_BACKOFF_S = 30.0
EVENT_LOG = 200


def supervisor_name(pool_cfg: Any) -> str:
    return f"{pool_cfg.registry_name}-supervisor"


class _Worker:
    __slots__ = ("worker_id", "handle", "started_at", "missed_pings", "address", "node_ip", "spare")

    def __init__(self, worker_id: str, handle: Any, spare: bool = False) -> None:
        self.spare = spare
        self.worker_id = worker_id
        self.handle = handle
        self.started_at = time.monotonic()
        self.missed_pings = 0
        self.address = ""
        self.node_ip = ""


@ray.remote(num_cpus=0, max_restarts=0)
class PoolSupervisor:
    """Keeps one reward worker pool at its target size (see module doc). Async actor; every method is cheap
    except :meth:`scale` and :meth:`update_weights`, which wait for the workers."""

    def __init__(self, cfg: Dict[str, Any], detached: bool) -> None:
        from vlmrl.reward_workers.config import reward_service_config

        self.cfg_dict = cfg
        self.cfg = reward_service_config(cfg)
        self.pool_cfg = self.cfg.pool
        self.detached = bool(detached)
        self.registry = get_or_create_registry(self.pool_cfg.registry_name, self.pool_cfg.namespace)
        self.actor_cls = remote_worker_class(self.pool_cfg)
        self.target = 0
        self.live: Dict[str, _Worker] = {}
        self.starting: Dict[str, _Worker] = {}
        self.spares: Dict[str, _Worker] = {}  # warm standbys (pool.spares): ready, not registered
        self.spares_starting: Dict[str, _Worker] = {}
        self.stopping: Dict[str, asyncio.Task] = {}
        self.weights: Optional[tuple] = None  # (version, ObjectRef of the state bytes)
        self.counters: collections.Counter = collections.Counter()
        self.events: collections.deque = collections.deque(maxlen=EVENT_LOG)
        self.last_error = ""
        self._start_fails = 0
        self._next_start_at = 0.0
        self._loop_task: Optional[asyncio.Task] = None
        self._wake: Optional[asyncio.Event] = None
        self._closed = False
        self.passes = 0  # loop passes: one per supervise_interval_s unless a loss or a call wakes it early
        self.autoscaler = None
        if self.pool_cfg.autoscale.enabled:
            from vlmrl.reward_workers.autoscale import AutoscalePolicy

            self.autoscaler = AutoscalePolicy(self.pool_cfg.autoscale)
        self._last_autoscale_read = 0.0
        self._grace: Optional[float] = None  # drain time of workers removed by the last scale() call

    # ------------------------------------------------------------------ public
    async def scale(self, n: int, grace_s: Optional[float] = None, timeout_s: Optional[float] = None) -> Dict[str, Any]:
        """Set the target to ``n`` and wait until exactly ``n`` workers serve. Returns ``{"ok", "error",
        "workers"}``; a size the cluster can never hold is refused at once (target unchanged); a worker that
        fails to start ends the wait with its error and the target falls back to the workers serving."""
        self._ensure_loop()
        n = int(n)
        if n < 0:
            return {"ok": False, "error": f"pool size must be >= 0, got {n}", "workers": self._addresses()}
        why = infeasible_reason(n, self.pool_cfg)
        if why:
            return {"ok": False, "error": why, "workers": self._addresses()}
        self.target = n
        self._grace = grace_s
        self._start_fails = 0
        self._next_start_at = 0.0
        fails_before = self.counters["start_failures"]
        self._wake.set()
        deadline = time.monotonic() + float(timeout_s if timeout_s is not None else self._wait_bound(grace_s))
        while True:
            if len(self.live) == n and not self.starting and not self.stopping:
                return {"ok": True, "error": "", "workers": self._addresses()}
            if self.counters["start_failures"] > fails_before:
                self.target = len(self.live) + len(self.starting)
                return {"ok": False, "error": self.last_error, "workers": self._addresses()}
            if time.monotonic() > deadline:
                return {"ok": False, "error": f"pool not at {n} workers within {timeout_s}s "
                                              f"({self._summary()}); last error: {self.last_error or '-'}",
                        "workers": self._addresses()}
            await asyncio.sleep(0.05)

    async def set_target(self, n: int) -> str:
        """Set the target without waiting; returns the reason it was refused, or ''."""
        self._ensure_loop()
        why = infeasible_reason(int(n), self.pool_cfg) if int(n) > self.target else None
        if int(n) < 0 or why:
            return why or f"pool size must be >= 0, got {n}"
        self.target = int(n)
        self._wake.set()
        return ""

    async def update_weights(self, version: str, state: bytes, timeout_s: float = 120.0) -> Dict[str, Any]:
        """Hot-swap ``state`` into every live worker and spare and keep it for workers started later (replacements).
        Returns ``{"served": {worker: version}, "failed": {worker: error}}`` of the live workers; a spare that
        refuses the weights is dropped (the loop starts another, with these weights)."""
        self._ensure_loop()
        ref = ray.put(bytes(state))
        self.weights = (str(version), ref)
        workers = list(self.live.values()) + list(self.spares.values())
        refs = [w.handle.update_weights.remote(str(version), ref) for w in workers]
        served, failed = {}, {}
        for w, r in zip(workers, refs):
            try:
                done = await asyncio.wait_for(r, timeout_s)
                if not w.spare:
                    served[w.worker_id] = done
            except Exception as e:  # noqa: BLE001 - reported per worker
                if not w.spare:
                    failed[w.worker_id] = f"{type(e).__name__}: {e}"
                elif self.spares.pop(w.worker_id, None) is not None:
                    ray.kill(w.handle, no_restart=True)
                    self._event("spare_failed", w.worker_id, f"refused weights {version}: {e}")
        if not self.live:
            failed["(pool)"] = "no live reward workers to update"
        return {"served": served, "failed": failed}

    async def state(self) -> Dict[str, Any]:
        """Target, live/starting/stopping counts, counters (lost, replaced, scale events), last error, events."""
        return {
            "target": self.target, "live": len(self.live), "starting": len(self.starting),
            "spares": len(self.spares),
            "stopping": len(self.stopping), "counters": dict(self.counters), "last_error": self.last_error,
            "events": list(self.events)[-20:], "weights_version": self.weights[0] if self.weights else None,
            "supervise_passes": self.passes,
            "autoscale": None if self.autoscaler is None else {
                "min": self.autoscaler.min, "max": self.autoscaler.max, "metric": self.autoscaler.metric,
                "target": self.autoscaler.target, "observed": self.autoscaler.last_value},
            "workers": {wid: {"address": w.address, "node_ip": w.node_ip} for wid, w in self.live.items()},
        }

    async def shutdown(self, grace_s: float = 1.0) -> bool:
        """Stop every worker and the loop."""
        self._closed = True
        if self._loop_task is not None:
            self._loop_task.cancel()
        for w in [*self.starting.values(), *self.spares.values(), *self.spares_starting.values()]:
            ray.kill(w.handle, no_restart=True)
        self.starting.clear()
        self.spares.clear()
        self.spares_starting.clear()
        for wid in list(self.live):
            self._begin_stop(wid, grace_s)
        if self.stopping:
            await asyncio.gather(*self.stopping.values(), return_exceptions=True)
        return True

    async def ping(self) -> str:
        return "ok"

    # ------------------------------------------------------------------ loop
    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._wake = self._wake or asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        interval = float(self.pool_cfg.supervise_interval_s)
        while not self._closed:
            self.passes += 1
            try:
                await self._check_liveness()
                await self._autoscale()
                await self._reconcile()
            except Exception as e:  # noqa: BLE001 - the loop must survive anything; the error is reported
                self.last_error = f"supervisor loop: {type(e).__name__}: {e}"
                log.exception("reward pool supervisor loop failed")
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def _check_liveness(self) -> None:
        workers = list(self.live.values()) + list(self.spares.values())
        if not workers:
            return

        async def probe(w: _Worker) -> Optional[str]:
            try:
                await asyncio.wait_for(w.handle.ping.remote(), PING_TIMEOUT_S)
                w.missed_pings = 0
                return None
            except asyncio.TimeoutError:
                w.missed_pings += 1
                return (f"no answer to {w.missed_pings} pings in a row" if w.missed_pings >= UNRESPONSIVE_PINGS
                        else None)
            except Exception as e:  # noqa: BLE001 - RayActorError & co.: the actor is gone
                return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"

        results = await asyncio.gather(*(probe(w) for w in workers))
        lost_any = False
        for w, dead in zip(workers, results):
            if dead is not None and self.spares.get(w.worker_id) is w:
                del self.spares[w.worker_id]
                ray.kill(w.handle, no_restart=True)
                self._event("spare_lost", w.worker_id, dead)
                continue
            if dead is None or self.live.get(w.worker_id) is not w:
                continue
            del self.live[w.worker_id]
            ray.kill(w.handle, no_restart=True)
            lost_any = True
            self.counters["lost"] += 1
            self._event("lost", w.worker_id, dead)
            try:
                await asyncio.wait_for(self.registry.deregister.remote(w.worker_id), 10)
            except Exception as e:  # noqa: BLE001 - the registry drops dead actors itself too
                log.warning("deregistering lost worker %s failed: %s", w.worker_id, e)
            if self.pool_cfg.heal:
                self.counters["to_replace"] += 1
            else:
                self.target = max(0, self.target - 1)
        if lost_any:  # one more pass at once (a loss during this pass's reconcile); never every pass: that pings
            self._wake.set()  # the workers back to back (31 passes in 3 s at load 20 instead of 6)

    async def _autoscale(self) -> None:
        if self.autoscaler is None or not self.live or self.starting or self.stopping:
            return
        now = time.monotonic()
        if now - self._last_autoscale_read < float(self.pool_cfg.autoscale.interval_s):
            return
        self._last_autoscale_read = now
        workers = list(self.live.values())
        rows = []
        for w, r in zip(workers, await asyncio.gather(
                *(asyncio.wait_for(w.handle.info.remote(), 5.0) for w in workers), return_exceptions=True)):
            if isinstance(r, dict):
                rows.append(r)
        if not rows:
            return
        value = self.autoscaler.observe(rows)
        wanted = self.autoscaler.decide(self.target, now)
        if wanted is None or wanted == self.target:
            return
        why = infeasible_reason(wanted, self.pool_cfg) if wanted > self.target else None
        if why:
            self.last_error = f"autoscale to {wanted} refused: {why}"
            return
        kind = "scale_up" if wanted > self.target else "scale_down"
        self.counters[kind + "s"] += 1
        self._event(kind, "", f"{self.target} -> {wanted} ({self.autoscaler.metric} {value:.1f} per worker, "
                              f"target {self.autoscaler.target:g})")
        self.target = wanted

    async def _reconcile(self) -> None:
        if self._closed:
            return
        have = len(self.live) + len(self.starting)
        while have < self.target and self.spares:  # promote warm spares first: registering takes milliseconds
            w = self.spares.pop(min(self.spares, key=lambda k: self.spares[k].started_at))
            self.starting[w.worker_id] = w
            asyncio.get_running_loop().create_task(self._promote(w))
            have += 1
        missing_spares = int(self.pool_cfg.get("spares", 0) or 0) - len(self.spares) - len(self.spares_starting)
        if have >= self.target and missing_spares > 0 and time.monotonic() >= self._next_start_at:
            if not infeasible_reason(self.target + len(self.spares) + len(self.spares_starting) + missing_spares,
                                     self.pool_cfg):
                await self._start(missing_spares, spare=True)
        if have < self.target and time.monotonic() >= self._next_start_at:
            why = infeasible_reason(self.target, self.pool_cfg)
            if why:
                self.last_error = why
                self._next_start_at = time.monotonic() + 5.0
                return
            await self._start(self.target - have)
        elif have > self.target:
            extra = have - self.target
            for w in sorted(self.starting.values(), key=lambda w: w.started_at, reverse=True)[:extra]:
                del self.starting[w.worker_id]
                ray.kill(w.handle, no_restart=True)
                extra -= 1
            for w in sorted(self.live.values(), key=lambda w: w.started_at, reverse=True)[:max(extra, 0)]:
                self._begin_stop(w.worker_id, self._grace)

    # ------------------------------------------------------------------ start / stop
    async def _start(self, k: int, spare: bool = False) -> None:
        ids = await asyncio.wait_for(self.registry.next_worker_ids.remote(k), 30)
        opts: Dict[str, Any] = dict(namespace=self.pool_cfg.namespace)
        if self.detached:
            opts["lifetime"] = "detached"
        version, ref = self.weights if self.weights else (None, None)
        for wid in ids:
            h = self.actor_cls.options(name=f"{self.pool_cfg.registry_name}.{wid}", **opts).remote(
                self.cfg_dict, wid, version, ref, not spare)
            w = _Worker(wid, h, spare)
            (self.spares_starting if spare else self.starting)[wid] = w
            asyncio.get_running_loop().create_task(self._await_ready(w))

    async def _await_ready(self, w: _Worker) -> None:
        timeout = float(self.pool_cfg.start_timeout_s)
        try:
            w.address = await asyncio.wait_for(w.handle.get_address.remote(), timeout)
            version = await asyncio.wait_for(w.handle.model_version.remote(), 30)
        except Exception as e:  # noqa: BLE001 - reported, retried with backoff
            if (self.spares_starting if w.spare else self.starting).pop(w.worker_id, None) is None:
                return  # cancelled by a scale-down meanwhile
            ray.kill(w.handle, no_restart=True)
            self.counters["start_failures"] += 1
            self._start_fails += 1
            self._next_start_at = time.monotonic() + min(MAX_START_BACKOFF_S, 2.0 ** self._start_fails)
            if isinstance(e, asyncio.TimeoutError):
                reason = (f"not serving within pool.start_timeout_s={timeout:g}s; resources available now: "
                          f"{_short_resources(ray.available_resources())}")
            else:
                reason = f"{type(e).__name__}: {str(e)[-500:]}"
            self.last_error = f"reward worker {w.worker_id} failed to start: {reason}"
            self._event("start_failed", w.worker_id, reason)
            self._wake.set()
            return
        self._start_fails = 0
        if w.spare:
            if self.spares_starting.pop(w.worker_id, None) is None or self._closed:
                ray.kill(w.handle, no_restart=True)
                return
            self.spares[w.worker_id] = w
            self._event("spare_ready", w.worker_id, f"after {time.monotonic() - w.started_at:.1f}s")
            self._wake.set()
            return
        await self._go_live(w, version)

    async def _promote(self, w: _Worker) -> None:
        """A warm spare takes a lost (or newly wanted) worker's place: current weights, then registered."""
        try:
            version = await asyncio.wait_for(w.handle.model_version.remote(), 30)
            if self.weights is not None and version != self.weights[0]:
                version = await asyncio.wait_for(w.handle.update_weights.remote(*self.weights), 120)
            await asyncio.wait_for(w.handle.register.remote(), 30)
        except Exception as e:  # noqa: BLE001 - the spare is dropped; the loop starts a worker instead
            self.starting.pop(w.worker_id, None)
            ray.kill(w.handle, no_restart=True)
            self._event("spare_failed", w.worker_id, f"{type(e).__name__}: {e}")
            self._wake.set()
            return
        w.started_at = time.monotonic()
        self._wake.set()  # start the next spare
        await self._go_live(w, version, promoted=True)

    async def _go_live(self, w: _Worker, version: str, promoted: bool = False) -> None:
        if self.starting.pop(w.worker_id, None) is None or self._closed:
            ray.kill(w.handle, no_restart=True)  # scaled down (or the pool shut down) while starting
            return
        self.live[w.worker_id] = w
        took = time.monotonic() - w.started_at
        if self.weights is not None and version != self.weights[0]:  # weights swapped while it started
            try:
                await asyncio.wait_for(w.handle.update_weights.remote(self.weights[0], self.weights[1]), 120)
            except Exception as e:  # noqa: BLE001 - a worker that cannot take the current weights must not serve
                self.last_error = f"worker {w.worker_id} refused weights {self.weights[0]}: {e}"
                self._begin_stop(w.worker_id, 0.0)
                return
        if self.counters["to_replace"] > 0:
            self.counters["to_replace"] -= 1
            self.counters["replaced"] += 1
            self._event("replaced", w.worker_id, f"serving at {w.address} after {took:.1f}s"
                                                 + (" (a warm spare promoted)" if promoted else ""))
        else:
            self.counters["started"] += 1
            self._event("started", w.worker_id, f"serving at {w.address} after {took:.1f}s")

    def _begin_stop(self, wid: str, grace_s: Optional[float]) -> None:
        w = self.live.pop(wid, None)
        if w is None or wid in self.stopping:
            return
        task = asyncio.get_running_loop().create_task(self._stop(w, grace_s))
        self.stopping[wid] = task
        task.add_done_callback(lambda _t, wid=wid: self.stopping.pop(wid, None))

    async def _stop(self, w: _Worker, grace_s: Optional[float]) -> None:
        grace = float(self.cfg.server.grace_s if grace_s is None else grace_s)
        try:
            await asyncio.wait_for(w.handle.stop.remote(grace), grace + 30)  # deregisters, then drains
        except Exception as e:  # noqa: BLE001 - a worker that does not stop cleanly is killed anyway
            log.warning("reward worker %s did not stop cleanly: %s", w.worker_id, e)
            try:
                await asyncio.wait_for(self.registry.deregister.remote(w.worker_id), 10)
            except Exception:  # noqa: BLE001
                pass
        ray.kill(w.handle, no_restart=True)
        self._event("stopped", w.worker_id, "")

    # ------------------------------------------------------------------ helpers
    def _wait_bound(self, grace_s: Optional[float]) -> float:
        grace = float(self.cfg.server.grace_s if grace_s is None else grace_s)
        return float(self.pool_cfg.start_timeout_s) + grace + 60.0

    def _addresses(self) -> Dict[str, str]:
        return {wid: w.address for wid, w in self.live.items()}

    def _summary(self) -> str:
        return (f"target {self.target}, {len(self.live)} serving, {len(self.starting)} starting, "
                f"{len(self.stopping)} stopping")

    def _event(self, kind: str, worker_id: str, detail: str) -> None:
        self.events.append({"time": time.time(), "event": kind, "worker_id": worker_id, "detail": detail})
        log.info("reward pool: %s %s %s", kind, worker_id, detail)


def _short_resources(res: Dict[str, float]) -> str:
    shown = {k: (f"{v / 2**30:.1f} GiB" if k == "memory" else f"{v:g}") for k, v in sorted(res.items())
             if not k.startswith(("node:", "object_store_memory", "accelerator_type:"))}
    return str(shown)


def get_or_create_supervisor(cfg_dict: Dict[str, Any], pool_cfg: Any, detached: bool) -> Any:
    opts: Dict[str, Any] = dict(name=supervisor_name(pool_cfg), namespace=pool_cfg.namespace, get_if_exists=True,
                                scheduling_strategy=near_the_caller())
    if detached:
        opts["lifetime"] = "detached"
    return PoolSupervisor.options(**opts).remote(cfg_dict, detached)


def get_supervisor(pool_cfg: Any) -> Optional[Any]:
    try:
        return ray.get_actor(supervisor_name(pool_cfg), namespace=pool_cfg.namespace)
    except ValueError:
        return None

