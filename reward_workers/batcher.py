"""Dynamic batching of reward items across requests.

Requests hand their (already validated) items to :meth:`DynamicBatcher.submit`. One loop task
collects waiting items into a batch of up to ``max_batch`` items, waiting at most
``max_wait_ms`` after the oldest waiting item arrived, and runs the scorer on that batch in a
single worker thread (``loop.run_in_executor``), so the event loop keeps accepting requests
while the scorer runs and the next batch forms meanwhile. Results fan back to each request's
future; a request's items may be split across batches.

Fairness: every request names its client (a stream, or a connection's unary calls). Waiting
items sit in one queue per client and batches are filled round-robin, one item per client in
turn, so a client with thousands of items waiting delays another client's item by at most the
batch being scored plus one batch, not by its whole backlog. The queue is bounded: a request
that would push the waiting items over ``max_queue_items`` is refused with :class:`QueueFull`,
unless its client has nothing waiting (a flooding client cannot lock others out; per-client
caps live in the server).

Same-seed runs: with ``fixed_batch_size`` > 0 the scorer is called on pieces of exactly that many items (the last
padded), so a reward does not depend on which items happened to be waiting together (:func:`score_in_fixed_batches`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from vlmrl.reward_workers.cache import RewardCache, cache_key
from vlmrl.reward_workers.scorers.base import Scorer, ScoreResult
from vlmrl.reward_workers.stats import WorkerStats


class QueueFull(Exception):
    """The batcher's queue cannot take this request now (answered RESOURCE_EXHAUSTED)."""


class ScorerFailed(Exception):
    """The scorer raised (or misbehaved) on a batch holding this request's items (answered INTERNAL)."""


class BatcherClosed(Exception):
    """The batcher shut down before this request's items were scored (answered UNAVAILABLE)."""


@dataclass
class ItemOutcome:
    """The reward of one item, whether it came from the cache, and the model version that produced it."""

    result: ScoreResult
    cached: bool = False
    model_version: str = ""


class _Job:
    """One request's items in flight: results fill in as their batches finish."""

    __slots__ = ("future", "outcomes", "remaining")

    def __init__(self, future: asyncio.Future, n: int) -> None:
        self.future = future
        self.outcomes: list[ItemOutcome | None] = [None] * n
        self.remaining = n

    def fill(self, index: int, outcome: ItemOutcome) -> None:
        if self.future.done():
            return
        self.outcomes[index] = outcome
        self.remaining -= 1
        if self.remaining == 0:
            self.future.set_result(self.outcomes)


@dataclass
class _Entry:
    job: _Job
    index: int
    task: str
    item: np.ndarray
    key: tuple | None
    enqueued_at: float


def _score_with_version(scorer: Scorer, tasks: list, items: list, fixed_batch: int = 0) -> tuple[str, list]:
    """Runs on the scorer thread: the version is read there, so it is the one that scored the batch."""
    version = scorer.model_version
    if fixed_batch > 0:
        return version, score_in_fixed_batches(scorer, tasks, items, fixed_batch)
    return version, scorer.score_batch(tasks, items)


def score_in_fixed_batches(scorer: Scorer, tasks: Sequence[str], items: Sequence[np.ndarray], size: int) -> list:
    """``scorer.score_batch`` called on pieces of exactly ``size`` items, the last one padded with copies of its
    last item (their results are dropped): an item's reward then does not depend on how many other items shared
    its batch. CPU conv/matmul kernels pick their blocking by batch size and round differently (compact LRM:
    up to 2e-7), enough to make two same-seed training runs drift apart (``server.fixed_batch_size``)."""
    out: list = []
    for start in range(0, len(items), size):
        t, it = list(tasks[start:start + size]), list(items[start:start + size])
        n, pad = len(it), size - len(it)
        results = scorer.score_batch(t + t[-1:] * pad, it + it[-1:] * pad)
        if len(results) != size:
            raise RuntimeError(f"scorer returned {len(results)} results for a batch of {size} items")
        out.extend(results[:n])
    return out


