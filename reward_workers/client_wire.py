"""The reward client's wire conversion: caller items -> ``reward_pb2`` requests, responses -> :class:`RewardResult`.

Pure functions, no I/O (the facade :mod:`vlmrl.reward_workers.client` calls them on the caller's thread, the
dispatcher on the client's loop):

* :func:`to_items` turns numpy frames / pairs / windows (or ready ``reward_pb2.Item``\\ s) into wire items;
* :func:`split_request` cuts one caller request into wire requests of at most ``max_items`` items and
  ``max_bytes`` serialized bytes each (one wire request must pass gRPC's message limit), and raises
  :class:`ItemTooLarge` when a single item cannot fit in any request;
* :func:`results_of` reads the rewards of an answered wire request; :func:`status_code` and
  :data:`RETRIABLE_CODES` classify a per-request error code.
"""

from __future__ import annotations

from typing import Any, List, Sequence

import grpc
import numpy as np

from vlmrl.reward_workers.client_types import RewardResult
from vlmrl.reward_workers.proto import reward_pb2
from vlmrl.reward_workers.scorers.base import ItemKind

_CODES = {c.value[0]: c for c in grpc.StatusCode}
# Errors that say "this worker cannot answer now": resend to another worker.
RETRIABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
})
_ITEMS_TAG_BYTES = 1
"""Bytes of the tag of ``ScoreRequest.items`` (field 3, length-delimited) in front of each item."""


class ItemTooLarge(ValueError):
    """One item alone makes a wire request bigger than ``limit_bytes`` (it cannot be split further)."""

    def __init__(self, index: int, request_bytes: int, limit_bytes: int) -> None:
        self.index = index
        self.request_bytes = request_bytes
        self.limit_bytes = limit_bytes
        super().__init__(f"item {index} needs a {request_bytes}-byte request, over the limit of {limit_bytes} bytes")


def status_code(code: int) -> grpc.StatusCode:
    """The gRPC status of a per-request error code (``ScoreResponse.error.code``); UNKNOWN for unknown numbers."""
    return _CODES.get(code, grpc.StatusCode.UNKNOWN)


def to_items(items: Sequence[Any], kind: ItemKind | str) -> List[reward_pb2.Item]:
    """Wire items from a caller's items: ``(N, H, W, C)`` frames, ``(N, k, H, W, C)`` pairs/windows, a list of
    such arrays, or ready ``reward_pb2.Item``\\ s (passed through)."""
    if isinstance(items, reward_pb2.Item):
        raise TypeError("items must be a sequence of items (wrap a single Item in a list)")
    if isinstance(items, np.ndarray) and items.ndim < 4:
        raise ValueError(f"an item array must be (N, H, W, C) frames or (N, k, H, W, C) pairs/windows, "
                         f"got shape {items.shape} (wrap a single frame in a list)")
    out = []
    make_item = None
    for it in items:
        if isinstance(it, reward_pb2.Item):
            out.append(it)
            continue
        if make_item is None:
            from vlmrl.reward_workers.frames import make_item
        out.append(make_item(np.asarray(it), ItemKind(kind)))
    return out


def _varint_bytes(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def split_request(request_id: str, task: str, scorer: str, items: Sequence[reward_pb2.Item], max_items: int,
                  max_bytes: int) -> List[reward_pb2.ScoreRequest]:
    """One caller request as wire requests, in order: consecutive chunks of at most ``max_items`` items whose
    serialized request is at most ``max_bytes``. A single chunk keeps ``request_id``; several are named
    ``request_id#0``, ``request_id#1``, ... Raises :class:`ItemTooLarge` (nothing built) when one item alone does
    not fit."""
    # Bytes each item adds to a request: its tag, its length prefix, itself.
    costs = [_ITEMS_TAG_BYTES + _varint_bytes(n) + n for n in (it.ByteSize() for it in items)]
    whole = reward_pb2.ScoreRequest(request_id=request_id, task=task, scorer=scorer).ByteSize() + sum(costs)
    if len(items) <= max_items and whole <= max_bytes:
        return [reward_pb2.ScoreRequest(request_id=request_id, task=task, items=items, scorer=scorer)]
    # Several chunks: a request's fields besides its items, counted with the longest id a chunk can get.
    longest_id = request_id if len(items) <= 1 else f"{request_id}#{len(items) - 1}"
    header = reward_pb2.ScoreRequest(request_id=longest_id, task=task, scorer=scorer).ByteSize()
    for i, cost in enumerate(costs):
        if header + cost > max_bytes:
            raise ItemTooLarge(i, header + cost, max_bytes)
    bounds, start, size = [], 0, header
    for i, cost in enumerate(costs):
        if i > start and (i - start >= max_items or size + cost > max_bytes):
            bounds.append((start, i))
            start, size = i, header
        size += cost
    bounds.append((start, len(costs)))
    return [reward_pb2.ScoreRequest(request_id=f"{request_id}#{k}", task=task, items=items[a:b], scorer=scorer)
            for k, (a, b) in enumerate(bounds)]


def results_of(resp: reward_pb2.ScoreResponse) -> List[RewardResult]:
    """The caller's view of an answered wire request, one :class:`RewardResult` per item in order."""
    return [RewardResult(reward=r.reward, components=dict(r.components), label=r.label,
                         model_version=r.model_version or resp.model_version, worker_id=resp.worker_id,
                         cached=r.cached)
            for r in resp.rewards]
