"""The dynamic batcher on its own (asyncio) and through a real server (batch merging via Info stats)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from vlmrl.reward_workers.batcher import DynamicBatcher, QueueFull, ScorerFailed
from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScoreResult


class RecordingScorer(Scorer):
    """Reward = item's first pixel; records batch sizes; can block on a gate or fail on a task."""

    name = "recording"
    item_kind = ItemKind.FRAME

    def __init__(self, gate: threading.Event | None = None, fail_task: str | None = None, sleep_s: float = 0.0):
        super().__init__(None)
        self.gate, self.fail_task, self.sleep_s = gate, fail_task, sleep_s
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def score_batch(self, tasks, items):
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            assert self.gate.wait(10), "gate never opened"
        if self.sleep_s:
            time.sleep(self.sleep_s)
        self.batches.append(len(items))
        if self.fail_task in tasks:
            raise RuntimeError("boom")
        return [ScoreResult(reward=float(it[0, 0, 0, 0])) for it in items]


def items(*values):
    return [np.full((1, 2, 2, 3), v, np.uint8) for v in values]


def rewards(outcomes):
    return [o.result.reward for o in outcomes]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_concurrent_requests_share_a_batch():
    async def main():
        scorer = RecordingScorer()
        b = DynamicBatcher(scorer, max_batch=32, max_wait_ms=50, max_queue_items=100)
        b.start()
        results = await asyncio.gather(*(b.submit("t", items(i)) for i in range(10)))
        await b.close()
        return scorer, results

    scorer, results = run(main())
    assert [rewards(r) for r in results] == [[float(i)] for i in range(10)]
    assert scorer.batches == [10]
    assert all(name.startswith("scorer-") for name in scorer.threads)  # scored off the event loop


def test_large_request_is_split_across_batches_in_order():
    async def main():
        scorer = RecordingScorer()
        b = DynamicBatcher(scorer, max_batch=4, max_wait_ms=1, max_queue_items=100)
        b.start()
        out = await b.submit("t", items(*range(10)))
        await b.close()
        return scorer, out

    scorer, out = run(main())
    assert rewards(out) == [float(i) for i in range(10)]
    assert scorer.batches == [4, 4, 2]


def test_wait_timer_starts_at_first_item_and_next_batch_forms_while_scoring():
    async def main():
        gate = threading.Event()
        scorer = RecordingScorer(gate=gate)
        b = DynamicBatcher(scorer, max_batch=8, max_wait_ms=30, max_queue_items=100)
        b.start()
        t0 = time.perf_counter()
        first = asyncio.ensure_future(b.submit("t", items(1)))
        await asyncio.sleep(0.1)  # batch 1 (one item, after ~30 ms) is now blocked in the scorer
        assert b.queue_depth == 0
        later = [asyncio.ensure_future(b.submit("t", items(i))) for i in range(2, 7)]
        await asyncio.sleep(0.05)
        assert b.queue_depth == 5  # the loop keeps accepting while the scorer runs
        gate.set()
        await asyncio.gather(first, *later)
        elapsed = time.perf_counter() - t0
        await b.close()
        return scorer, elapsed

    scorer, elapsed = run(main())
    assert scorer.batches == [1, 5]
    assert elapsed < 1.0


def test_single_item_waits_about_max_wait():
    async def main():
        b = DynamicBatcher(RecordingScorer(), max_batch=8, max_wait_ms=80, max_queue_items=100)
        b.start()
        t0 = time.perf_counter()
        await b.submit("t", items(3))
        dt = time.perf_counter() - t0
        await b.close()
        return dt

    assert 0.07 <= run(main()) < 0.5


def test_full_batch_does_not_wait():
    async def main():
        b = DynamicBatcher(RecordingScorer(), max_batch=4, max_wait_ms=2000, max_queue_items=100)
        b.start()
        t0 = time.perf_counter()
        await b.submit("t", items(1, 2, 3, 4))
        dt = time.perf_counter() - t0
        await b.close()
        return dt

    assert run(main()) < 0.5


def test_queue_full_rejects_then_recovers():
    async def main():
        gate = threading.Event()
        scorer = RecordingScorer(gate=gate)
        b = DynamicBatcher(scorer, max_batch=2, max_wait_ms=0, max_queue_items=3)
        b.start()
        running = asyncio.ensure_future(b.submit("t", items(1, 2)))  # goes to the scorer, blocks
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(b.submit("t", items(3, 4, 5)))  # fills the queue
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull, match="max_queue_items=3"):
            await b.submit("t", items(6))
        gate.set()
        await asyncio.gather(running, queued)
        again = await b.submit("t", items(7))
        await b.close()
        return rewards(again)

    assert run(main()) == [7.0]


def test_scorer_exception_fails_only_its_batch():
    async def main():
        scorer = RecordingScorer(fail_task="explode")
        b = DynamicBatcher(scorer, max_batch=8, max_wait_ms=0, max_queue_items=100)
        b.start()
        with pytest.raises(ScorerFailed, match="RuntimeError: boom"):
            await b.submit("explode", items(1))
        ok = await b.submit("fine", items(2))
        await b.close()
        return rewards(ok)

    assert run(main()) == [2.0]


def test_cancelled_request_items_are_skipped():
    async def main():
        gate = threading.Event()
        scorer = RecordingScorer(gate=gate)
        b = DynamicBatcher(scorer, max_batch=8, max_wait_ms=0, max_queue_items=100)
        b.start()
        blocker = asyncio.ensure_future(b.submit("t", items(1)))
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(b.submit("t", items(2, 3)))
        kept = asyncio.ensure_future(b.submit("t", items(4)))
        await asyncio.sleep(0.01)
        doomed.cancel()
        gate.set()
        await blocker
        out = await kept
        await b.close()
        return scorer, rewards(out)

    scorer, out = run(main())
    assert out == [4.0]
    assert scorer.batches == [1, 1]