class DynamicBatcher:
    """Merges items of concurrent requests into scorer batches (the heart of a reward worker)."""

    def __init__(self, scorer: Scorer, *, max_batch: int, max_wait_ms: float, max_queue_items: int,
                 cache: RewardCache | None = None, stats: WorkerStats | None = None, fixed_batch_size: int = 0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if fixed_batch_size < 0:
            raise ValueError(f"fixed_batch_size must be >= 0 (0 = off), got {fixed_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue_items < 1:
            raise ValueError(f"max_queue_items must be >= 1, got {max_queue_items}")
        self.scorer = scorer
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.max_queue_items = int(max_queue_items)
        self.fixed_batch_size = int(fixed_batch_size)
        self.cache = cache if cache is not None else RewardCache(0)
        self.stats = stats if stats is not None else WorkerStats()
        self._queues: dict[Hashable, deque[_Entry]] = {}  # per client, oldest first; only non-empty ones
        self._turns: deque[Hashable] = deque()  # clients with waiting items, in round-robin order
        self._waiting = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"scorer-{self.scorer.name}")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dynamic-batcher")

    async def close(self) -> None:
        """Stop the loop; requests still waiting fail with :class:`BatcherClosed`."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for q in self._queues.values():
            for entry in q:
                if not entry.job.future.done():
                    entry.job.future.set_exception(BatcherClosed("reward worker is shutting down"))
        self._queues.clear()
        self._turns.clear()
        self._waiting = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def run_in_scorer_thread(self, fn, *args):
        """Run ``fn(*args)`` on the scorer's thread, between two batches (e.g. a weight hot swap)."""
        if self._closed or self._executor is None:
            raise BatcherClosed("reward worker is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def queue_depth(self) -> int:
        """Items waiting for the scorer now."""
        return self._waiting

    def waiting_of(self, client: Hashable) -> int:
        """Items of ``client`` waiting for the scorer now."""
        q = self._queues.get(client)
        return len(q) if q else 0

    # ------------------------------------------------------------------ requests

    async def submit(self, task: str, items: Sequence[np.ndarray], client: Hashable = None,
                     digests: Sequence[bytes] | None = None) -> list[ItemOutcome]:
        """Rewards of ``items`` against ``task``, in order; raises QueueFull / ScorerFailed / BatcherClosed.

        ``client`` keys the fair share (round-robin between clients); None is one shared client. ``digests``: the
        items' cache digests if the caller computed them off the event loop."""
        if self._closed or self._task is None:
            raise BatcherClosed("reward worker is not running")
        loop = asyncio.get_running_loop()
        job = _Job(loop.create_future(), len(items))
        name, version = self.scorer.name, self.scorer.model_version
        misses: list[tuple[int, tuple | None]] = []
        hits: list[tuple[int, ScoreResult]] = []
        for i, item in enumerate(items):
            key = cache_key(name, version, task, item, digests[i] if digests else None) if self.cache.enabled else None
            hit = self.cache.get(key) if key is not None else None
            if hit is not None:
                hits.append((i, hit))
            else:
                misses.append((i, key))
        if self._waiting + len(misses) > self.max_queue_items and self.waiting_of(client):
            raise QueueFull(f"reward worker queue is full: {self._waiting} items waiting "
                            f"({self.waiting_of(client)} of them this client's), this request adds {len(misses)}, "
                            f"limit max_queue_items={self.max_queue_items}; retry later or elsewhere")
        for i, hit in hits:
            job.fill(i, ItemOutcome(hit, cached=True, model_version=version))
        if hits:
            self.stats.record_answered(len(hits))
        if misses:
            now = loop.time()
            q = self._queues.get(client)
            if q is None:
                q = self._queues[client] = deque()
                self._turns.append(client)
            q.extend(_Entry(job, i, task, items[i], key, now) for i, key in misses)
            self._waiting += len(misses)
            self._wakeup.set()
        if not items:
            job.future.set_result([])
        return await job.future

    # ------------------------------------------------------------------ the loop

    async def _wait_for_items(self, timeout: float | None) -> bool:
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def _take(self) -> _Entry:
        """The next waiting item in round-robin order over clients."""
        client = self._turns.popleft()
        q = self._queues[client]
        entry = q.popleft()
        self._waiting -= 1
        if q:
            self._turns.append(client)
        else:
            del self._queues[client]
        return entry

    async def _next_batch(self) -> list[_Entry]:
        loop = asyncio.get_running_loop()
        while not self._waiting:
            await self._wait_for_items(None)
        # The wait timer starts when the oldest waiting item arrived (it may already be over).
        deadline = min(q[0].enqueued_at for q in self._queues.values()) + self.max_wait_s
        while self._waiting < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._wait_for_items(remaining):
                break
        batch: list[_Entry] = []
        while self._waiting and len(batch) < self.max_batch:
            entry = self._take()
            if not entry.job.future.done():  # its request was cancelled or already failed
                batch.append(entry)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            tasks = [e.task for e in batch]
            items = [e.item for e in batch]
            t0 = time.perf_counter()
            try:
                version, results = await loop.run_in_executor(self._executor, _score_with_version, self.scorer,
                                                              tasks, items, self.fixed_batch_size)
                if len(results) != len(batch):
                    raise RuntimeError(f"scorer returned {len(results)} results for a batch of {len(batch)} items")
            except asyncio.CancelledError:
                for e in batch:
                    if not e.job.future.done():
                        e.job.future.set_exception(BatcherClosed("reward worker is shutting down"))
                raise
            except Exception as exc:  # the scorer's fault: fail only this batch's requests
                self.stats.record_batch(len(batch), (time.perf_counter() - t0) * 1000.0)
                err = ScorerFailed(f"scorer {self.scorer.name!r} failed on a batch of {len(batch)} items: "
                                   f"{type(exc).__name__}: {exc}")
                for e in batch:
                    if not e.job.future.done():
                        e.job.future.set_exception(err)
                continue
            self.stats.record_batch(len(batch), (time.perf_counter() - t0) * 1000.0)
            self.stats.record_answered(len(batch))
            for e, result in zip(batch, results):
                if e.key is not None:
                    key = e.key if e.key[1] == version else cache_key(self.scorer.name, version, e.task, e.item)
                    self.cache.put(key, result)
                e.job.fill(e.index, ItemOutcome(result, cached=False, model_version=version))
