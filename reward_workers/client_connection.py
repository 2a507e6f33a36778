"""The reward client's link to one reward worker: a gRPC channel, one open ``ScoreStream``, the wire requests
pending on it.

:class:`WorkerConnection` sends wire requests, reads answers, enforces each request's deadline (a stream has no
per-message deadline) and notices a broken stream. It knows nothing of retry policy: whatever happens to a request
is reported to its :class:`ConnectionListener` (the dispatcher, :mod:`vlmrl.reward_workers.client_dispatch`),
which decides where the request goes next. All methods run on the client's event loop.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence

import grpc
import numpy as np

from vlmrl.reward_workers.client_jobs import Job
from vlmrl.reward_workers.proto import reward_pb2, reward_pb2_grpc

_LATENCY_WINDOW = 1024
MAX_COOLDOWN_S = 2.0
"""Longest cool-down of a worker whose stream keeps failing (it is probed again after this)."""


class ConnectionListener(Protocol):
    """What a :class:`WorkerConnection` reports to (the dispatcher). Every callback runs on the event loop; a job
    handed to a callback is no longer pending on the connection."""

    def on_answer(self, conn: "WorkerConnection", job: Job, resp: reward_pb2.ScoreResponse) -> None:
        """The worker answered ``job`` (rewards, or a per-request error in ``resp.error``)."""

    def on_late_answer(self, conn: "WorkerConnection", resp: reward_pb2.ScoreResponse) -> None:
        """An answer for no request pending here (it timed out or was resent meanwhile): to be dropped."""

    def on_deadline(self, conn: "WorkerConnection", job: Job, reason: str) -> None:
        """``job`` got no answer within the deadline. If its write never finished, the connection breaks its stream
        right after this call (``on_unanswered`` follows)."""

    def on_unanswered(self, conn: "WorkerConnection", jobs: List[Job], reason: str) -> None:
        """The stream broke or the worker left (``conn.leaving``): ``jobs`` were pending on it and will never be
        answered here. ``conn.answered_on_stream`` says whether that stream had answered anything."""


class WorkerConnection:
    """One reward worker as the client sees it: channel, ``ScoreStream``, pending wire requests, statistics.

    Read by the dispatcher: ``address``, ``worker_id``, ``pending`` (wire id -> job), ``outstanding_items``,
    ``leaving``, ``broken_until`` (monotonic time before which it is cooling down), ``answered_on_stream``, and
    :meth:`usable` / :meth:`has_capacity`. A stream failure cools the worker down for ``backoff_s``, doubling with
    each failure in a row up to :data:`MAX_COOLDOWN_S`; an answer ends the streak (:meth:`note_answer`)."""

    def __init__(self, address: str, worker_id: str, listener: ConnectionListener, *,
                 channel_factory: Callable[[str], grpc.aio.Channel], metadata: Sequence[tuple] = (),
                 max_in_flight: int = 8, deadline_s: float = 30.0, backoff_s: float = 0.2) -> None:
        self.address = address
        self.worker_id = worker_id
        self._listener = listener
        self._channel_factory = channel_factory
        self._metadata = tuple(metadata)
        self._max_in_flight = max_in_flight
        self._deadline_s = deadline_s
        self._backoff_s = backoff_s
        self.channel: Optional[grpc.aio.Channel] = None
        self.call: Any = None  # the open StreamStreamCall, or None
        self.reader: Optional[asyncio.Task] = None
        self.writing: Optional[tuple[Job, asyncio.Task]] = None  # the write in progress on ``call``
        self.pending: Dict[str, Job] = {}
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
        return len(self.pending) < self._max_in_flight

    def note_answer(self, job: Job) -> None:
        """``job`` was answered with its rewards: the worker is up (ends its failure streak)."""
        self.latencies_ms.append((time.perf_counter() - job.sent_at) * 1e3)
        self.items += job.n_items
        self.fail_streak = 0
        self.answered_on_stream = True

    def note_error(self) -> None:
        """The worker answered a request with an error."""
        self.errors += 1

    # -- stream ----------------------------------------------------------------------------
    def _open(self) -> None:
        if self.channel is None:
            self.channel = self._channel_factory(self.address)
        stub = reward_pb2_grpc.RewardServiceStub(self.channel)
        call = stub.ScoreStream(metadata=self._metadata)
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
                job = self.pending.get(resp.request_id)
                if job is None:
                    self._listener.on_late_answer(self, resp)
                    continue
                self.release(job)
                self._listener.on_answer(self, job, resp)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as e:
            self._break(call, f"{e.code().name}: {e.details()}")
        except Exception as e:  # noqa: BLE001 - any stream failure means: resend elsewhere
            self._break(call, f"{type(e).__name__}: {e}")

    async def send(self, job: Job) -> None:
        """Write ``job`` on the stream (opening it if needed); its deadline starts now. Returns once the write
        finished or failed (a failed write breaks the stream: its pending jobs go back to the listener)."""
        if self.call is None:
            self._open()
        call = self.call
        loop = asyncio.get_running_loop()
        job.conn = self
        job.sent_at = time.perf_counter()
        job.timer = loop.call_later(self._deadline_s, self._deadline_passed, job)
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

    def write_stuck(self, job: Job) -> bool:
        """Whether ``job``'s write has not finished yet (its deadline passed while the stream took no data)."""
        return self.writing is not None and self.writing[0] is job

    def _end_write(self) -> None:
        if self.writing is not None:
            self.writing[1].cancel()
            self.writing = None

    def _deadline_passed(self, job: Job) -> None:
        if self.pending.get(job.wire_id) is not job:
            return
        job.timer = None
        self.release(job)
        self.errors += 1
        # A worker that missed a deadline still holds that work; rest it a backoff so it is not
        # mistaken for an idle (least-loaded) one and handed the next request at once.
        self.broken_until = max(self.broken_until, time.monotonic() + self._backoff_s)
        stuck = self.write_stuck(job)
        reason = (f"DEADLINE_EXCEEDED: the stream took no data within {self._deadline_s:g}s" if stuck else
                  f"DEADLINE_EXCEEDED: no answer within {self._deadline_s:g}s")
        self._listener.on_deadline(self, job, reason)
        if stuck:  # the dispatcher waits on that write: end the stream, which ends the write
            self._break(self.call, reason)

    def release(self, job: Job) -> None:
        """``job`` is no longer pending here (answered, timed out or moved)."""
        if self.pending.pop(job.wire_id, None) is job:
            self.outstanding_items -= job.n_items
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        if job.conn is self:
            job.conn = None

    def take_pending(self) -> List[Job]:
        """Every job pending here, released (the caller takes them over)."""
        jobs = list(self.pending.values())
        for job in jobs:
            self.release(job)
        return jobs

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
        """The stream failed: hand everything unanswered on it back to the listener and cool down (the cool-down
        doubles with each failure in a row, up to ``MAX_COOLDOWN_S``: a dead address is not retried every backoff)."""
        if call is not self.call:
            return  # an old stream; already handled
        self.errors += 1
        self.fail_streak += 1
        cooldown = min(MAX_COOLDOWN_S, self._backoff_s * 2 ** (self.fail_streak - 1))
        self.broken_until = time.monotonic() + cooldown
        self._stop_stream()
        self._listener.on_unanswered(self, self.take_pending(), reason)

    async def close(self, reason: str) -> Optional[asyncio.Task]:
        """This worker is gone (left the registry, or the client closes): end its stream, hand back what is pending
        on it, close its channel. Returns the cancelled reader task (see ``_stop_stream``)."""
        self.leaving = True
        reader = self._stop_stream()
        self._listener.on_unanswered(self, self.take_pending(), reason)
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
