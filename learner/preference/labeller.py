"""Preference labels for frame pairs from the labeller pool (reward workers running a PAIR scorer).

:class:`PairLabeller` sends pairs through a :class:`~vlmrl.reward_workers.client.RewardClient`
(batched requests, retried on other workers by the client) and sorts the answers: ``first`` /
``second`` become Bradley-Terry targets, ``none`` is dropped as RL-VLM-F does (but counted), and a
pair whose request failed after the client's retries is a *label failure*: counted, its error kept
and logged, never silently dropped.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np

from vlmrl.learner.preference.frame_buffer import FrameRecord
from vlmrl.reward_workers.client import RewardServiceError

log = logging.getLogger(__name__)

LABELS = ("first", "second", "none")


@dataclass
class LabelledPair:
    """A pair with a preference: ``y`` = 1.0 when the second frame is preferred, 0.0 when the first is."""

    first: FrameRecord
    second: FrameRecord
    y: float


@dataclass
class LabelBatch:
    """One round of labelling: the kept pairs and the counts of every outcome."""

    pairs: List[LabelledPair] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=lambda: {k: 0 for k in (*LABELS, "failed", "unknown")})
    errors: List[str] = field(default_factory=list)

    @property
    def asked(self) -> int:
        return sum(self.counts.values())

    def add(self, a: FrameRecord, b: FrameRecord, label) -> None:
        """Sort one answer: ``first`` / ``second`` become pairs, ``none`` is counted, anything else is a malformed
        label (counted as ``unknown``, a label failure, with the answer in ``errors``)."""
        label = label if label in LABELS else "unknown"
        self.counts[label] += 1
        if label == "first":
            self.pairs.append(LabelledPair(a, b, 0.0))
        elif label == "second":
            self.pairs.append(LabelledPair(a, b, 1.0))

    def fail(self, n: int, error: str) -> None:
        """``n`` pairs got no label (request failed, timed out, or the labeller could not judge them)."""
        self.counts["failed"] += int(n)
        self.errors.append(error)

    @property
    def failures(self) -> int:
        return self.counts["failed"] + self.counts["unknown"]


def report(totals: Dict[str, int], out: LabelBatch) -> LabelBatch:
    """Add a batch to a labeller's running totals and log its failures (every labeller ends with this)."""
    totals.update(out.counts)
    if out.failures:
        log.warning("preference labels: %d of %d pairs failed, %d malformed labels; last errors: %s",
                    out.counts["failed"], out.asked, out.counts["unknown"], out.errors[-3:])
    return out


class PairLabeller:
    """Asks the labeller pool which frame of each pair is closer to the task goal (see module doc)."""

    def __init__(self, client, batch: int = 16, timeout_s: float = 600.0) -> None:
        if int(batch) < 1:
            raise ValueError(f"preference.label_batch must be >= 1, got {batch}")
        self.client = client
        self.batch = int(batch)
        self.timeout_s = float(timeout_s)
        self.totals: Dict[str, int] = collections.Counter()

    def label(self, pairs: Sequence[Tuple[FrameRecord, FrameRecord]]) -> LabelBatch:
        out = LabelBatch()
        by_task: Dict[str, List[Tuple[FrameRecord, FrameRecord]]] = collections.defaultdict(list)
        for a, b in pairs:
            by_task[a.task].append((a, b))
        sent = []
        for task, group in by_task.items():
            for i in range(0, len(group), self.batch):
                chunk = group[i:i + self.batch]
                items = [np.stack([a.frame, b.frame]) for a, b in chunk]
                sent.append((chunk, self.client.submit(task, items, kind="pair")))
        done, _ = concurrent.futures.wait([f for _, f in sent], timeout=self.timeout_s)
        for chunk, fut in sent:
            if fut not in done:
                # not cancelled: the client resolves every request exactly once and would find it cancelled
                out.fail(len(chunk), f"no answer within preference.label_timeout_s={self.timeout_s}")
                continue
            try:
                results = fut.result()
            except RewardServiceError as e:
                out.fail(len(chunk), f"{type(e).__name__}: {e}")
                continue
            for (a, b), r in zip(chunk, results):
                if r.label not in LABELS:
                    out.errors.append(f"labeller answered label {r.label!r} (expected one of {LABELS})")
                out.add(a, b, r.label)
        return report(self.totals, out)
