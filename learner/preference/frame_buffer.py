"""The driver's bounded buffer of recent frames and the random pairs drawn from it for labelling.

RL-VLM-F queries the VLM on pairs of single frames drawn uniformly from recent experience. Each
:class:`FrameRecord` keeps its ground-truth dense reward so the learned reward can be checked
against it (``env_reward``; evaluation only, never shown to the labeller or the reward model).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np


@dataclass
class FrameRecord:
    """One rendered frame of an episode, with its task text and the simulator's state values at that frame.

    ``env_reward`` (the env's normalised dense reward) and ``success`` travel with the frame from the env runner
    so that the ground-truth oracle labeller (:mod:`~vlmrl.learner.preference.oracle`) and the evaluation metrics
    can rank frames without reading pixels; neither is shown to a VLM labeller or the reward model.
    """

    frame: np.ndarray
    task: str
    env_reward: float
    episode_id: str = ""
    step: int = 0
    success: Optional[bool] = None
    """Ground-truth task success at this frame (None: the env did not say)."""


class FrameBuffer:
    """Bounded FIFO of recent :class:`FrameRecord` s (the pair source of the preference mode)."""

    def __init__(self, capacity: int) -> None:
        if int(capacity) < 2:
            raise ValueError(f"preference.frame_buffer_size must be >= 2 (pairs need two frames), got {capacity}")
        self._frames: deque[FrameRecord] = deque(maxlen=int(capacity))
        self.added = 0

    def __len__(self) -> int:
        return len(self._frames)

    def records(self) -> List[FrameRecord]:
        """The buffered frames, oldest first (a copy of the list; what a checkpoint saves)."""
        return list(self._frames)

    def extend(self, records: Iterable[FrameRecord]) -> None:
        for r in records:
            self._frames.append(r)
            self.added += 1

    def sample_pairs(self, n: int, rng: np.random.Generator) -> List[Tuple[FrameRecord, FrameRecord]]:
        """Up to ``n`` pairs of two distinct frames with the same task text and frame shape (uniformly drawn)."""
        groups: Dict[tuple, List[FrameRecord]] = {}
        for r in self._frames:
            groups.setdefault((r.task, r.frame.shape), []).append(r)
        groups = {k: v for k, v in groups.items() if len(v) >= 2}
        if not groups or n <= 0:
            return []
        keys = list(groups)
        sizes = np.array([len(groups[k]) for k in keys], np.float64)
        out = []
        for g in rng.choice(len(keys), size=int(n), p=sizes / sizes.sum()):
            frames = groups[keys[g]]
            i, j = rng.choice(len(frames), size=2, replace=False)
            out.append((frames[i], frames[j]))
        return out
