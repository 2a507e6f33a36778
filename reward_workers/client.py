"""The reward-service client: actors and offline labelling send frames here and get rewards back.

:class:`RewardClient` keeps one channel and one ``ScoreStream`` open per reward worker and
spreads requests over the workers it knows (a static address list, or a registry it re-reads
every ``discovery_interval_s``):

* each request goes to the least-loaded worker (fewest outstanding items *from this client*),
  with at most ``max_in_flight`` requests pipelined per worker;
* item lists longer than ``max_items_per_request`` are split into several wire requests;
* every wire request has a deadline (``deadline_s``, enforced by the client since a stream has
  no per-message deadline);
* on UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED / RESOURCE_EXHAUSTED, a broken stream or a
  worker leaving the registry, the unanswered requests are resent to *another* worker;
* a request is never dropped and no default reward is invented: the caller gets every reward,
  or :class:`RewardUnavailableError` (naming the request ids and the last errors) once a request
  was resent ``retry_budget`` times; INVALID_ARGUMENT is not retried but raised as
  :class:`InvalidRequestError` with the server's message;
* when no worker is usable (all died; the pool's supervisor is starting replacements) every queued
  and in-flight request waits, spending no retries, for a worker to answer again; a failed worker is
  probed with a doubling cool-down; once no worker has answered for ``no_worker_wait_s`` all of
  them fail together with :class:`RewardUnavailableError`;
* exactly once: each caller request resolves once, late or duplicate answers are dropped.

All network work runs on one asyncio loop in a background thread (shared by the clients of a
process); the public API is
thread-safe and synchronous (:meth:`RewardClient.score`) or future-based
(:meth:`RewardClient.submit`, :meth:`RewardClient.score_many`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import logging
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import grpc
import numpy as np

from vlmrl.reward_workers.aio_loop import shared_loop
from vlmrl.reward_workers.proto import reward_pb2, reward_pb2_grpc
from vlmrl.reward_workers.scorers.base import ItemKind

log = logging.getLogger(__name__)

_CODES = {c.value[0]: c for c in grpc.StatusCode}
# Errors that say "this worker cannot answer now": resend to another worker.
RETRIABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
})
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_LATENCY_WINDOW = 1024
_MAX_COOLDOWN_S = 2.0
"""Longest cool-down of a worker whose stream keeps failing (it is probed again after this)."""



class RewardServiceError(RuntimeError):
    """Base of the errors the reward client raises to its caller."""


class RewardUnavailableError(RewardServiceError):
    """Some items could not be scored: every worker tried failed, ``retry_budget`` resends were spent.

    ``request_ids`` names the failed caller requests, ``errors`` the last errors seen (worker: error).
    """

    def __init__(self, request_ids: Sequence[str], errors: Sequence[str], attempts: int) -> None:
        self.request_ids = list(request_ids)
        self.errors = list(errors)
        self.attempts = attempts
        last = "; ".join(self.errors[-5:]) or "no error recorded"
        super().__init__(
            f"reward service unavailable for request(s) {self.request_ids} after {attempts} attempt(s); "
            f"last errors: {last}")

    def __reduce__(self):  # Ray pickles exceptions across processes
        return (type(self), (self.request_ids, self.errors, self.attempts))


class InvalidRequestError(RewardServiceError):
    """A worker rejected the request as INVALID_ARGUMENT (bad frame, wrong item kind, ...); not retried."""

    def __init__(self, request_id: str, message: str, worker: str = "") -> None:
        self.request_id = request_id
        self.server_message = message
        self.worker = worker
        super().__init__(f"request {request_id!r} rejected by reward worker {worker or '?'}: {message}")

    def __reduce__(self):  # Ray pickles exceptions across processes
        return (type(self), (self.request_id, self.server_message, self.worker))


class RewardClientClosed(RewardServiceError):
    """The client was closed before the request was answered."""


@dataclass
class RewardResult:
    """The reward of one item as the caller sees it."""

    reward: float
    components: Dict[str, float] = field(default_factory=dict)
    label: str = ""
    model_version: str = ""
    worker_id: str = ""
    cached: bool = False


# ----------------------------------------------------------------------------------------------
# Bookkeeping of one caller request (a _Call) split into wire requests (_Jobs).


class _Call:
    def __init__(self, request_id: str, n_jobs: int) -> None:
        self.request_id = request_id
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.parts: List[Optional[List[RewardResult]]] = [None] * n_jobs
        self.remaining = n_jobs
        self.done = False

    def complete_part(self, index: int, results: List[RewardResult]) -> None:
        if self.done or self.parts[index] is not None:
            return
        self.parts[index] = results
        self.remaining -= 1
        if self.remaining == 0:
            self.done = True
            self.future.set_result([r for part in self.parts for r in part])  # type: ignore[union-attr]

    def fail(self, exc: BaseException) -> None:
        if not self.done:
            self.done = True
            self.future.set_exception(exc)


class _Job:
    """One wire request (a chunk of a caller request) and its delivery state."""

    __slots__ = ("call", "index", "request", "n_items", "attempts", "errors", "excluded", "conn",
                 "sent_at", "timer", "done")

    def __init__(self, call: _Call, index: int, request: reward_pb2.ScoreRequest) -> None:
        self.call = call
        self.index = index
        self.request = request
        self.n_items = len(request.items)
        self.attempts = 0  # resends so far
        self.errors: List[str] = []
        self.excluded: set[str] = set()  # workers that failed this job
        self.conn: Optional[_WorkerConn] = None
        self.sent_at = 0.0
        self.timer: Optional[asyncio.TimerHandle] = None
        self.done = False

    @property
    def wire_id(self) -> str:
        return self.request.request_id


# ----------------------------------------------------------------------------------------------
# One worker: a channel, one open ScoreStream, the requests pending on it.


class _WorkerConn:
    def __init__(self, client: "RewardClient", address: str, worker_id: str = "") -> None:
        self.client = client
        self.address = address
        self.worker_id = worker_id
        self.channel: Optional[grpc.aio.Channel] = None
        self.call: Any = None  # the open StreamStreamCall, or None
        self.reader: Optional[asyncio.Task] = None
        self.writing: Optional[tuple[_Job, asyncio.Task]] = None  # the write in progress on ``call``
        self.pending: Dict[str, _Job] = {}
        self.outstanding_items = 0
        self.broken_until = 0.0
        self.fail_streak = 0  # stream failures since the last answer: the cool-down doubles with each
        self.answered_on_stream = False  # the open stream has delivered an answer (the worker was up)
        self.leaving = False
        # stats
        self.requests = 0
        self.items = 0
        self.errors = 0
        self.latencies_ms: collections.deque = collections.deque(maxlen=_LATENCY_WINDOW)

    # -- state -----------------------------------------------------------------------------
    def usable(self, now: float) -> bool:
        return not self.leaving and now >= self.broken_until

    def has_capacity(self) -> bool:
        return len(self.pending) < self.client._cfg_max_in_flight

    # -- stream ----------------------------------------------------------------------------
    def _open(self) -> None:
        if self.channel is None:
            self.channel = self.client._make_channel(self.address)
        stub = reward_pb2_grpc.RewardServiceStub(self.channel)
        call = stub.ScoreStream(metadata=self.client._metadata)
        self.call = call
        self.answered_on_stream = False
        self.reader = asyncio.get_running_loop().create_task(self._read(call))

    async def _read(self, call: Any) -> None:
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    self._break(call, "UNAVAILABLE: stream closed by the worker")
                    return
                self.client._on_response(self, resp)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as e:
            self._break(call, f"{e.code().name}: {e.details()}")
        except Exception as e:  # noqa: BLE001 - any stream failure means: resend elsewhere
            self._break(call, f"{type(e).__name__}: {e}")

    async def send(self, job: _Job) -> None:
        if self.call is None:
            self._open()
        call = self.call
        loop = asyncio.get_running_loop()
        job.conn = self
        job.sent_at = time.perf_counter()
        job.timer = loop.call_later(self.client._cfg_deadline_s, self.client._on_timeout, self, job)
        self.pending[job.wire_id] = job
        self.outstanding_items += job.n_items
        self.requests += 1
        # The write runs as its own task so that breaking the stream can end it: grpc.aio's ``write`` first awaits
        # the stream's initial metadata being sent, and if the call is cancelled before that (the worker left the
        # registry, the channel is still connecting) that wait never ends (grpc 1.85, aio/_call.py ``_write``).
        write = loop.create_task(call.write(job.request))
        self.writing = (job, write)
        try:
            await write
        except asyncio.CancelledError:
            # The write was ended under us: ``_end_write`` (the stream broke, timed out or its worker left the
            # registry), or grpc.aio itself, which raises CancelledError from a write whose call was cancelled
            # meanwhile. That stream is gone, its pending jobs already resent. Only a cancel of this task itself
            # (the client closing) may end the dispatch loop that awaits this.
            if asyncio.current_task().cancelling():
                raise
            self._break(call, "CANCELLED: the stream was cancelled during a write")
        except Exception as e:  # noqa: BLE001 - a failed write breaks the stream; pending jobs are resent
            self._break(call, f"{type(e).__name__}: {e}" if not isinstance(e, grpc.aio.AioRpcError)
                        else f"{e.code().name}: {e.details()}")
        finally:
            if self.writing is not None and self.writing[1] is write:
                self.writing = None
            if not write.done():  # this task itself was cancelled (the client closing)
                write.cancel()

    def write_stuck(self, job: _Job) -> bool:
        """Whether ``job``'s write has not finished yet (its deadline passed while the stream took no data)."""
        return self.writing is not None and self.writing[0] is job

    def _end_write(self) -> None:
        if self.writing is not None:
            self.writing[1].cancel()
            self.writing = None

    def release(self, job: _Job) -> None:
        """``job`` is no longer pending here (answered, timed out or moved)."""
        if self.pending.pop(job.wire_id, None) is job:
            self.outstanding_items -= job.n_items
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        if job.conn is self:
            job.conn = None

    def _stop_stream(self) -> Optional[asyncio.Task]:
        """Cancel the open stream, the write in progress on it and its reader; returns the reader if it was
        cancelled (to await), None if there was none or it is the caller."""
        call, self.call = self.call, None
        if call is not None:
            call.cancel()
        self._end_write()
        reader, self.reader = self.reader, None
        if reader is None or reader is asyncio.current_task():
            return None
        reader.cancel()
        return reader

    def _break(self, call: Any, reason: str) -> None:
        """The stream failed: resend everything unanswered on it elsewhere and cool down (the cool-down doubles
        with each failure in a row, up to ``_MAX_COOLDOWN_S``: a dead address is not retried every backoff)."""
        if call is not self.call:
            return  # an old stream; already handled
        self.errors += 1
        self.fail_streak += 1
        cooldown = min(_MAX_COOLDOWN_S, self.client._cfg_backoff_s * 2 ** (self.fail_streak - 1))
        self.broken_until = time.monotonic() + cooldown
        self._stop_stream()
        self.client._resend_all(self, reason)

    async def close(self, reason: str) -> Optional[asyncio.Task]:
        """This worker is gone (left the registry, or the client closes): end its stream, resend what is pending on
        it, close its channel. Returns the cancelled reader task (see ``_stop_stream``)."""
        self.leaving = True
        reader = self._stop_stream()
        self.client._resend_all(self, reason)
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        return reader

    def stats(self) -> Dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "address": self.address,
            "worker_id": self.worker_id,
            "requests": self.requests,
            "items": self.items,
            "errors": self.errors,
            "in_flight": len(self.pending),
            "outstanding_items": self.outstanding_items,
            "mean_latency_ms": float(np.mean(lat)) if lat else 0.0,
            "p50_latency_ms": lat[len(lat) // 2] if lat else 0.0,
            "p99_latency_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0,
            "state": "leaving" if self.leaving else ("cooling" if time.monotonic() < self.broken_until else "ok"),
        }


