"""Per-episode bookkeeping of the reward path: which frames were sent, their pending scores, and the
per-step rewards they become once answered.

:class:`EpisodeRewardTracker` lives in an env runner for one episode (across RLlib's episode chunks:
an episode cut by ``truncate_episodes`` sampling keeps its tracker until it is done). Steps are
numbered globally within the episode: the reset frame is step 0, env step t is the t-th ``step()``
call. A chunk with ``t_started`` = s and length n holds steps s+1 .. s+n; its reward index i is
step s+1+i. The placement rule of rewards between frames is :mod:`vlmrl.actors.reward_composer`'s.
"""

from __future__ import annotations

import collections
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional

import numpy as np

from vlmrl.actors.reward_composer import RewardComposer
from vlmrl.actors.timeline import RewardTimeline

ITEM_KINDS = ("frame", "pair", "window")


class RewardPathError(RuntimeError):
    """A transition's reward could not be obtained (or bookkeeping broke); the iteration must fail."""


@dataclass
class _PendingFrame:
    t: int
    future: concurrent.futures.Future
    submitted_at: float
    done_at: List[float] = field(default_factory=list)


@dataclass
class ChunkRewards:
    """The scorer-derived rewards of one episode chunk."""

    rewards: np.ndarray
    """Per-step reward of the chunk's steps (sum of the component terms; 0 between frames)."""
    terms: Dict[str, np.ndarray]
    """Per-step weighted contribution of each configured component."""
    frame_steps: List[int]
    """Steps (global within the episode) of the frames whose interval closed in this chunk (reset frame excluded)."""
    scores: List[float]
    """The scorer's scalar reward of each of those frames."""
    latencies_ms: List[float]
    cached: List[bool]


class EpisodeRewardTracker:
    """Frames of one episode -> scoring requests (submitted at once) -> per-step rewards (see module doc)."""

    def __init__(self, episode_id: str, item_kind: str, composer: RewardComposer,
                 submit: Callable[[str, List[np.ndarray], str], concurrent.futures.Future],
                 window_size: int = 4, timeline_max_frames: int = 12) -> None:
        if item_kind not in ITEM_KINDS:
            raise ValueError(f"reward.item_kind must be one of {ITEM_KINDS}, got {item_kind!r}")
        if item_kind == "window" and window_size < 1:
            raise ValueError(f"reward.window_size must be >= 1, got {window_size}")
        self.episode_id = episode_id
        self.item_kind = item_kind
        self.composer = composer
        self._submit = submit
        keep = {"frame": 1, "pair": 2, "window": window_size}[item_kind]
        self._recent: Deque[np.ndarray] = collections.deque(maxlen=keep)
        self._pending: Deque[_PendingFrame] = collections.deque()
        self._last: Optional[tuple[int, Any]] = None  # (step, result) of the last frame whose interval closed
        self._window_size = window_size
        self.timeline = RewardTimeline(episode_id=episode_id, max_frames=timeline_max_frames)

    # ------------------------------------------------------------------ sampling side
    def add_frame(self, t: int, frame: np.ndarray, task_text: str) -> None:
        """Submit the item that ends with this frame (asynchronously; scoring overlaps sampling)."""
        if self._pending and t <= self._pending[-1].t:
            raise RewardPathError(f"episode {self.episode_id}: frame of step {t} after one of step {self._pending[-1].t}")
        if not self._recent and t != 0:
            raise RewardPathError(f"episode {self.episode_id}: first frame is at step {t}; the env must "
                                  f"return a frame in its reset info (capture_frames on)")
        frame = np.asarray(frame)
        self._recent.append(frame)
        if self.item_kind == "frame":
            item = frame
        elif self.item_kind == "pair":
            item = np.stack([self._recent[0], frame])  # (previous, current); (reset, reset) at step 0
        else:
            frames = list(self._recent)
            frames = [frames[0]] * (self._window_size - len(frames)) + frames
            item = np.stack(frames)
        pending = _PendingFrame(t, self._submit(task_text, [item], self.item_kind), time.perf_counter())
        pending.future.add_done_callback(lambda _f, p=pending: p.done_at.append(time.perf_counter()))
        self._pending.append(pending)
        self.timeline.add_frame(t, frame)

    def pending_futures(self) -> List[concurrent.futures.Future]:
        return [p.future for p in self._pending]

    # ------------------------------------------------------------------ sample end
    def assign(self, t_started: int, length: int, deadline: float) -> ChunkRewards:
        """Wait for the frames closing intervals in steps t_started+1 .. t_started+length and place their rewards.

        Raises :class:`RewardPathError` when a frame's reward cannot be obtained (the client raised after
        its retries) or does not come before ``deadline`` (a ``time.monotonic()`` value).
        """
        t_end = t_started + length
        rewards = np.zeros(length, np.float64)
        terms: Dict[str, np.ndarray] = {k: np.zeros(length, np.float64) for k in self.composer.weights}
        out = ChunkRewards(rewards, terms, [], [], [], [])
        while self._pending and self._pending[0].t <= t_end:
            p = self._pending[0]
            try:
                result = p.future.result(timeout=max(0.0, deadline - time.monotonic()))[0]
            except concurrent.futures.TimeoutError as e:
                raise RewardPathError(f"episode {self.episode_id}: no reward for the frame of step {p.t} within "
                                      f"reward.wait_timeout_s; failing the iteration instead of training on "
                                      f"missing rewards") from e
            except Exception as e:  # noqa: BLE001 - the client's RewardUnavailableError & co.
                # The client's error is carried in the message only: Ray ships exceptions between processes
                # by pickling, and the client's error classes take constructor arguments pickle cannot replay.
                raise RewardPathError(f"episode {self.episode_id}: the reward of the frame of step {p.t} could not "
                                      f"be obtained from the reward service: {type(e).__name__}: {e}") from None
            self._pending.popleft()
            if p.done_at:
                out.latencies_ms.append((p.done_at[0] - p.submitted_at) * 1e3)
            out.cached.append(bool(getattr(result, "cached", False)))
            if self._last is None:
                if p.t != 0:
                    raise RewardPathError(f"episode {self.episode_id}: frame of step {p.t} has no preceding frame")
                self.composer.check(result)
                self._last = (p.t, result)
                self.timeline.add_score(p.t, result, {})
                continue
            i = p.t - t_started - 1
            if not 0 <= i < length:
                raise RewardPathError(f"episode {self.episode_id}: frame of step {p.t} falls outside the chunk "
                                      f"of steps {t_started + 1}..{t_end} (bookkeeping error)")
            step_terms = self.composer.interval_terms(result, self._last[1], p.t - self._last[0])
            for k, v in step_terms.items():
                terms[k][i] = v
            rewards[i] = sum(step_terms.values())
            out.frame_steps.append(p.t)
            out.scores.append(float(result.reward))
            self.timeline.add_score(p.t, result, step_terms)
            self._last = (p.t, result)
        return out
