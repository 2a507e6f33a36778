"""The ``info`` keys every vlmrl env returns (ManiSkill wrapper and the toy test env alike).

The actors' reward path reads frames and ground truth from the step ``info`` through these names,
so an env that follows them plugs into ``vlmrl train``. Frames are rendered at reset (step 0),
every ``frame_stride`` steps and at the end of an episode (:func:`frame_due`).
"""

from __future__ import annotations

FRAME = "frame"
"""uint8 (H, W, 3) camera frame; present only on frame steps."""
HAS_FRAME = "has_frame"
"""bool: this step carries a frame."""
FRAME_STEP = "frame_step"
"""The env step the frame shows (present with ``frame``)."""
STEP = "step"
"""Env steps since reset (0 in the reset info)."""
SUCCESS = "success"
"""Ground-truth task success (evaluation only; never a learner reward unless configured)."""
ENV_REWARD = "env_reward"
"""Ground-truth normalized dense reward in [0, 1] (evaluation and reward-correlation metrics)."""
TASK_TEXT = "task_text"
"""The episode's task description; the reward service scores frames against it."""

REWARD_MODES = ("none", "sparse", "dense")
"""What an env returns as its own reward: 0, 1.0 on success, or ``env_reward``."""


def frame_due(step: int, stride: int, episode_over: bool = False) -> bool:
    """Whether a frame is rendered at ``step``: at reset, every ``stride`` steps, and at episode end."""
    return episode_over or step % stride == 0