# ----------------------------------------------------------------------------------------------


def _cfg(cfg: Any, name: str, default: Any) -> Any:
    value = getattr(cfg, name, None) if cfg is not None else None
    return default if value is None else value


class RewardClient:
    """Client of the reward worker pool: load-balances, pipelines and fails over score requests.

    Give it either ``addresses`` (a static ``host:port`` list) or a ``registry``: an object with a
    ``workers() -> {worker_id: address}`` method (e.g. :class:`vlmrl.reward_workers.registry.RegistryView`),
    re-read every ``client_cfg.discovery_interval_s``. ``scorer`` (optional) is sent with every
    request so a worker running another scorer refuses it.
    """

    def __init__(self, client_cfg: Any = None, addresses: Optional[Sequence[str]] = None,
                 registry: Any = None, scorer: str = "") -> None:
        if (addresses is None) == (registry is None):
            raise ValueError("RewardClient needs exactly one of `addresses` (a host:port list) or `registry`")
        if addresses is not None and (isinstance(addresses, str) or not all(isinstance(a, str) and ":" in a for a in addresses)):
            raise ValueError(f"addresses must be a list of 'host:port' strings, got {addresses!r}")
        if registry is not None and not callable(getattr(registry, "workers", None)):
            raise TypeError(f"registry must have a workers() -> {{worker_id: address}} method, got {type(registry).__name__}")
        self._cfg_deadline_s = float(_cfg(client_cfg, "deadline_s", 30.0))
        self._cfg_max_in_flight = int(_cfg(client_cfg, "max_in_flight", 8))
        self._cfg_retry_budget = int(_cfg(client_cfg, "retry_budget", 5))
        self._cfg_backoff_s = float(_cfg(client_cfg, "retry_backoff_s", 0.2))
        self._cfg_max_items = int(_cfg(client_cfg, "max_items_per_request", 64))
        self._cfg_discovery_s = float(_cfg(client_cfg, "discovery_interval_s", 2.0))
        self._cfg_no_worker_wait_s = float(_cfg(client_cfg, "no_worker_wait_s", 60.0))
        for name in ("_cfg_deadline_s", "_cfg_max_in_flight", "_cfg_max_items", "_cfg_discovery_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"client.{name[5:]} must be > 0, got {getattr(self, name)}")
        if self._cfg_retry_budget < 0:
            raise ValueError(f"client.retry_budget must be >= 0, got {self._cfg_retry_budget}")
        if self._cfg_no_worker_wait_s < 0:
            raise ValueError(f"client.no_worker_wait_s must be >= 0, got {self._cfg_no_worker_wait_s}")
        self._tls = getattr(client_cfg, "tls", None)
        token = getattr(client_cfg, "auth_token", None)
        self._metadata: tuple = ()
        if token:
            from vlmrl.reward_workers.security import auth_metadata

            self._metadata = tuple(auth_metadata(token))
        self._scorer = scorer
        self._registry = registry
        self._static = list(addresses) if addresses is not None else None
        # Registry reads block (a Ray call): they get this client's own thread, and a bounded wait, so a
        # slow or dead registry can never stall dispatch or starve the shared loop's default executor.
        self._discovery_executor = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reward-client-discovery")
                                    if registry is not None else None)
        self._discovery_timeout_s = max(5.0, 5 * self._cfg_discovery_s)

        self._conns: Dict[str, _WorkerConn] = {}
        self._queue: collections.deque[_Job] = collections.deque()
        # the job the dispatch loop is handing to a worker: neither queued nor (until ``send`` registers it) pending
        # anywhere, so a ``send`` that raises before that would otherwise lose it
        self._sending: Optional[_Job] = None
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]
        self._closed = False
        self._counters = collections.Counter()
        self._last_discovery_error = ""
        self._dispatch_error = ""
        self._no_worker_since: Optional[float] = None  # monotonic time since which no worker has answered
        self._no_worker_wait_total = 0.0  # seconds requests spent waiting with no usable worker

        self._loop = shared_loop()  # one loop per process for all gRPC work (see aio_loop)
        asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result()

    # ------------------------------------------------------------------ public API (any thread)
    def submit(self, task: str, items: Sequence[Any], kind: ItemKind | str = ItemKind.FRAME,
               request_id: Optional[str] = None) -> concurrent.futures.Future:
        """Send one request; the future resolves to one :class:`RewardResult` per item, same order."""
        if self._closed:
            raise RewardClientClosed("the reward client is closed")
        if not isinstance(task, str) or not task:
            raise ValueError("task must be a non-empty string")
        pb_items = self._to_items(items, kind)
        if not pb_items:
            raise ValueError("a request needs at least one item")
        rid = request_id or f"{self._prefix}-{next(self._ids)}"
        chunks = [pb_items[i:i + self._cfg_max_items] for i in range(0, len(pb_items), self._cfg_max_items)]
        call = _Call(rid, len(chunks))
        jobs = []
        for i, chunk in enumerate(chunks):
            wire_id = rid if len(chunks) == 1 else f"{rid}#{i}"
            jobs.append(_Job(call, i, reward_pb2.ScoreRequest(request_id=wire_id, task=task, items=chunk,
                                                              scorer=self._scorer)))
        self._loop.call_soon_threadsafe(self._enqueue, jobs)
        return call.future

    def score(self, task: str, items: Sequence[Any], kind: ItemKind | str = ItemKind.FRAME,
              timeout: Optional[float] = None) -> List[RewardResult]:
        """Score ``items`` against ``task`` and wait; raises RewardUnavailableError / InvalidRequestError."""
        return self.submit(task, items, kind).result(timeout)

    def score_many(self, requests: Iterable[Any], kind: ItemKind | str = ItemKind.FRAME,
                   timeout: Optional[float] = None) -> List[List[RewardResult]]:
        """Many requests in flight at once: ``requests`` are ``(task, items)`` pairs; results in the same order."""
        futures = [self.submit(task, items, kind) for task, items in requests]
        return [f.result(timeout) for f in futures]

    def stats(self) -> Dict[str, Any]:
        """Counters: submitted requests/items, retries, failures, late answers, and per-worker latency."""
        return asyncio.run_coroutine_threadsafe(self._stats(), self._loop).result(10)

    def workers(self) -> List[str]:
        """Addresses of the workers the client currently knows."""
        return asyncio.run_coroutine_threadsafe(self._known(), self._loop).result(10)

    def close(self) -> None:
        """Close all streams and channels; unanswered requests fail with RewardClientClosed."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        finally:
            if self._discovery_executor is not None:
                self._discovery_executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "RewardClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ conversion
    @staticmethod
    def _to_items(items: Sequence[Any], kind: ItemKind | str) -> List[reward_pb2.Item]:
        if isinstance(items, reward_pb2.Item):
            raise TypeError("items must be a sequence of items (wrap a single Item in a list)")
        if isinstance(items, np.ndarray) and items.ndim < 4:
            raise ValueError(f"an item array must be (N, H, W, C) frames or (N, k, H, W, C) pairs/windows, "
                             f"got shape {items.shape} (wrap a single frame in a list)")
        out = []
        make_item = None
        for it in items:
            if isinstance(it, reward_pb2.Item):
                out.append(it)
                continue
            if make_item is None:
                from vlmrl.reward_workers.frames import make_item
            out.append(make_item(np.asarray(it), ItemKind(kind)))
        return out

    # ------------------------------------------------------------------ loop side
    async def _setup(self) -> None:
        self._wake = asyncio.Event()
        if self._static is not None:
            for addr in self._static:
                self._conns[addr] = _WorkerConn(self, addr)
        else:
            await self._discover()
        dispatch = asyncio.get_running_loop().create_task(self._dispatch_loop())
        dispatch.add_done_callback(self._dispatch_ended)
        self._tasks = [dispatch]
        if self._registry is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._discovery_loop()))

    def _make_channel(self, address: str) -> grpc.aio.Channel:
        from vlmrl.reward_workers.security import create_channel

        # Short reconnect backoff: a restarted worker at the same address is usable again quickly.
        options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 2000)]
        return create_channel(address, self._tls, aio=True, max_message_bytes=_MAX_MESSAGE_BYTES, options=options)

    def _enqueue(self, jobs: List[_Job]) -> None:
        self._counters["requests"] += 1
        self._counters["items"] += sum(j.n_items for j in jobs)
        if self._dispatch_error:
            self._counters["failures"] += 1
            jobs[0].call.fail(RewardServiceError(self._dispatch_error))
            return
        self._queue.extend(jobs)
        self._wake.set()

    # -- discovery ------------------------------------------------------------------------
    async def _discover(self) -> None:
        try:
            found = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._discovery_executor, self._registry.workers),
                timeout=self._discovery_timeout_s)
            found = dict(found)
            self._last_discovery_error = ""
        except (Exception, asyncio.TimeoutError) as e:  # noqa: BLE001 - keep the known workers when the registry is unreachable
            self._last_discovery_error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            log.warning("reward worker discovery failed: %s", self._last_discovery_error)
            return
        addresses = {addr: wid for wid, addr in found.items()}
        changed = False
        for addr, conn in list(self._conns.items()):
            if addr not in addresses:
                del self._conns[addr]
                self._counters["workers_left"] += 1
                changed = True
                await conn.close("worker left the registry")
        for addr, wid in addresses.items():
            if addr not in self._conns:
                self._conns[addr] = _WorkerConn(self, addr, wid)
                changed = True
        if changed:  # only a change may end a no-worker wait early: each such wait costs queued jobs an attempt
            self._wake.set()

    async def _discovery_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._cfg_discovery_s)
            await self._discover()

    # -- dispatch -------------------------------------------------------------------------
    def _pick(self, job: _Job, now: float) -> tuple[Optional[_WorkerConn], bool]:
        """(worker to send to, whether any worker is usable at all)."""
        usable = [c for c in self._conns.values() if c.usable(now)]
        if not usable:
            return None, False
        fresh = [c for c in usable if c.address not in job.excluded] or usable
        free = [c for c in fresh if c.has_capacity()]
        if not free:
            return None, True
        best = min(c.outstanding_items for c in free)
        return random.choice([c for c in free if c.outstanding_items == best]), True

    async def _dispatch_loop(self) -> None:
        while not self._closed:
            while self._queue and self._queue[0].call.done:
                self._queue.popleft()  # its caller request already failed
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self._queue[0]
            now = time.monotonic()
            conn, any_usable = self._pick(job, now)
            if conn is not None:
                self._queue.popleft()
                self._sending = job
                await conn.send(job)
                self._sending = None
                continue
            if any_usable:  # every worker has max_in_flight requests pending: wait for an answer
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._no_worker_round(now)

    def _dispatch_ended(self, task: asyncio.Task) -> None:
        """The dispatch loop ends only when the client closes. Should it ever end otherwise, nothing more would be
        sent: every unanswered request (and every later one) fails with the reason instead of waiting forever."""
        if self._closed:
            return
        why = "cancelled" if task.cancelled() else f"{type(task.exception()).__name__}: {task.exception()}"
        self._dispatch_error = f"the reward client's dispatch loop ended ({why}); create a new RewardClient"
        log.error(self._dispatch_error)
        self._fail_unanswered(RewardServiceError(self._dispatch_error), count_failures=True)

    def _take_unanswered(self) -> List[_Job]:
        """Every job not answered yet (queued, being sent, pending on a worker), taken off the queue and workers."""
        jobs = [*self._queue, *(job for conn in self._conns.values() for job in conn.pending.values())]
        if self._sending is not None and self._sending not in jobs:
            jobs.append(self._sending)
        self._queue.clear()
        for job in jobs:
            if job.conn is not None:
                job.conn.release(job)
        return jobs

    def _fail_unanswered(self, err: Exception, count_failures: bool) -> None:
        """Fail every request not answered yet (queued, being sent, pending on a worker) with ``err``."""
        for job in self._take_unanswered():
            if count_failures and not job.call.done:
                self._counters["failures"] += 1
            job.call.fail(err)

    async def _no_worker_round(self, now: float) -> None:
        """No usable worker: every request waits (spending no retries) for a worker to come back or appear in the
        registry, up to ``no_worker_wait_s`` since the last answer; past that bound all unanswered requests fail
        together (not one retry at a time)."""
        if self._no_worker_since is None:
            self._no_worker_since = now
        bound = self._cfg_no_worker_wait_s
        if now - self._no_worker_since >= bound:
            self._give_up_all(now - self._no_worker_since)
            return
        cooling = [c.broken_until for c in self._conns.values() if not c.leaving and c.broken_until > now]
        wait = min([bound - (now - self._no_worker_since)] + [t - now for t in cooling])
        self._wake.clear()
        if self._registry is not None:
            await self._discover()
        if not any(c.usable(time.monotonic()) for c in self._conns.values()):
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.01))
            except asyncio.TimeoutError:
                pass
        self._no_worker_wait_total += time.monotonic() - now

    def _no_worker_reason(self, waited: float) -> str:
        return ("no reward worker answered for %.1fs (client.no_worker_wait_s=%g)" % (waited, self._cfg_no_worker_wait_s)
                + (f"; registry: {self._last_discovery_error}" if self._last_discovery_error else
                   f"; {len(self._conns)} known, all failing" if self._conns else "; none registered"))

    def _give_up_all(self, waited: float) -> None:
        """The no-worker bound passed: fail every unanswered request (queued, being sent, pending) at once."""
        reason = self._no_worker_reason(waited)
        jobs = self._take_unanswered()
        for job in jobs:
            if job.call.done or job.done:
                continue
            job.errors.append(reason)
            self._give_up(job)
        self._no_worker_since = None
        log.warning("reward client: %s; failed %d request(s)", reason, len(jobs))

    # -- outcomes -------------------------------------------------------------------------
    def _on_response(self, conn: _WorkerConn, resp: reward_pb2.ScoreResponse) -> None:
        job = conn.pending.get(resp.request_id)
        if job is None:
            self._counters["late_answers"] += 1  # answered after a timeout/resend: drop (exactly once)
            return
        conn.release(job)
        self._wake.set()
        if job.call.done or job.done:
            self._counters["late_answers"] += 1
            return
        if resp.worker_id:
            conn.worker_id = resp.worker_id
        if resp.HasField("error") and resp.error.code != 0:
            code = _CODES.get(resp.error.code, grpc.StatusCode.UNKNOWN)
            conn.errors += 1
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                self._counters["invalid"] += 1
                job.done = True
                job.call.fail(InvalidRequestError(job.call.request_id, resp.error.message, conn.address))
            elif code in RETRIABLE_CODES:
                self._retry(job, conn, f"{code.name}: {resp.error.message}")
            else:
                self._counters["failures"] += 1
                job.done = True
                job.call.fail(RewardServiceError(
                    f"request {job.call.request_id!r} failed on worker {conn.address}: {code.name}: {resp.error.message}"))
            return
        if len(resp.rewards) != job.n_items:
            self._retry(job, conn, f"worker answered {len(resp.rewards)} rewards for {job.n_items} items")
            return
        conn.latencies_ms.append((time.perf_counter() - job.sent_at) * 1e3)
        conn.items += job.n_items
        conn.fail_streak = 0
        conn.answered_on_stream = True
        self._no_worker_since = None
        job.done = True
        job.call.complete_part(job.index, [
            RewardResult(reward=r.reward, components=dict(r.components), label=r.label,
                         model_version=r.model_version or resp.model_version, worker_id=resp.worker_id, cached=r.cached)
            for r in resp.rewards])

    def _on_timeout(self, conn: _WorkerConn, job: _Job) -> None:
        if conn.pending.get(job.wire_id) is not job:
            return
        job.timer = None
        conn.release(job)
        conn.errors += 1
        # A worker that missed a deadline still holds that work; rest it a backoff so it is not
        # mistaken for an idle (least-loaded) one and handed the next request at once.
        conn.broken_until = max(conn.broken_until, time.monotonic() + self._cfg_backoff_s)
        self._counters["timeouts"] += 1
        stuck = conn.write_stuck(job)
        reason = (f"DEADLINE_EXCEEDED: the stream took no data within {self._cfg_deadline_s:g}s" if stuck else
                  f"DEADLINE_EXCEEDED: no answer within {self._cfg_deadline_s:g}s")
        self._retry(job, conn, reason)
        if stuck:  # the dispatcher waits on that write: end the stream, which ends the write
            conn._break(conn.call, reason)
        self._wake.set()

    def _resend_all(self, conn: _WorkerConn, reason: str) -> None:
        # A stream that never answered (a dead or unreachable address, a worker being replaced) costs its requests
        # no attempt: waiting for a worker is bounded by no_worker_wait_s instead. A stream that was answering and
        # broke (the worker died under its requests) costs each one attempt, so a request that kills every worker
        # it reaches still ends after retry_budget resends.
        for job in list(conn.pending.values()):
            conn.release(job)
            self._retry(job, conn, reason, charge=conn.answered_on_stream)
        self._wake.set()

    def _retry(self, job: _Job, conn: _WorkerConn, reason: str, charge: bool = True) -> None:
        if job.call.done or job.done:
            return
        job.errors.append(f"{conn.address}: {reason}")
        del job.errors[:-20]
        job.excluded.add(conn.address)
        job.attempts += int(charge)
        if job.attempts > self._cfg_retry_budget:
            self._give_up(job)
            return
        self._counters["retries"] += 1
        self._queue.appendleft(job)  # resends go first
        self._wake.set()

    def _give_up(self, job: _Job) -> None:
        self._counters["failures"] += 1
        job.done = True
        job.call.fail(RewardUnavailableError([job.call.request_id], job.errors, job.attempts))

    async def _stats(self) -> Dict[str, Any]:
        c = self._counters
        return {
            "requests": c["requests"], "items": c["items"], "retries": c["retries"],
            "failures": c["failures"], "timeouts": c["timeouts"], "late_answers": c["late_answers"],
            "invalid": c["invalid"], "workers_left": c["workers_left"], "queued": len(self._queue),
            "no_worker_wait_s": self._no_worker_wait_total,
            "no_worker_for_s": 0.0 if self._no_worker_since is None else time.monotonic() - self._no_worker_since,
            "no_worker_wait_bound_s": self._cfg_no_worker_wait_s,
            "workers": {addr: conn.stats() for addr, conn in self._conns.items()},
        }

    async def _known(self) -> List[str]:
        return sorted(self._conns)

    async def _shutdown(self) -> None:
        tasks = list(getattr(self, "_tasks", []))
        for t in tasks:
            t.cancel()
        self._fail_unanswered(RewardClientClosed("the reward client was closed before the request was answered"),
                              count_failures=False)
        for conn in list(self._conns.values()):  # nothing is pending any more: close() resends nothing
            reader = await conn.close("the reward client closed")
            if reader is not None:
                tasks.append(reader)
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.01)  # let grpc's own per-call tasks see their cancellation before the loop stops
