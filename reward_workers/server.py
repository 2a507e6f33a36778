"""One reward worker's gRPC server: the ``RewardService`` (Score, ScoreStream, Info) over a scorer.

:class:`RewardServer` runs on an asyncio event loop (``grpc.aio``): it validates requests,
answers repeats from the reward cache, hands the rest to the :class:`DynamicBatcher` and
answers each request when its items are scored. It also serves the standard gRPC health
service (SERVING after start, NOT_SERVING while shutting down). :class:`ServerThread` runs a
RewardServer on its own event loop in a background thread for synchronous callers (Ray actors,
tests, benchmarks).

Status codes: INVALID_ARGUMENT (bad request; message says what), RESOURCE_EXHAUSTED (queue
full, or a message over ``max_message_bytes``), INTERNAL (the scorer failed on the batch),
UNAVAILABLE (shutting down), UNAUTHENTICATED (token). On ScoreStream a failed request gets a
response with ``error`` set and the stream stays open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from vlmrl.reward_workers.aio_loop import shared_loop
from vlmrl.reward_workers.batcher import BatcherClosed, DynamicBatcher, QueueFull, ScorerFailed
from vlmrl.reward_workers.cache import RewardCache
from vlmrl.reward_workers.frames import InvalidInput, is_compressed
from vlmrl.reward_workers.proto import reward_pb2, reward_pb2_grpc
from vlmrl.reward_workers.scorers.base import Scorer
from vlmrl.reward_workers.security import TokenAuthInterceptor, server_credentials
from vlmrl.reward_workers.stats import WorkerStats
from vlmrl.reward_workers.validation import RequestLimits, check_request_header, decode_request_items

log = logging.getLogger(__name__)

# Seconds a stopping server keeps connections open after its last request is answered, so the answers reach the wire.
_FLUSH_S = 0.1

SERVICE_NAME = reward_pb2.DESCRIPTOR.services_by_name["RewardService"].full_name


class RequestError(Exception):
    """A request failed with a gRPC status code and a message for the caller."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class _RewardServicer(reward_pb2_grpc.RewardServiceServicer):
    """The RewardService RPCs; all the work is in RewardServer.score_request."""

    def __init__(self, server: "RewardServer") -> None:
        self._server = server

    async def Score(self, request, context):
        try:
            return await self._server.score_request(request)
        except RequestError as e:
            await context.abort(e.code, e.message)

    async def ScoreStream(self, request_iterator, context) -> AsyncIterator[reward_pb2.ScoreResponse]:
        out: asyncio.Queue = asyncio.Queue()
        handlers: set[asyncio.Task] = set()

        async def handle(request):
            out.put_nowait(await self._server.score_or_error(request))

        async def read_all():
            try:
                async for request in request_iterator:
                    t = asyncio.create_task(handle(request))
                    handlers.add(t)
                    t.add_done_callback(handlers.discard)
                if handlers:
                    await asyncio.gather(*list(handlers), return_exceptions=True)
            finally:
                out.put_nowait(None)

        reader = asyncio.create_task(read_all())
        try:
            while (response := await out.get()) is not None:
                yield response
        finally:
            reader.cancel()
            for t in list(handlers):
                t.cancel()

    async def Info(self, request, context):
        return self._server.info()


