"""One reward worker's gRPC server: the ``RewardService`` (Score, ScoreStream, Info) over a scorer.

:class:`RewardServer` runs on an asyncio event loop (``grpc.aio``): it validates requests,
answers repeats from the reward cache, hands the rest to the :class:`DynamicBatcher` and
answers each request when its items are scored. It also serves the standard gRPC health
service (SERVING after start, NOT_SERVING while shutting down). :class:`ServerThread` runs a
RewardServer on its own event loop in a background thread for synchronous callers (Ray actors,
tests, benchmarks).

Status codes: INVALID_ARGUMENT (bad request, undecodable protobuf bytes, a request_id already in
flight on the stream; the message says what), RESOURCE_EXHAUSTED (queue full, the server's decode
budget full, a unary caller over its per-connection caps, or a message over ``max_message_bytes``),
INTERNAL (the scorer failed on the batch), UNAVAILABLE (shutting down), UNAUTHENTICATED (token).
On ScoreStream a failed request gets a response with ``error`` set and the stream stays open; two
things end a stream instead: a message whose request_id cannot be recovered (the requests in flight
are answered first, then the stream ends INVALID_ARGUMENT with the parser's reason), and a message
over ``max_message_bytes`` (grpc refuses it unread and ends the stream RESOURCE_EXHAUSTED).

Per-client bounds: a stream is read only while it has room under ``max_stream_requests``
(unanswered requests, including answers the client has not read), ``max_client_items`` and
``max_client_decoded_bytes``; otherwise the server stops reading and HTTP/2 flow control holds the
sender back. Unary calls are counted per connection and refused RESOURCE_EXHAUSTED over those caps.
The batcher serves clients round-robin.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from vlmrl.reward_workers.aio_loop import shared_loop
from vlmrl.reward_workers.batcher import BatcherClosed, DynamicBatcher, QueueFull, ScorerFailed
from vlmrl.reward_workers.cache import RewardCache, item_digest
from vlmrl.reward_workers.frames import InvalidInput, is_compressed
from vlmrl.reward_workers.proto import reward_pb2
from vlmrl.reward_workers.scorers.base import Scorer
from vlmrl.reward_workers.security import TokenAuthInterceptor, check_server_security, server_credentials
from vlmrl.reward_workers.stats import WorkerStats
from vlmrl.reward_workers.validation import RequestLimits, check_request_header, decode_request_items

log = logging.getLogger(__name__)

# Requests with more items than this are decoded, digested and answered on worker threads (see RewardServer._decode).
_OFFLOAD_ITEMS = 32
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


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def salvage_request_id(raw: bytes) -> str | None:
    """The ``request_id`` (field 1) of a ScoreRequest that does not parse as a whole, when the top-level fields in
    front of it are intact and it is valid UTF-8; else None. Lets a stream answer the bad request by its id."""
    pos = 0
    try:
        while pos < len(raw):
            key, pos = _varint(raw, pos)
            field_no, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(raw, pos)
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            elif wire == 2:
                length, pos = _varint(raw, pos)
                if pos + length > len(raw):
                    return None
                if field_no == 1:
                    return raw[pos:pos + length].decode("utf-8") or None
                pos += length
            else:  # groups (or garbage): give up rather than guess
                return None
    except (IndexError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return None


INVALID = grpc.StatusCode.INVALID_ARGUMENT


def parse_message(cls, raw: bytes):
    """``cls.FromString(raw)``, or RequestError(INVALID_ARGUMENT) saying why the bytes are not a ``cls``."""
    try:
        return cls.FromString(raw)
    except DecodeError as e:
        raise RequestError(INVALID, f"cannot parse {cls.DESCRIPTOR.name} ({len(raw)} bytes): {e}") from None


class ClientBudget:
    """What one client of the reward service has in flight, against the per-client caps of ``ServerConfig``.

    A client is one ScoreStream, or the unary calls of one connection. ``requests`` counts requests read and
    not yet answered on the wire (streams) or running (unary); ``items``/``nbytes`` the items and bytes (the
    received message plus its decoded frames) being decoded, queued or scored. Streams wait for room before
    reading on (:meth:`wait_for_room`).
    """

    __slots__ = ("requests", "items", "nbytes", "_changed")

    def __init__(self) -> None:
        self.requests = 0
        self.items = 0
        self.nbytes = 0
        self._changed: asyncio.Event | None = None

    def full(self, max_requests: int, max_items: int, max_bytes: int) -> bool:
        return (self.requests >= max_requests or (self.items > 0 and self.items >= max_items)
                or (self.nbytes > 0 and self.nbytes >= max_bytes))

    def changed(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_for_room(self, max_requests: int, max_items: int, max_bytes: int) -> None:
        while self.full(max_requests, max_items, max_bytes):
            if self._changed is None:
                self._changed = asyncio.Event()
            self._changed.clear()
            await self._changed.wait()


class _RewardServicer:
    """The RewardService RPCs on raw bytes: the servicer parses each message itself, so an undecodable message is
    answered INVALID_ARGUMENT with the parser's reason (grpc's own deserializer would answer UNKNOWN, or end a
    stream with OK). All scoring work is in RewardServer.score_request."""

    def __init__(self, server: "RewardServer") -> None:
        self._server = server

    def handlers(self) -> grpc.GenericRpcHandler:
        out = reward_pb2.ScoreResponse.SerializeToString
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            "Score": grpc.unary_unary_rpc_method_handler(self.Score, response_serializer=out),
            "ScoreStream": grpc.stream_stream_rpc_method_handler(self.ScoreStream, response_serializer=out),
            "Info": grpc.unary_unary_rpc_method_handler(
                self.Info, response_serializer=reward_pb2.InfoResponse.SerializeToString),
        })

    async def Score(self, raw: bytes, context):
        srv = self._server
        peer = context.peer()
        try:
            request = parse_message(reward_pb2.ScoreRequest, raw)
        except RequestError as e:
            srv.stats.invalid_requests += 1
            await context.abort(e.code, e.message)
        budget = srv.connections.setdefault(peer, ClientBudget())
        budget.requests += 1
        try:
            return await srv.score_request(request, budget, enforce_client_caps=True, wire_bytes=len(raw))
        except RequestError as e:
            await context.abort(e.code, e.message)
        finally:
            budget.requests -= 1
            if not budget.requests:
                srv.connections.pop(peer, None)

    async def ScoreStream(self, request_iterator, context) -> AsyncIterator[reward_pb2.ScoreResponse]:
        srv = self._server
        caps = srv.stream_caps
        budget = ClientBudget()
        out: asyncio.Queue = asyncio.Queue()  # (response, request_id to release once written) or None at the end
        handlers: set[asyncio.Task] = set()
        in_flight: set[str] = set()  # request ids read and not yet answered (freed as the answer is handed to grpc)
        fatal: list[tuple[grpc.StatusCode, str]] = []  # why the stream ends non-OK (after answering what it read)

        async def handle(request, wire_bytes: int):
            out.put_nowait((await srv.score_or_error(request, budget, wire_bytes), request.request_id or None))

        def refuse(request_id: str, message: str) -> None:
            srv.stats.invalid_requests += 1
            out.put_nowait((srv.error_response(request_id, grpc.StatusCode.INVALID_ARGUMENT, message), None))

        async def read_all():
            try:
                while True:
                    await budget.wait_for_room(*caps)  # at a cap: stop reading, flow control holds the sender
                    try:
                        raw = await request_iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    budget.requests += 1
                    try:
                        request = parse_message(reward_pb2.ScoreRequest, raw)
                    except RequestError as e:
                        request_id = salvage_request_id(raw)
                        if request_id is None or request_id in in_flight:
                            budget.requests -= 1
                            srv.stats.invalid_requests += 1
                            fatal.append((INVALID, f"{e.message}; its request_id cannot be recovered, so the stream "
                                                   f"ends after answering the {len(in_flight)} requests in flight"))
                            break
                        refuse(request_id, f"request {request_id!r}: {e.message}")
                        continue
                    request_id = request.request_id
                    if request_id in in_flight:
                        refuse(request_id, f"request {request_id!r}: request_id is already in flight on this "
                                           f"stream; ids must be unique among unanswered requests")
                        continue
                    if request_id:
                        in_flight.add(request_id)
                    t = asyncio.create_task(handle(request, len(raw)))
                    handlers.add(t)
                    t.add_done_callback(handlers.discard)
                    await asyncio.sleep(0)  # let it count its items and bytes against the budget before reading on
            except Exception as e:  # the call broke while reading (its status is grpc's then) or a bug
                log.debug("ScoreStream read failed", exc_info=True)
                fatal.append((grpc.StatusCode.INTERNAL, f"reading the stream failed: {type(e).__name__}: {e}"))
            finally:
                if handlers:
                    await asyncio.gather(*list(handlers), return_exceptions=True)
                out.put_nowait(None)

        reader = asyncio.create_task(read_all())
        try:
            while (entry := await out.get()) is not None:
                response, request_id = entry
                if request_id is not None:  # free the id before the answer can reach the client: a client that
                    in_flight.discard(request_id)  # reuses it once answered must never be refused (seen under load)
                yield response  # returns once grpc has taken the answer
                budget.requests -= 1
                budget.changed()
            if fatal:
                context.set_code(fatal[0][0])
                context.set_details(fatal[0][1])
        finally:
            reader.cancel()
            for t in list(handlers):
                t.cancel()

    async def Info(self, raw: bytes, context):
        try:
            parse_message(reward_pb2.InfoRequest, raw)
        except RequestError as e:
            await context.abort(e.code, e.message)
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
        check_server_security(server_cfg)  # one-line SecurityConfigError before anything starts
        self.limits = RequestLimits.from_config(server_cfg)
        self.stream_caps = (int(server_cfg.max_stream_requests), int(server_cfg.max_client_items),
                            int(server_cfg.max_client_decoded_bytes))
        """(requests, items, bytes received + decoded) one client may have in flight."""
        self.max_decoded_bytes = int(server_cfg.max_decoded_bytes)
        self.decoded_bytes = 0
        """Bytes (received messages + decoded frames) of all requests being decoded, queued or scored now."""
        self.connections: dict[str, ClientBudget] = {}
        """Budgets of the unary callers, by peer (one per connection), while they have calls running."""
        self.stats = WorkerStats()
        self.cache = RewardCache(int(server_cfg.cache_size or 0))
        self.batcher = DynamicBatcher(scorer, max_batch=int(server_cfg.max_batch),
                                      max_wait_ms=float(server_cfg.max_wait_ms),
                                      max_queue_items=int(server_cfg.max_queue_items),
                                      cache=self.cache, stats=self.stats,
                                      fixed_batch_size=int(server_cfg.fixed_batch_size))
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
        interceptors = [TokenAuthInterceptor(self.cfg.auth_token)] if self.cfg.auth_token is not None else []
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[("grpc.max_receive_message_length", max_bytes),
                     ("grpc.max_send_message_length", max_bytes),
                     ("grpc.max_concurrent_streams", int(self.cfg.max_connection_streams)),
                     # count open HTTP/2 streams, not streams not yet freed: with gRPC core's default overload
                     # protection a call sent the moment an earlier one ends is refused (RST_STREAM
                     # REFUSED_STREAM -> UNAVAILABLE) instead of waiting on the client as documented
                     ("grpc.http.overload_protection", 0),
                     ("grpc.so_reuseport", 0)],
        )
        server.add_generic_rpc_handlers((_RewardServicer(self).handlers(),))
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
        if self.cfg.auth_token is None and str(self.cfg.host) not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            log.warning("reward worker %s serves %s without auth (server.auth_token is null); set a token, and "
                        "server.require_auth=true to make a missing token a start-up error", self.worker_id,
                        self._address)
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

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _decode_and_digest(self, request: reward_pb2.ScoreRequest):
        items = decode_request_items(request, self.scorer, self.limits)
        return items, ([item_digest(it) for it in items] if self.cache.enabled else None)

    async def _decode(self, request: reward_pb2.ScoreRequest):
        """The request's items and their cache digests; PNG/JPEG and large requests on a worker thread, so one
        client's big request does not hold the event loop (and every other client) for its whole decode."""
        if len(request.items) > _OFFLOAD_ITEMS or any(is_compressed(item) for item in request.items):
            return await asyncio.to_thread(self._decode_and_digest, request)
        return self._decode_and_digest(request)

    def _response(self, request_id: str, outcomes) -> reward_pb2.ScoreResponse:
        return reward_pb2.ScoreResponse(
            request_id=request_id, scorer=self.scorer.name,
            model_version=outcomes[-1].model_version if outcomes else self.scorer.model_version,
            worker_id=self.worker_id,
            rewards=[reward_pb2.ItemReward(reward=o.result.reward, components=o.result.components,
                                           label=o.result.label, cached=o.cached, model_version=o.model_version)
                     for o in outcomes],
        )

    def _admit(self, request_id: str, n_items: int, nbytes: int, client: ClientBudget,
               enforce_client_caps: bool) -> None:
        """RESOURCE_EXHAUSTED when the server's decode budget, or the client's caps, cannot take this request now."""
        if self.decoded_bytes and self.decoded_bytes + nbytes > self.max_decoded_bytes:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"request {request_id!r}: the server holds {self.decoded_bytes} bytes of requests "
                               f"(received + decoded), "
                               f"this request adds {nbytes}, limit max_decoded_bytes = {self.max_decoded_bytes}; "
                               f"retry later or elsewhere")
        _, max_items, max_bytes = self.stream_caps
        if enforce_client_caps and client.items and (client.items + n_items > max_items
                                                     or client.nbytes + nbytes > max_bytes):
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"request {request_id!r}: this connection has {client.items} items "
                               f"({client.nbytes} bytes received + decoded) in flight, this request adds {n_items} "
                               f"({nbytes}), limits max_client_items = {max_items}, max_client_decoded_bytes = "
                               f"{max_bytes}; wait for answers or use a stream")

    async def score_request(self, request: reward_pb2.ScoreRequest, client: ClientBudget | None = None,
                            enforce_client_caps: bool = False, wire_bytes: int = 0) -> reward_pb2.ScoreResponse:
        """Validate, score (via cache + batcher) and answer one request; raises RequestError.

        ``client`` is the caller's budget (its items/bytes are counted while in flight, and it keys the batcher's
        fair share); with ``enforce_client_caps`` a request over the client's caps is RESOURCE_EXHAUSTED (unary
        calls; streams are held back before reading instead)."""
        t0 = time.perf_counter()
        client = client if client is not None else ClientBudget()
        self.stats.requests += 1
        self.stats.in_flight_requests += 1
        reserved = None
        try:
            if self._stopping:
                raise RequestError(grpc.StatusCode.UNAVAILABLE, "reward worker is shutting down")
            try:
                nbytes = check_request_header(request, self.scorer, self.limits) + wire_bytes
            except InvalidInput as e:
                self.stats.invalid_requests += 1
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            try:
                self._admit(request.request_id, len(request.items), nbytes, client, enforce_client_caps)
            except RequestError:
                self.stats.rejected_requests += 1
                raise
            reserved = (len(request.items), nbytes)
            self.decoded_bytes += nbytes
            client.items += len(request.items)
            client.nbytes += nbytes
            try:
                items, digests = await self._decode(request)
            except InvalidInput as e:
                self.stats.invalid_requests += 1
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            self.stats.items += len(items)
            try:
                outcomes = await self.batcher.submit(request.task, items, client=client, digests=digests)
            except QueueFull as e:
                self.stats.rejected_requests += 1
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)) from None
            except ScorerFailed as e:
                self.stats.failed_requests += 1
                raise RequestError(grpc.StatusCode.INTERNAL, str(e)) from None
            except BatcherClosed as e:
                raise RequestError(grpc.StatusCode.UNAVAILABLE, str(e)) from None
            if len(outcomes) > _OFFLOAD_ITEMS:
                response = await asyncio.to_thread(self._response, request.request_id, outcomes)
            else:
                response = self._response(request.request_id, outcomes)
            self.stats.record_latency((time.perf_counter() - t0) * 1000.0)
            return response
        finally:
            self.stats.in_flight_requests -= 1
            if reserved is not None:
                self.decoded_bytes -= reserved[1]
                client.items -= reserved[0]
                client.nbytes -= reserved[1]
                client.changed()

    async def score_or_error(self, request: reward_pb2.ScoreRequest, client: ClientBudget | None = None,
                             wire_bytes: int = 0) -> reward_pb2.ScoreResponse:
        """Like :meth:`score_request`, but a failure becomes a response with ``error`` set (for streams)."""
        try:
            return await self.score_request(request, client, wire_bytes=wire_bytes)
        except RequestError as e:
            code, message = e.code, e.message
        except Exception as e:  # a bug must not kill the stream
            log.exception("unexpected error scoring request %r", request.request_id)
            code, message = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
        return self.error_response(request.request_id, code, message)

    def error_response(self, request_id: str, code: grpc.StatusCode, message: str) -> reward_pb2.ScoreResponse:
        """A stream's answer for a failed request: ``error`` set, no rewards."""
        return reward_pb2.ScoreResponse(request_id=request_id, scorer=self.scorer.name, worker_id=self.worker_id,
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
