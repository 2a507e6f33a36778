"""The synthetic scorer: a system-measurement stand-in for a reward model (NOT a reward model).

It exists to measure and test the reward service (batching, routing, failover, throughput)
without a model: each batch costs ``fixed_ms + per_item_ms * n`` of wall time, spent in
``time.sleep`` so that, like a call into an accelerator, it releases the GIL and leaves the CPU
to the event loop. Its reward is a deterministic function of the item's pixels (mean pixel /
255), so tests can check that each answer belongs to its item; it carries no task meaning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScorerError, ScoreResult, register_scorer


@register_scorer
class SyntheticScorer(Scorer):
    """Deterministic, content-derived rewards at a configurable, accelerator-like cost (see module doc).

    Components: ``mean_pixel`` (= reward) and ``progress`` (mean of the last frame / 255). For
    pairs, ``label`` says which frame is brighter (``first``/``second``/``none``).
    """

    name = "synthetic"
    item_kind = ItemKind.FRAME

    @dataclass
    class Params:
        item_kind: str = "frame"
        """Which item kind this worker takes: ``frame``, ``pair`` or ``window``."""
        window: int = 8
        """Frames per item when ``item_kind`` is ``window``."""
        fixed_ms: float = 2.0
        """Cost of one scorer call regardless of its size (kernel launch, transfer)."""
        per_item_ms: float = 0.5
        """Extra cost per item in a batch."""
        model_version: str = "synthetic-1"
        """Reported model version (change it to emulate a weights update)."""

    def __init__(self, params: "SyntheticScorer.Params") -> None:
        super().__init__(params)
        try:
            self.item_kind = ItemKind(params.item_kind)
        except ValueError:
            raise ScorerError(f"synthetic scorer: item_kind must be frame, pair or window, got {params.item_kind!r}")
        if params.window < 1:
            raise ScorerError(f"synthetic scorer: window must be >= 1, got {params.window}")
        if params.fixed_ms < 0 or params.per_item_ms < 0:
            raise ScorerError("synthetic scorer: fixed_ms and per_item_ms must be >= 0")
        self.calls = 0
        """Number of score_batch calls so far (tests read it to see batching)."""

    @property
    def model_id(self) -> str:
        return f"synthetic(fixed_ms={self.params.fixed_ms}, per_item_ms={self.params.per_item_ms})"

    @property
    def model_version(self) -> str:
        return self.params.model_version

    @property
    def frames_per_item(self) -> int | None:
        return {ItemKind.FRAME: 1, ItemKind.PAIR: 2, ItemKind.WINDOW: self.params.window}[self.item_kind]

    @staticmethod
    def expected_reward(item: np.ndarray) -> float:
        """The reward this scorer gives an item: mean pixel value / 255."""
        return float(np.asarray(item, dtype=np.float64).mean() / 255.0)

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        self.calls += 1
        cost_s = (self.params.fixed_ms + self.params.per_item_ms * len(items)) / 1000.0
        if cost_s > 0:
            time.sleep(cost_s)
        results = []
        for item in items:
            reward = self.expected_reward(item)
            comps = {"mean_pixel": reward, "progress": float(item[-1].mean() / 255.0)}
            label = ""
            if self.item_kind == ItemKind.PAIR:
                a, b = float(item[0].mean()), float(item[1].mean())
                label = "first" if a > b else "second" if b > a else "none"
            results.append(ScoreResult(reward=reward, components=comps, label=label))
        return results