class RewardServer:
    """A reward worker's gRPC server around one scorer (see the module docstring).

    ``server_cfg`` is the ``server`` section of the config (DictConfig or ``ServerConfig``).
    Create and use it on one asyncio event loop; :class:`ServerThread` does that for sync code.
    """

    def __init__(self, server_cfg: Any, scorer: Scorer, worker_id: str) -> None:
        self.cfg = server_cfg
        self.scorer = scorer
        self.worker_id = str(worker_id)
        self.limits = RequestLimits.from_config(server_cfg)
        self.stats = WorkerStats()
        self.cache = RewardCache(int(server_cfg.cache_size or 0))
        self.batcher = DynamicBatcher(scorer, max_batch=int(server_cfg.max_batch),
                                      max_wait_ms=float(server_cfg.max_wait_ms),
                                      max_queue_items=int(server_cfg.max_queue_items),
                                      cache=self.cache, stats=self.stats)
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._address: str | None = None
        self._stopping = False
        self._stop_task: asyncio.Future | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        """The bound ``host:port`` (after :meth:`start`)."""
        if self._address is None:
            raise RuntimeError("server not started")
        return self._address

    async def start(self) -> str:
        """Bind ``server.host:server.port`` (port 0 picks one), start serving and return the address."""
        if self._server is not None:
            return self.address
        max_bytes = int(self.cfg.max_message_bytes)
        interceptors = [TokenAuthInterceptor(self.cfg.auth_token)] if self.cfg.auth_token else []
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[("grpc.max_receive_message_length", max_bytes),
                     ("grpc.max_send_message_length", max_bytes),
                     ("grpc.so_reuseport", 0)],
        )
        reward_pb2_grpc.add_RewardServiceServicer_to_server(_RewardServicer(self), server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        bind = _format_address(str(self.cfg.host), int(self.cfg.port))
        creds = server_credentials(self.cfg.tls)
        port = server.add_secure_port(bind, creds) if creds is not None else server.add_insecure_port(bind)
        if not port:
            raise RuntimeError(f"cannot bind reward server to {bind}")
        self.batcher.start()
        await server.start()
        self._server = server
        self._address = _format_address(str(self.cfg.host), port)
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("reward worker %s serving scorer %s on %s", self.worker_id, self.scorer.name, self._address)
        return self._address

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within ``grace_s`` (default ``server.grace_s``), then cancel.

        Idempotent and safe to call concurrently: every caller awaits the same shutdown.
        """
        if self._server is None:
            return
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._shutdown(grace_s))
        await asyncio.shield(self._stop_task)

    async def _shutdown(self, grace_s: float | None) -> None:
        grace = float(self.cfg.grace_s if grace_s is None else grace_s)
        self._stopping = True  # from here on score_request answers new requests UNAVAILABLE
        await self._health.enter_graceful_shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.stats.in_flight_requests > 0 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        # Exactly one grpc shutdown call: with grpcio 1.85.1 a second Server.stop() while the first
        # is still running segfaulted in grpc's shutdown path (~1 round in 15 of
        # tests/reward_workers/test_shared_loop.py). The short grace lets answers already computed
        # reach the wire; idle streams and health watches are then cancelled.
        await self._server.stop(max(0.0, min(_FLUSH_S, deadline - loop.time())))
        await self.batcher.close()
        try:
            self.scorer.close()
        except Exception:  # closing must not hide a clean shutdown
            log.exception("scorer.close() failed")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    # ------------------------------------------------------------------ requests

    async def _decode(self, request: reward_pb2.ScoreRequest):
        check_request_header(request, self.scorer, self.limits)
        if any(is_compressed(item) for item in request.items):  # PNG/JPEG decoding: keep the loop free
            return await asyncio.to_thread(decode_request_items, request, self.scorer, self.limits)
        return decode_request_items(request, self.scorer, self.limits)

    async def score_request(self, request: reward_pb2.ScoreRequest) -> reward_pb2.ScoreResponse:
        """Validate, score (via cache + batcher) and answer one request; raises RequestError."""
        t0 = time.perf_counter()
        self.stats.requests += 1
        self.stats.in_flight_requests += 1
        try:
            if self._stopping:
                raise RequestError(grpc.StatusCode.UNAVAILABLE, "reward worker is shutting down")
            try:
                items = await self._decode(request)
            except InvalidInput as e:
                self.stats.invalid_requests += 1
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            self.stats.items += len(items)
            try:
                outcomes = await self.batcher.submit(request.task, items)
            except QueueFull as e:
                self.stats.rejected_requests += 1
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)) from None
            except ScorerFailed as e:
                self.stats.failed_requests += 1
                raise RequestError(grpc.StatusCode.INTERNAL, str(e)) from None
            except BatcherClosed as e:
                raise RequestError(grpc.StatusCode.UNAVAILABLE, str(e)) from None
            response = reward_pb2.ScoreResponse(
                request_id=request.request_id, scorer=self.scorer.name,
                model_version=outcomes[-1].model_version if outcomes else self.scorer.model_version,
                worker_id=self.worker_id,
                rewards=[reward_pb2.ItemReward(reward=o.result.reward, components=o.result.components,
                                               label=o.result.label, cached=o.cached, model_version=o.model_version)
                         for o in outcomes],
            )
            self.stats.record_latency((time.perf_counter() - t0) * 1000.0)
            return response
        finally:
            self.stats.in_flight_requests -= 1

    async def score_or_error(self, request: reward_pb2.ScoreRequest) -> reward_pb2.ScoreResponse:
        """Like :meth:`score_request`, but a failure becomes a response with ``error`` set (for streams)."""
        try:
            return await self.score_request(request)
        except RequestError as e:
            code, message = e.code, e.message
        except Exception as e:  # a bug must not kill the stream
            log.exception("unexpected error scoring request %r", request.request_id)
            code, message = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
        return reward_pb2.ScoreResponse(request_id=request.request_id, scorer=self.scorer.name,
                                        worker_id=self.worker_id,
                                        error=reward_pb2.Error(code=code.value[0], message=message))

    async def update_weights(self, version: str, state: bytes) -> str:
        """Hot swap: hand new weights to the scorer on its own thread, between two batches; returns the new version.

        Requests keep flowing: items already in a running batch are answered by the old version,
        the next batch by the new one, and each answer names the version that produced it.
        """
        await self.batcher.run_in_scorer_thread(self.scorer.update_weights, str(version), bytes(state))
        log.info("reward worker %s now serves model version %s", self.worker_id, self.scorer.model_version)
        return self.scorer.model_version

    def info(self) -> reward_pb2.InfoResponse:
        """Scorer, model and batching statistics of this worker."""
        return reward_pb2.InfoResponse(
            worker_id=self.worker_id, scorer=self.scorer.name, item_kind=self.scorer.item_kind.value,
            model_id=self.scorer.model_id, model_version=self.scorer.model_version,
            stats=self.stats.to_proto(queue_depth=self.batcher.queue_depth, cache_hits=self.cache.hits,
                                      cache_misses=self.cache.misses, max_batch=self.batcher.max_batch,
                                      max_wait_ms=self.batcher.max_wait_s * 1000.0),
        )


class ServerThread:
    """Runs a :class:`RewardServer` on the process's shared gRPC event loop thread (see
    :mod:`vlmrl.reward_workers.aio_loop`), for synchronous callers.

    Usage::

        with ServerThread(cfg.server, scorer, "w0") as srv:
            stub = RewardServiceStub(grpc.insecure_channel(srv.address))
    """

    def __init__(self, server_cfg: Any, scorer: Scorer, worker_id: str) -> None:
        self._args = (server_cfg, scorer, worker_id)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.server: RewardServer | None = None

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, timeout: float = 60.0) -> str:
        """Start the loop thread and the server; returns the bound address."""
        if self.server is not None:
            return self.server.address
        self._loop = shared_loop()

        async def create_and_start():
            server = RewardServer(*self._args)
            await server.start()
            return server

        self.server = self._call(create_and_start(), timeout)
        return self.server.address

    @property
    def address(self) -> str:
        if self.server is None:
            raise RuntimeError("server thread not started")
        return self.server.address

    def info(self) -> reward_pb2.InfoResponse:
        async def get():
            return self.server.info()
        return self._call(get(), 10.0)

    def update_weights(self, version: str, state: bytes, timeout: float | None = 120.0) -> str:
        """:meth:`RewardServer.update_weights` from a synchronous caller; returns the version now served."""
        if self.server is None:
            raise RuntimeError("server thread not started")
        return self._call(self.server.update_weights(version, state), timeout)

    def stop(self, grace_s: float | None = None) -> None:
        """Graceful stop (see :meth:`RewardServer.stop`); the shared loop keeps running for others."""
        if self.server is None:
            return
        try:
            self._call(self.server.stop(grace_s))
        finally:
            self.server = None

    def __enter__(self) -> "ServerThread":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
