"""Per-episode reward timelines: the frames an episode sent and the rewards they became, for logging.

:class:`RewardTimeline` collects, for one episode, its frames (subsampled to ``max_frames`` when
rendered), each scored frame's components and reward terms, and per step the learner's reward and
the env's ground-truth dense reward. :func:`render_timeline` draws the frames in a row with the
reward curves under them (matplotlib, Agg backend) as an RGB array for TensorBoard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np


@dataclass
class RewardTimeline:
    """One episode's frames and reward components (what the reward path did for it)."""

    episode_id: str
    max_frames: int = 12
    task_text: str = ""
    frames: Dict[int, np.ndarray] = field(default_factory=dict)
    """Step -> frame."""
    scores: Dict[int, float] = field(default_factory=dict)
    """Step -> the scorer's scalar reward of that frame."""
    components: Dict[int, Dict[str, float]] = field(default_factory=dict)
    """Step -> the scorer's raw components of that frame."""
    terms: Dict[int, Dict[str, float]] = field(default_factory=dict)
    """Step -> weighted reward terms placed at that step."""
    step_rewards: List[float] = field(default_factory=list)
    """The learner's reward of steps 1..T."""
    env_rewards: List[float] = field(default_factory=list)
    """Ground-truth dense reward of steps 1..T."""
    success: bool = False

    def add_frame(self, t: int, frame: np.ndarray) -> None:
        self.frames[t] = frame

    def add_score(self, t: int, result: Any, terms: Dict[str, float]) -> None:
        self.scores[t] = float(result.reward)
        self.components[t] = {k: float(v) for k, v in dict(getattr(result, "components", {}) or {}).items()}
        if terms:
            self.terms[t] = dict(terms)

    def add_steps(self, rewards: np.ndarray, env_rewards: np.ndarray, success: Optional[bool] = None) -> None:
        self.step_rewards.extend(float(r) for r in rewards)
        self.env_rewards.extend(float(r) for r in env_rewards)
        if success is not None:
            self.success = bool(success)

    def shown_frames(self) -> List[int]:
        """Steps of the (at most ``max_frames``) frames drawn, evenly spread, first and last included."""
        steps = sorted(self.frames)
        if len(steps) <= self.max_frames:
            return steps
        idx = np.unique(np.linspace(0, len(steps) - 1, self.max_frames).round().astype(int))
        return [steps[i] for i in idx]

    def compact(self) -> "RewardTimeline":
        """A copy holding only the frames that are drawn (what is shipped from env runners to the driver)."""
        keep = set(self.shown_frames())
        return RewardTimeline(self.episode_id, self.max_frames, self.task_text,
                              {t: f for t, f in self.frames.items() if t in keep}, dict(self.scores),
                              dict(self.components), dict(self.terms), list(self.step_rewards),
                              list(self.env_rewards), self.success)


def render_timeline(tl: RewardTimeline, title: str = "") -> np.ndarray:
    """Frames of the episode in a row, the reward curves under them; returns uint8 (H, W, 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = tl.shown_frames()
    n = max(1, len(shown))
    fig = plt.figure(figsize=(max(6.0, 1.1 * n), 4.6), dpi=80)
    grid = fig.add_gridspec(2, n, height_ratios=[1, 2.2])
    for j, t in enumerate(shown):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(tl.frames[t])
        ax.set_title(f"t={t}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    steps = np.arange(1, len(tl.step_rewards) + 1)
    if len(steps):
        ax.plot(steps, tl.step_rewards, label="learner reward (per step)", lw=1.2)
        ax.plot(steps, tl.env_rewards, label="ground-truth dense reward", lw=1.0, ls="--")
    if tl.scores:
        ts = sorted(tl.scores)
        ax.plot(ts, [tl.scores[t] for t in ts], "o-", ms=3, lw=0.8, label="scorer reward (frames)")
    for t in shown:
        ax.axvline(t, color="0.85", lw=0.5, zorder=0)
    ax.set_xlabel("env step")
    ax.legend(fontsize=7, loc="best")
    head = title or f"episode {tl.episode_id[:8]}"
    fig.suptitle(f"{head}  success={tl.success}  {tl.task_text}"[:120], fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img