def test_server_merges_concurrent_requests(serve, stub_for, make_request, make_frame):
    st = serve("synthetic", {"fixed_ms": 5.0}, max_wait_ms=50.0, max_batch=32)
    stub = stub_for(st)
    stub.Score(make_request("warm", [make_frame(0)]))  # connect first so the burst is concurrent
    before = st.info().stats.batches
    futures = [stub.Score.future(make_request(f"r{i}", [make_frame(i)])) for i in range(16)]
    responses = [f.result(timeout=10) for f in futures]
    assert [r.request_id for r in responses] == [f"r{i}" for i in range(16)]
    assert [round(r.rewards[0].reward * 255) for r in responses] == list(range(16))
    stats = st.info().stats
    assert stats.requests == 17
    assert stats.batches - before <= 4, f"16 concurrent requests took {stats.batches - before} scorer calls"
    assert stats.mean_batch_size > 2


class OrderScorer(RecordingScorer):
    """Also records the first pixel of every item of every batch, in batch order."""

    def __init__(self, gate=None):
        super().__init__(gate=gate)
        self.order: list[list[float]] = []

    def score_batch(self, tasks, items):
        out = super().score_batch(tasks, items)
        self.order.append([r.reward for r in out])
        return out


async def busy_batcher(scorer: RecordingScorer, client: str, **limits):
    """A started batcher (no wait) whose scorer is held on ``scorer.gate`` by one item of ``client``;
    returns (batcher, that request)."""
    b = DynamicBatcher(scorer, max_wait_ms=0, **limits)
    b.start()
    blocker = asyncio.ensure_future(b.submit("t", items(0), client=client))
    await asyncio.sleep(0.05)
    return b, blocker


def test_batches_serve_clients_round_robin():
    """A client with a long backlog does not hold back another client's items: batches alternate between them."""
    async def main():
        scorer = OrderScorer(gate=threading.Event())
        b, blocker = await busy_batcher(scorer, "x", max_batch=4, max_queue_items=100)
        flood = asyncio.ensure_future(b.submit("t", items(*range(100, 112)), client="flood"))
        await asyncio.sleep(0.01)
        small = asyncio.ensure_future(b.submit("t", items(7, 8), client="small"))
        await asyncio.sleep(0.01)
        assert b.queue_depth == 14 and b.waiting_of("flood") == 12 and b.waiting_of("small") == 2
        scorer.gate.set()
        await asyncio.gather(blocker, flood, small)
        await b.close()
        return scorer.order, rewards(flood.result()), rewards(small.result())

    order, flood, small = run(main())
    assert order[1] == [100.0, 7.0, 101.0, 8.0]  # the first batch after the blocker holds both of `small`'s items
    assert flood == [float(v) for v in range(100, 112)] and small == [7.0, 8.0]
    assert [len(b) for b in order] == [1, 4, 4, 4, 2]


def test_full_queue_still_admits_a_client_with_nothing_waiting():
    async def main():
        scorer = RecordingScorer(gate=threading.Event())
        b, running = await busy_batcher(scorer, "flood", max_batch=1, max_queue_items=3)
        queued = asyncio.ensure_future(b.submit("t", items(2, 3, 4), client="flood"))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull, match="3 of them this client's"):
            await b.submit("t", items(5), client="flood")
        other = asyncio.ensure_future(b.submit("t", items(9), client="other"))  # over the limit, but its first
        await asyncio.sleep(0.01)
        assert b.queue_depth == 4
        scorer.gate.set()
        await asyncio.gather(running, queued, other)
        await b.close()
        return rewards(other.result())

    assert run(main()) == [9.0]


# --- issue 25: same-seed runs, rewards that do not depend on the batch (server.fixed_batch_size) ---

def test_fixed_batch_size_scores_pieces_of_exactly_that_size():
    async def main():
        scorer = RecordingScorer()
        b = DynamicBatcher(scorer, max_batch=32, max_wait_ms=50, max_queue_items=100, fixed_batch_size=4)
        b.start()
        results = await asyncio.gather(*(b.submit("t", items(i)) for i in range(10)))
        await b.close()
        return scorer, results

    scorer, results = run(main())
    assert [rewards(r) for r in results] == [[float(i)] for i in range(10)]  # padding copies dropped, order kept
    assert scorer.batches == [4, 4, 4]
    with pytest.raises(ValueError, match="fixed_batch_size must be >= 0"):
        DynamicBatcher(RecordingScorer(), max_batch=4, max_wait_ms=1, max_queue_items=10, fixed_batch_size=-1)


def test_fixed_batch_size_makes_a_cnn_reward_independent_of_its_batch():
    """A real conv scorer on CPU: the same frame's reward alone and among 20 others is bit-identical with
    fixed_batch_size (without it, CPU kernels round differently per batch size: ~6e-8 on the 2-core CI machine)."""
    from vlmrl.reward_workers.scorers.base import build_scorer

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8) for _ in range(21)]
    scorer = build_scorer("cnn", {"image_size": 64})

    async def main(fixed):
        b = DynamicBatcher(scorer, max_batch=32, max_wait_ms=50, max_queue_items=100, fixed_batch_size=fixed)
        b.start()
        together = rewards(await b.submit("t", frames))
        alone = [rewards(await b.submit("t", [f]))[0] for f in frames]
        await b.close()
        return np.array(together), np.array(alone)

    together, alone = run(main(8))
    assert np.array_equal(together, alone), np.abs(together - alone).max()
