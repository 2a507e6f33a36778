"""Counters of one reward worker (requests, batches, latency, throughput) for the ``Info`` RPC."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from vlmrl.reward_workers.proto import reward_pb2


@dataclass
class WorkerStats:
    """Running totals kept by the server and its batcher; :meth:`to_proto` makes ``BatchingStats``.

    All updates happen on the server's event loop, so no locking is needed.
    """

    window_s: float = 10.0
    """Throughput (items/s) is measured over this many recent seconds."""
    requests: int = 0
    items: int = 0
    batches: int = 0
    batched_items: int = 0
    rejected_requests: int = 0
    invalid_requests: int = 0
    failed_requests: int = 0
    in_flight_requests: int = 0
    scorer_ms_total: float = 0.0
    latency_ms_total: float = 0.0
    latency_count: int = 0
    _answered: deque = field(default_factory=deque)  # (monotonic time, items answered)

    def record_batch(self, n_items: int, scorer_ms: float) -> None:
        self.batches += 1
        self.batched_items += n_items
        self.scorer_ms_total += scorer_ms

    def record_answered(self, n_items: int, now: float | None = None) -> None:
        """Items whose rewards are ready (scored or from the cache); feeds items/s."""
        now = time.monotonic() if now is None else now
        self._answered.append((now, n_items))
        self._trim(now)

    def record_latency(self, ms: float) -> None:
        self.latency_ms_total += ms
        self.latency_count += 1

    def _trim(self, now: float) -> None:
        while self._answered and self._answered[0][0] < now - self.window_s:
            self._answered.popleft()

    def items_per_second(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if not self._answered:
            return 0.0
        span = max(now - self._answered[0][0], 1e-3)
        span = max(span, min(self.window_s, 1.0))  # a lone burst is not "infinite" throughput
        return sum(n for _, n in self._answered) / span

    def to_proto(self, *, queue_depth: int, cache_hits: int, cache_misses: int,
                 max_batch: int, max_wait_ms: float) -> reward_pb2.BatchingStats:
        return reward_pb2.BatchingStats(
            requests=self.requests,
            items=self.items,
            batches=self.batches,
            mean_batch_size=self.batched_items / self.batches if self.batches else 0.0,
            queue_depth=queue_depth,
            rejected_requests=self.rejected_requests,
            invalid_requests=self.invalid_requests,
            cache_hits=cache_hits,
            cache_misses=cache_misses,
            items_per_second=self.items_per_second(),
            mean_scorer_ms=self.scorer_ms_total / self.batches if self.batches else 0.0,
            mean_latency_ms=self.latency_ms_total / self.latency_count if self.latency_count else 0.0,
            in_flight_requests=self.in_flight_requests,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            failed_requests=self.failed_requests,
        )
