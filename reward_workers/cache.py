"""The reward cache: an LRU of item rewards, so a worker does not score the same frames twice.

Keys are (scorer name, model version, task, blake2b digest of the item's shape + bytes): a new
model version or another task never hits an old entry. Used only from the server's event loop
(not thread-safe by design).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Hashable

import numpy as np

from vlmrl.reward_workers.scorers.base import ScoreResult


def item_digest(item: np.ndarray) -> bytes:
    """A 16-byte digest of an item's shape, dtype and bytes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((item.shape, str(item.dtype))).encode())
    h.update(np.ascontiguousarray(item).data)
    return h.digest()


def cache_key(scorer: str, model_version: str, task: str, item: np.ndarray, digest: bytes | None = None) -> tuple:
    """The cache key of one item scored by ``scorer`` at ``model_version`` against ``task`` (``digest``: the item's
    :func:`item_digest`, if already computed)."""
    return (scorer, model_version, task, item_digest(item) if digest is None else digest)


class RewardCache:
    """LRU map from :func:`cache_key` to :class:`ScoreResult`; counts its hits and misses.

    Sits in front of the dynamic batcher: a hit skips the scorer and is answered with
    ``cached=true``. ``capacity`` <= 0 makes every lookup a miss that is not counted.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._entries: OrderedDict[Hashable, ScoreResult] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> ScoreResult | None:
        if not self.enabled:
            return None
        result = self._entries.get(key)
        if result is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return result

    def put(self, key: Hashable, result: ScoreResult) -> None:
        if not self.enabled:
            return
        self._entries[key] = result
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evictions += 1

    def clear(self) -> None:
        self._entries.clear()
