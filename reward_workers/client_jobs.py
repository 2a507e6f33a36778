"""The reward client's bookkeeping: a caller request (:class:`Call`) and the wire requests it is split into
(:class:`Job`), shared by the facade that creates them, the dispatcher that routes them and the worker connection
that carries them. No I/O here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, List, Optional

from vlmrl.reward_workers.client_types import RewardResult
from vlmrl.reward_workers.proto import reward_pb2


class Call:
    """One caller request: its future resolves once, to every item's reward in order (or to one error)."""

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


class Job:
    """One wire request (a chunk of a caller request) and its delivery state."""

    __slots__ = ("call", "index", "request", "n_items", "attempts", "errors", "excluded", "conn",
                 "sent_at", "timer", "done")

    def __init__(self, call: Call, index: int, request: reward_pb2.ScoreRequest) -> None:
        self.call = call
        self.index = index
        self.request = request
        self.n_items = len(request.items)
        self.attempts = 0  # resends so far
        self.errors: List[str] = []
        self.excluded: set[str] = set()  # workers that failed this job
        self.conn: Any = None  # the worker connection it is pending on, if any
        self.sent_at = 0.0
        self.timer: Optional[asyncio.TimerHandle] = None
        self.done = False

    @property
    def wire_id(self) -> str:
        return self.request.request_id

    @property
    def finished(self) -> bool:
        """Answered, failed, or its caller request already resolved: nothing more to do for it."""
        return self.done or self.call.done
