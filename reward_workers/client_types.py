"""What a caller of the reward client gets back: :class:`RewardResult` per item, or one of the errors below.

These are the reward path's client-side values, shared by the facade (:mod:`vlmrl.reward_workers.client`, which
re-exports them: import them from there), the wire conversion and the dispatcher. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Sequence


class RewardServiceError(RuntimeError):
    """Base of the errors the reward client raises to its caller."""


class RewardUnavailableError(RewardServiceError):
    """Some items could not be scored: every worker tried failed, ``retry_budget`` resends were spent.

    ``request_ids`` names the failed caller requests, ``errors`` the last errors seen (worker: error).
    """

    def __init__(self, request_ids: Sequence[str], errors: Sequence[str], attempts: int) -> None:
        self.request_ids = list(request_ids)
        self.errors = list(errors)
        self.attempts = attempts
        last = "; ".join(self.errors[-5:]) or "no error recorded"
        super().__init__(
            f"reward service unavailable for request(s) {self.request_ids} after {attempts} attempt(s); "
            f"last errors: {last}")

    def __reduce__(self):  # Ray pickles exceptions across processes
        return (type(self), (self.request_ids, self.errors, self.attempts))


class InvalidRequestError(RewardServiceError):
    """A worker rejected the request as INVALID_ARGUMENT (bad frame, wrong item kind, ...); not retried."""

    def __init__(self, request_id: str, message: str, worker: str = "") -> None:
        self.request_id = request_id
        self.server_message = message
        self.worker = worker
        super().__init__(f"request {request_id!r} rejected by reward worker {worker or '?'}: {message}")

    def __reduce__(self):  # Ray pickles exceptions across processes
        return (type(self), (self.request_id, self.server_message, self.worker))


class RequestTooLargeError(InvalidRequestError):
    """One item of the request serializes to more bytes than one wire request may carry
    (``client.max_message_bytes``): the client refuses the request before sending anything (gRPC would refuse it
    with RESOURCE_EXHAUSTED on every worker). Longer item lists are split to fit; only a single oversized item
    fails. ``item_index`` is that item's position in the caller's list."""

    def __init__(self, request_id: str, item_index: int, item_bytes: int, limit_bytes: int) -> None:
        self.item_index = item_index
        self.item_bytes = item_bytes
        self.limit_bytes = limit_bytes
        message = (f"item {item_index} alone needs a {item_bytes:,}-byte wire request, over the limit of "
                   f"{limit_bytes:,} bytes (client.max_message_bytes; the workers' server.max_message_bytes must "
                   f"allow it too): send smaller frames or PNG/JPEG-encoded items")
        super().__init__(request_id, message)
        self.args = (f"request {request_id!r} not sent: {message}",)

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):  # Ray pickles exceptions across processes
        return (type(self), (self.request_id, self.item_index, self.item_bytes, self.limit_bytes))


class RewardClientClosed(RewardServiceError):
    """The client was closed before the request was answered."""


@dataclass
class RewardResult:
    """The reward of one item as the caller sees it."""

    reward: float
    components: Dict[str, float] = field(default_factory=dict)
    label: str = ""
    model_version: str = ""
    worker_id: str = ""
    cached: bool = False
