"""The reward-service client: actors and offline labelling send frames here and get rewards back.

:class:`RewardClient` keeps one channel and one ``ScoreStream`` open per reward worker and
spreads requests over the workers it knows (a static address list, or a registry it re-reads
every ``discovery_interval_s``):

* each request goes to the least-loaded worker (fewest outstanding items *from this client*),
  with at most ``max_in_flight`` requests pipelined per worker;
* item lists longer than ``max_items_per_request``, or whose wire request would pass
  ``max_message_bytes``, are split into several wire requests; a single item too large for any wire
  request fails its call at once with :class:`RequestTooLargeError` (an :class:`InvalidRequestError`), unsent;
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
process); the public API is thread-safe and synchronous (:meth:`RewardClient.score`) or future-based
(:meth:`RewardClient.submit`, :meth:`RewardClient.score_many`).

This module is the facade. The work is split by job: :mod:`~vlmrl.reward_workers.client_types` (the results and
errors a caller sees, re-exported here), :mod:`~vlmrl.reward_workers.client_wire` (items <-> protobuf, splitting),
:mod:`~vlmrl.reward_workers.client_connection` (one worker's channel and stream),
:mod:`~vlmrl.reward_workers.client_dispatch` (routing, retries, waiting for workers) and
:mod:`~vlmrl.reward_workers.client_discovery` (reading the registry).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import uuid
from typing import Any, Dict, Iterable, List, Optional, Sequence

import grpc

from vlmrl.reward_workers.aio_loop import shared_loop
from vlmrl.reward_workers.client_connection import ConnectionListener, WorkerConnection
from vlmrl.reward_workers.client_discovery import RegistryDiscovery
from vlmrl.reward_workers.client_dispatch import Dispatcher
from vlmrl.reward_workers.client_jobs import Call, Job
from vlmrl.reward_workers.client_types import (
    InvalidRequestError,
    RequestTooLargeError,
    RewardClientClosed,
    RewardResult,
    RewardServiceError,
    RewardUnavailableError,
)
from vlmrl.reward_workers.client_wire import ItemTooLarge, split_request, to_items
from vlmrl.reward_workers.scorers.base import ItemKind

__all__ = ["RewardClient", "RewardResult", "RewardServiceError", "RewardUnavailableError", "InvalidRequestError",
           "RequestTooLargeError", "RewardClientClosed"]

_DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


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
        self._cfg_max_message_bytes = int(_cfg(client_cfg, "max_message_bytes", _DEFAULT_MAX_MESSAGE_BYTES))
        for name in ("_cfg_deadline_s", "_cfg_max_in_flight", "_cfg_max_items", "_cfg_discovery_s",
                     "_cfg_max_message_bytes"):
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
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]
        self._closed = False
        self._discovery = (RegistryDiscovery(registry, timeout_s=max(5.0, 5 * self._cfg_discovery_s))
                           if registry is not None else None)
        self._dispatcher = Dispatcher(self._connect, retry_budget=self._cfg_retry_budget,
                                      no_worker_wait_s=self._cfg_no_worker_wait_s, addresses=addresses,
                                      discovery=self._discovery, discovery_interval_s=self._cfg_discovery_s)

        self._loop = shared_loop()  # one loop per process for all gRPC work (see aio_loop)
        asyncio.run_coroutine_threadsafe(self._dispatcher.start(), self._loop).result()

    # ------------------------------------------------------------------ public API (any thread)
    def submit(self, task: str, items: Sequence[Any], kind: ItemKind | str = ItemKind.FRAME,
               request_id: Optional[str] = None) -> concurrent.futures.Future:
        """Send one request; the future resolves to one :class:`RewardResult` per item, same order.

        A request with an item too large for one wire request (``client.max_message_bytes``) is not sent: its
        future fails at once with :class:`RequestTooLargeError`."""
        if self._closed:
            raise RewardClientClosed("the reward client is closed")
        if not isinstance(task, str) or not task:
            raise ValueError("task must be a non-empty string")
        pb_items = to_items(items, kind)
        if not pb_items:
            raise ValueError("a request needs at least one item")
        rid = request_id or f"{self._prefix}-{next(self._ids)}"
        try:
            requests = split_request(rid, task, self._scorer, pb_items, self._cfg_max_items,
                                     self._cfg_max_message_bytes)
        except ItemTooLarge as e:
            call = Call(rid, 1)
            err = RequestTooLargeError(rid, e.index, e.request_bytes, e.limit_bytes)
            self._loop.call_soon_threadsafe(self._dispatcher.reject, call, len(pb_items), err)
            return call.future
        call = Call(rid, len(requests))
        jobs = [Job(call, i, request) for i, request in enumerate(requests)]
        self._loop.call_soon_threadsafe(self._dispatcher.enqueue, jobs)
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
        return self._on_loop(self._dispatcher.stats)

    def workers(self) -> List[str]:
        """Addresses of the workers the client currently knows."""
        return self._on_loop(self._dispatcher.known)

    def close(self) -> None:
        """Close all streams and channels; unanswered requests fail with RewardClientClosed."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        finally:
            if self._discovery is not None:
                self._discovery.shutdown()

    def __enter__(self) -> "RewardClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ loop side
    def _on_loop(self, fn: Any) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _connect(self, address: str, worker_id: str, listener: ConnectionListener) -> WorkerConnection:
        return WorkerConnection(address, worker_id, listener, channel_factory=self._make_channel,
                                metadata=self._metadata, max_in_flight=self._cfg_max_in_flight,
                                deadline_s=self._cfg_deadline_s, backoff_s=self._cfg_backoff_s)

    def _make_channel(self, address: str) -> grpc.aio.Channel:
        from vlmrl.reward_workers.security import create_channel

        # Short reconnect backoff: a restarted worker at the same address is usable again quickly.
        options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 2000)]
        return create_channel(address, self._tls, aio=True, max_message_bytes=self._cfg_max_message_bytes,
                              options=options)

    async def _shutdown(self) -> None:
        await self._dispatcher.shutdown(
            RewardClientClosed("the reward client was closed before the request was answered"))
        await asyncio.sleep(0.01)  # let grpc's own per-call tasks see their cancellation before the loop stops
