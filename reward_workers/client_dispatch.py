"""The reward client's routing policy: which worker gets each wire request, resends, giving up, waiting when no
worker is usable, and the set of known workers (static, or re-read from the registry).

:class:`Dispatcher` owns the queue of wire requests (:class:`~vlmrl.reward_workers.client_jobs.Job`) and one
connection per known worker. It hands a job to the least-loaded usable worker and hears back through the
:class:`~vlmrl.reward_workers.client_connection.ConnectionListener` callbacks it implements:

* each request goes to the least-loaded worker (fewest outstanding items *from this client*) among those that
  have not failed it, with at most ``max_in_flight`` requests pipelined per worker (the connection's capacity);
* on a retriable error, a broken stream, a missed deadline or a worker leaving the registry, the unanswered
  requests are resent (first in the queue) to *another* worker; after ``retry_budget`` resends a request fails with
  :class:`RewardUnavailableError`; INVALID_ARGUMENT fails it at once with :class:`InvalidRequestError`;
* when no worker is usable, every queued and in-flight request waits, spending no retries, until a worker answers
  again or appears; once none has answered for ``no_worker_wait_s`` all of them fail together;
* exactly once: each caller request resolves once, late or duplicate answers are dropped.

Everything here runs on the client's event loop. The connections are made by a ``connect(address, worker_id,
listener)`` factory, so the policy can be exercised with fake connections (no gRPC).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import grpc

from vlmrl.reward_workers.client_connection import ConnectionListener
from vlmrl.reward_workers.client_discovery import RegistryDiscovery
from vlmrl.reward_workers.client_jobs import Call, Job
from vlmrl.reward_workers.client_types import InvalidRequestError, RewardServiceError, RewardUnavailableError
from vlmrl.reward_workers.client_wire import RETRIABLE_CODES, results_of, status_code
from vlmrl.reward_workers.proto import reward_pb2

log = logging.getLogger(__name__)

Connect = Callable[[str, str, ConnectionListener], Any]
"""``connect(address, worker_id, listener)`` -> a connection (a
:class:`~vlmrl.reward_workers.client_connection.WorkerConnection` or a stand-in with the same public members)."""


class Dispatcher(ConnectionListener):
    """Routes a reward client's wire requests over its worker connections and applies the retry policy."""

    def __init__(self, connect: Connect, *, retry_budget: int, no_worker_wait_s: float,
                 addresses: Optional[Sequence[str]] = None, discovery: Optional[RegistryDiscovery] = None,
                 discovery_interval_s: float = 2.0) -> None:
        if (addresses is None) == (discovery is None):
            raise ValueError("a Dispatcher needs exactly one of `addresses` or `discovery`")
        self._connect = connect
        self._retry_budget = retry_budget
        self._no_worker_wait_s = no_worker_wait_s
        self._static = list(addresses) if addresses is not None else None
        self._discovery = discovery
        self._discovery_interval_s = discovery_interval_s
        self.conns: Dict[str, Any] = {}
        self.queue: collections.deque[Job] = collections.deque()
        # the job the dispatch loop is handing to a worker: neither queued nor (until ``send`` registers it) pending
        # anywhere, so a ``send`` that raises before that would otherwise lose it
        self._sending: Optional[Job] = None
        self.counters = collections.Counter()
        self._closed = False
        self._dispatch_error = ""
        self._no_worker_since: Optional[float] = None  # monotonic time since which no worker has answered
        self._no_worker_wait_total = 0.0  # seconds requests spent waiting with no usable worker
        self._wake: Optional[asyncio.Event] = None
        self._tasks: List[asyncio.Task] = []

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Make the first connections (or read the registry) and start dispatching."""
        self._wake = asyncio.Event()
        if self._static is not None:
            for addr in self._static:
                self.conns[addr] = self._connect(addr, "", self)
        else:
            await self.discover()
        loop = asyncio.get_running_loop()
        dispatch = loop.create_task(self._dispatch_loop())
        dispatch.add_done_callback(self._dispatch_ended)
        self._tasks = [dispatch]
        if self._discovery is not None:
            self._tasks.append(loop.create_task(self._discovery_loop()))

    async def shutdown(self, err: BaseException) -> None:
        """Stop dispatching, fail every unanswered request with ``err`` and close every connection."""
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        self._fail_unanswered(err, count_failures=False)
        for conn in list(self.conns.values()):  # nothing is pending any more: close() hands back nothing
            reader = await conn.close("the reward client closed")
            if reader is not None:
                tasks.append(reader)
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- entry ----------------------------------------------------------------------------
    def enqueue(self, jobs: List[Job]) -> None:
        """Queue the wire requests of one caller request."""
        self.counters["requests"] += 1
        self.counters["items"] += sum(j.n_items for j in jobs)
        if self._dispatch_error:
            self.counters["failures"] += 1
            jobs[0].call.fail(RewardServiceError(self._dispatch_error))
            return
        self.queue.extend(jobs)
        self._wake.set()

    def reject(self, call: Call, n_items: int, err: InvalidRequestError) -> None:
        """A caller request refused before sending (it cannot be put on the wire): counted, failed with ``err``."""
        self.counters["requests"] += 1
        self.counters["items"] += n_items
        self.counters["invalid"] += 1
        call.fail(err)

    # -- discovery ------------------------------------------------------------------------
    async def discover(self) -> None:
        """Re-read the registry: close workers that left it (their requests are resent), connect new ones."""
        addresses = await self._discovery.read()
        if addresses is None:
            return  # keep the known workers when the registry is unreachable
        changed = False
        for addr, conn in list(self.conns.items()):
            if addr not in addresses:
                del self.conns[addr]
                self.counters["workers_left"] += 1
                changed = True
                await conn.close("worker left the registry")
        for addr, wid in addresses.items():
            if addr not in self.conns:
                self.conns[addr] = self._connect(addr, wid, self)
                changed = True
        if changed:  # only a change may end a no-worker wait early: each such wait costs queued jobs an attempt
            self._wake.set()

    async def _discovery_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._discovery_interval_s)
            await self.discover()

    # -- dispatch -------------------------------------------------------------------------
    def pick(self, job: Job, now: float) -> tuple[Optional[Any], bool]:
        """(worker to send ``job`` to, whether any worker is usable at all)."""
        usable = [c for c in self.conns.values() if c.usable(now)]
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
            while self.queue and self.queue[0].call.done:
                self.queue.popleft()  # its caller request already failed
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self.queue[0]
            now = time.monotonic()
            conn, any_usable = self.pick(job, now)
            if conn is not None:
                self.queue.popleft()
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

    def _take_unanswered(self) -> List[Job]:
        """Every job not answered yet (queued, being sent, pending on a worker), taken off the queue and workers."""
        jobs = [*self.queue, *(job for conn in self.conns.values() for job in conn.take_pending())]
        if self._sending is not None and self._sending not in jobs:
            jobs.append(self._sending)
        self.queue.clear()
        for job in jobs:
            if job.conn is not None:
                job.conn.release(job)
        return jobs

    def _fail_unanswered(self, err: BaseException, count_failures: bool) -> None:
        """Fail every request not answered yet (queued, being sent, pending on a worker) with ``err``."""
        for job in self._take_unanswered():
            if count_failures and not job.call.done:
                self.counters["failures"] += 1
            job.call.fail(err)

    async def _no_worker_round(self, now: float) -> None:
        """No usable worker: every request waits (spending no retries) for a worker to come back or appear in the
        registry, up to ``no_worker_wait_s`` since the last answer; past that bound all unanswered requests fail
        together (not one retry at a time)."""
        if self._no_worker_since is None:
            self._no_worker_since = now
        bound = self._no_worker_wait_s
        if now - self._no_worker_since >= bound:
            self._give_up_all(now - self._no_worker_since)
            return
        cooling = [c.broken_until for c in self.conns.values() if not c.leaving and c.broken_until > now]
        wait = min([bound - (now - self._no_worker_since)] + [t - now for t in cooling])
        self._wake.clear()
        if self._discovery is not None:
            await self.discover()
        if not any(c.usable(time.monotonic()) for c in self.conns.values()):
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.01))
            except asyncio.TimeoutError:
                pass
        self._no_worker_wait_total += time.monotonic() - now

    def _no_worker_reason(self, waited: float) -> str:
        last_error = self._discovery.last_error if self._discovery is not None else ""
        return ("no reward worker answered for %.1fs (client.no_worker_wait_s=%g)" % (waited, self._no_worker_wait_s)
                + (f"; registry: {last_error}" if last_error else
                   f"; {len(self.conns)} known, all failing" if self.conns else "; none registered"))

    def _give_up_all(self, waited: float) -> None:
        """The no-worker bound passed: fail every unanswered request (queued, being sent, pending) at once."""
        reason = self._no_worker_reason(waited)
        jobs = self._take_unanswered()
        for job in jobs:
            if job.finished:
                continue
            job.errors.append(reason)
            self._give_up(job)
        self._no_worker_since = None
        log.warning("reward client: %s; failed %d request(s)", reason, len(jobs))

    # -- outcomes (ConnectionListener) ----------------------------------------------------
    def on_late_answer(self, conn: Any, resp: reward_pb2.ScoreResponse) -> None:
        self.counters["late_answers"] += 1  # answered after a timeout/resend: drop (exactly once)

    def on_answer(self, conn: Any, job: Job, resp: reward_pb2.ScoreResponse) -> None:
        self._wake.set()
        if job.finished:
            self.counters["late_answers"] += 1
            return
        if resp.worker_id:
            conn.worker_id = resp.worker_id
        if resp.HasField("error") and resp.error.code != 0:
            code = status_code(resp.error.code)
            conn.note_error()
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                self.counters["invalid"] += 1
                job.done = True
                job.call.fail(InvalidRequestError(job.call.request_id, resp.error.message, conn.address))
            elif code in RETRIABLE_CODES:
                self._retry(job, conn, f"{code.name}: {resp.error.message}")
            else:
                self.counters["failures"] += 1
                job.done = True
                job.call.fail(RewardServiceError(
                    f"request {job.call.request_id!r} failed on worker {conn.address}: {code.name}: {resp.error.message}"))
            return
        if len(resp.rewards) != job.n_items:
            self._retry(job, conn, f"worker answered {len(resp.rewards)} rewards for {job.n_items} items")
            return
        conn.note_answer(job)
        self._no_worker_since = None
        job.done = True
        job.call.complete_part(job.index, results_of(resp))

    def on_deadline(self, conn: Any, job: Job, reason: str) -> None:
        self.counters["timeouts"] += 1
        self._retry(job, conn, reason)
        self._wake.set()

    def on_unanswered(self, conn: Any, jobs: List[Job], reason: str) -> None:
        # A stream that never answered (a dead or unreachable address, a worker being replaced) costs its requests
        # no attempt: waiting for a worker is bounded by no_worker_wait_s instead. A stream that was answering and
        # broke (the worker died under its requests) costs each one attempt, so a request that kills every worker
        # it reaches still ends after retry_budget resends.
        for job in jobs:
            self._retry(job, conn, reason, charge=conn.answered_on_stream)
        self._wake.set()

    def _retry(self, job: Job, conn: Any, reason: str, charge: bool = True) -> None:
        if job.finished:
            return
        job.errors.append(f"{conn.address}: {reason}")
        del job.errors[:-20]
        job.excluded.add(conn.address)
        job.attempts += int(charge)
        if job.attempts > self._retry_budget:
            self._give_up(job)
            return
        self.counters["retries"] += 1
        self.queue.appendleft(job)  # resends go first
        self._wake.set()

    def _give_up(self, job: Job) -> None:
        self.counters["failures"] += 1
        job.done = True
        job.call.fail(RewardUnavailableError([job.call.request_id], job.errors, job.attempts))

    # -- inspection -----------------------------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        c = self.counters
        return {
            "requests": c["requests"], "items": c["items"], "retries": c["retries"],
            "failures": c["failures"], "timeouts": c["timeouts"], "late_answers": c["late_answers"],
            "invalid": c["invalid"], "workers_left": c["workers_left"], "queued": len(self.queue),
            "no_worker_wait_s": self._no_worker_wait_total,
            "no_worker_for_s": 0.0 if self._no_worker_since is None else time.monotonic() - self._no_worker_since,
            "no_worker_wait_bound_s": self._no_worker_wait_s,
            "workers": {addr: conn.stats() for addr, conn in self.conns.items()},
        }

    def known(self) -> List[str]:
        return sorted(self.conns)
