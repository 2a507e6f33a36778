"""The reward client's dispatch policy alone, with fake worker connections (no gRPC, no server): which worker gets
a request, resends to another worker, the retry budget, INVALID_ARGUMENT, charging attempts only to streams that
were answering, late answers dropped, and all requests failing together once no worker has answered for
``no_worker_wait_s``."""

from __future__ import annotations

import asyncio
from typing import Dict, List

import grpc
import pytest

from vlmrl.reward_workers.client import InvalidRequestError, RewardResult, RewardUnavailableError
from vlmrl.reward_workers.client_connection import WorkerConnection
from vlmrl.reward_workers.client_dispatch import Dispatcher
from vlmrl.reward_workers.client_jobs import Call, Job
from vlmrl.reward_workers.proto import reward_pb2


class FakeConnection:
    """The public members the dispatcher uses of a WorkerConnection, without gRPC; the test decides every outcome."""

    def __init__(self, address: str, worker_id: str, listener, max_in_flight: int = 2) -> None:
        self.address, self.worker_id, self.listener = address, worker_id, listener
        self.max_in_flight = max_in_flight
        self.pending: Dict[str, Job] = {}
        self.outstanding_items = 0
        self.leaving = False
        self.broken_until = 0.0
        self.answered_on_stream = False
        self.sent: List[str] = []
        self.answers = 0
        self.errors = 0

    # the real connection's pending bookkeeping (no I/O in these)
    usable = WorkerConnection.usable
    release = WorkerConnection.release
    take_pending = WorkerConnection.take_pending

    def has_capacity(self) -> bool:
        return len(self.pending) < self.max_in_flight

    async def send(self, job: Job) -> None:
        job.conn = self
        self.pending[job.wire_id] = job
        self.outstanding_items += job.n_items
        self.sent.append(job.wire_id)

    def note_answer(self, job: Job) -> None:
        self.answers += 1
        self.answered_on_stream = True

    def note_error(self) -> None:
        self.errors += 1

    async def close(self, reason: str):
        self.leaving = True
        self.listener.on_unanswered(self, self.take_pending(), reason)
        return None

    def stats(self) -> dict:
        return {"in_flight": len(self.pending)}

    # -- what the worker does (driven by the test) ------------------------------------------------
    def answer(self, wire_id: str, rewards=None, error: grpc.StatusCode | None = None, message: str = "") -> None:
        job = self.pending.get(wire_id)
        resp = reward_pb2.ScoreResponse(request_id=wire_id, worker_id=self.worker_id or self.address)
        if error is not None:
            resp.error.code = error.value[0]
            resp.error.message = message
        else:
            resp.rewards.extend(reward_pb2.ItemReward(reward=r) for r in rewards)
        if job is None:
            self.listener.on_late_answer(self, resp)
            return
        self.release(job)
        self.listener.on_answer(self, job, resp)

    def break_stream(self, reason: str = "UNAVAILABLE: gone", cooldown_s: float = 0.0) -> None:
        self.broken_until = asyncio.get_running_loop().time() + cooldown_s if cooldown_s else 0.0
        self.listener.on_unanswered(self, self.take_pending(), reason)


class Harness:
    def __init__(self, addresses, **kw) -> None:
        self.conns: Dict[str, FakeConnection] = {}

        def connect(address, worker_id, listener):
            self.conns[address] = FakeConnection(address, worker_id, listener)
            return self.conns[address]

        kw.setdefault("retry_budget", 2)
        kw.setdefault("no_worker_wait_s", 60.0)
        self.d = Dispatcher(connect, addresses=addresses, **kw)

    def submit(self, rid: str, n_items: int = 1) -> Call:
        call = Call(rid, 1)
        req = reward_pb2.ScoreRequest(request_id=rid, task="t", items=[reward_pb2.Item() for _ in range(n_items)])
        self.d.enqueue([Job(call, 0, req)])
        return call

    def where(self, wire_id: str) -> FakeConnection:
        (conn,) = [c for c in self.conns.values() if wire_id in c.pending]
        return conn


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def run(body, addresses, **kw) -> None:
    """Run ``body(harness)`` on a fresh event loop with a started dispatcher over fake ``addresses``."""
    async def main():
        h = Harness(addresses, **kw)
        await h.d.start()
        try:
            await body(h)
        finally:
            await h.d.shutdown(RuntimeError("closed"))

    asyncio.run(main())


def test_each_request_goes_to_the_least_loaded_worker_within_its_capacity():
    async def body(h):
        big = h.submit("big", n_items=5)
        await settle()
        first = h.where("big")
        small = [h.submit(f"s{i}") for i in range(3)]
        await settle()
        other = h.conns["b:1" if first.address == "a:1" else "a:1"]
        # the idle worker takes requests until it holds as many items; capacity (2 in flight) caps it
        assert [j.wire_id for j in other.pending.values()] == ["s0", "s1"]
        assert h.where("s2") is first
        assert h.d.stats()["queued"] == 0
        other.answer("s0", [0.5])
        assert small[0].future.result(0) == [RewardResult(reward=0.5, worker_id=other.address)]
        assert not big.done

    run(body, ["a:1", "b:1"])


