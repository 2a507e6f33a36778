"""The ground-truth preference oracle of the preference mode (PEBBLE / RL-VLM-F's "GT preference" baseline).

:class:`GroundTruthLabeller` labels a pair of :class:`~.frame_buffer.FrameRecord` s from the simulator state
values that travel with the frames (collected by the env runners next to each frame, never read off pixels):

1. success first: a frame whose env reports success is preferred over one that does not;
2. otherwise the frame with the higher normalised dense reward (``env_reward``, in [0, 1]) is preferred;
3. ``none`` when both succeed, or neither does and the dense rewards differ by less than ``tie_threshold``
   (dropped like RL-VLM-F's "no preference");
4. with probability ``epsilon`` a first/second label is flipped (a seeded RNG): the label-error rate of an
   imperfect VLM. ``none`` is never flipped.

A record without a finite dense reward cannot be judged: its pair is a label failure with the reason, counted
like a failed VLM request (``preference.max_label_failure_fraction``). It works for every env whose ``info``
carries ``env_reward`` / ``success`` (every ManiSkill task of ``envs/tasks.py`` and ToyReach); it is a test and
benchmark oracle, NOT a learned model. :func:`oracle_label` (no flips) is also the reference the mode's label
agreement metric compares any labeller with.
"""

from __future__ import annotations

import collections
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from vlmrl.learner.preference.frame_buffer import FrameRecord
from vlmrl.learner.preference.labeller import LabelBatch, report


def oracle_label(a: FrameRecord, b: FrameRecord, tie_threshold: float) -> Optional[str]:
    """``first`` / ``second`` / ``none`` by success, then dense reward; None when a record has no dense reward."""
    ra, rb = float(a.env_reward), float(b.env_reward)
    if not (math.isfinite(ra) and math.isfinite(rb)):
        return None
    sa, sb = bool(a.success), bool(b.success)
    if sa != sb:
        return "first" if sa else "second"
    if sa and sb:
        return "none"
    if abs(ra - rb) < tie_threshold:
        return "none"
    return "first" if ra > rb else "second"


class GroundTruthLabeller:
    """Labels pairs from the frames' simulator state values (see module doc); same batches and totals as
    :class:`~.labeller.PairLabeller`, so the mode counts and reports its answers the same way."""

    def __init__(self, tie_threshold: float = 0.01, epsilon: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= float(tie_threshold) <= 1.0:
            raise ValueError(f"preference.oracle_tie_threshold must be in [0, 1], got {tie_threshold}")
        if not 0.0 <= float(epsilon) <= 0.5:
            raise ValueError(f"preference.oracle_epsilon (label-error rate) must be in [0, 0.5], got {epsilon}")
        self.tie_threshold = float(tie_threshold)
        self.epsilon = float(epsilon)
        self.rng = np.random.default_rng(int(seed) + 7919)
        self.totals: Dict[str, int] = collections.Counter()
        self.flipped = 0

    def label(self, pairs: Sequence[Tuple[FrameRecord, FrameRecord]]) -> LabelBatch:
        out = LabelBatch()
        for a, b in pairs:
            label = oracle_label(a, b, self.tie_threshold)
            if label is None:
                out.fail(1, f"oracle: no finite env_reward for frames {a.episode_id}:{a.step} / {b.episode_id}:{b.step} "
                            f"(the env's info must carry env_reward)")
                continue
            if label != "none" and self.epsilon > 0 and self.rng.random() < self.epsilon:
                label = "second" if label == "first" else "first"
                self.flipped += 1
            out.add(a, b, label)
        return report(self.totals, out)