def test_a_retriable_error_resends_to_another_worker_and_the_budget_ends_it():
    async def body(h):
        call = h.submit("r")
        await settle()
        tried = []
        for _ in range(3):
            conn = h.where("r")
            assert conn.address not in tried  # a resend avoids the workers that failed it
            tried.append(conn.address)
            conn.answer("r", error=grpc.StatusCode.UNAVAILABLE, message="overloaded")
            await settle()
        with pytest.raises(RewardUnavailableError, match=r"after 3 attempt\(s\).*overloaded") as info:
            call.future.result(0)
        assert info.value.request_ids == ["r"]
        s = h.d.stats()
        assert s["retries"] == 2 and s["failures"] == 1
        assert sum(c.errors for c in h.conns.values()) == 3

    run(body, ["a:1", "b:1", "c:1"], retry_budget=2)


def test_invalid_argument_fails_at_once_without_a_retry():
    async def body(h):
        call = h.submit("bad")
        await settle()
        h.where("bad").answer("bad", error=grpc.StatusCode.INVALID_ARGUMENT, message="frame 0: bad shape")
        await settle()
        with pytest.raises(InvalidRequestError, match="frame 0: bad shape"):
            call.future.result(0)
        s = h.d.stats()
        assert s["invalid"] == 1 and s["retries"] == 0
        assert not any(c.pending for c in h.conns.values())

    run(body, ["a:1", "b:1"])


def test_a_wrong_reward_count_is_resent_and_a_late_answer_is_dropped():
    async def body(h):
        call = h.submit("r", n_items=2)
        await settle()
        first = h.where("r")
        first.answer("r", [1.0])  # one reward for two items
        await settle()
        second = h.where("r")
        assert second is not first
        second.answer("r", [1.0, 2.0])
        first.answer("r", [3.0, 4.0])  # nothing pending there any more: late
        assert [r.reward for r in call.future.result(0)] == [1.0, 2.0]
        s = h.d.stats()
        assert s["retries"] == 1 and s["late_answers"] == 1 and s["failures"] == 0

    run(body, ["a:1", "b:1"])


def test_a_broken_stream_charges_attempts_only_if_it_was_answering():
    async def body(h):
        call = h.submit("r")
        await settle()
        conn = h.conns["a:1"]
        for _ in range(5):  # a worker that never answered (being replaced): no attempt spent
            conn.break_stream()
            await settle()
        assert not call.done
        job = conn.pending["r"]
        assert job.attempts == 0 and h.d.stats()["retries"] == 5
        h.submit("ok")
        await settle()
        conn.answer("ok", [0.0])  # the worker answers: its stream is now a live one
        for _ in range(2):
            conn.break_stream()
            await settle()
        with pytest.raises(RewardUnavailableError, match=r"after 2 attempt\(s\)"):
            call.future.result(0)

    run(body, ["a:1"], retry_budget=1)


def test_no_usable_worker_fails_every_request_together_at_the_bound():
    async def body(h):
        calls = [h.submit(f"r{i}") for i in range(6)]
        await settle()
        for conn in h.conns.values():
            conn.leaving = True  # neither worker is usable; what they hold is handed back
            conn.listener.on_unanswered(conn, conn.take_pending(), "UNAVAILABLE: worker died")
        await asyncio.sleep(0.1)
        assert not any(c.done for c in calls)  # waiting, spending no retries
        assert all(j.attempts == 0 for j in h.d.queue)
        await asyncio.sleep(0.5)
        for c in calls:
            with pytest.raises(RewardUnavailableError, match="no reward worker answered for .*2 known, all failing"):
                c.future.result(0)
        s = h.d.stats()
        assert s["failures"] == 6 and s["queued"] == 0 and s["no_worker_wait_s"] >= 0.3

    run(body, ["a:1", "b:1"], no_worker_wait_s=0.3)


def test_rejected_requests_are_counted_and_never_sent():
    async def body(h):
        call = Call("huge", 1)
        h.d.reject(call, 3, InvalidRequestError("huge", "too large"))
        await settle()
        with pytest.raises(InvalidRequestError, match="too large"):
            call.future.result(0)
        s = h.d.stats()
        assert (s["requests"], s["items"], s["invalid"], s["retries"]) == (1, 3, 1, 0)
        assert h.conns["a:1"].sent == []

    run(body, ["a:1"])


def test_shutdown_fails_what_is_unanswered():
    async def body(h):
        calls = [h.submit(f"r{i}") for i in range(4)]  # 2 pending (capacity), 2 queued
        await settle()
        await h.d.shutdown(RuntimeError("closed"))
        for c in calls:
            with pytest.raises(RuntimeError, match="closed"):
                c.future.result(0)
        assert h.conns["a:1"].leaving and not h.conns["a:1"].pending

    run(body, ["a:1"])
