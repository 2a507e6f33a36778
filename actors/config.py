"""Config schema of how env runners turn scorer answers into rewards (``reward`` section of the config tree,
assembled by :mod:`vlmrl.system.config`). Every field is documented where it is declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional


@dataclass
class RewardConfig:
    """How the actors turn the reward service's answers into the per-step rewards the learner trains on
    (``vlmrl.actors``). Frames come every ``env.frame_stride`` steps; the reward of the interval that
    ends at a frame is placed on that frame's step (steps between frames get 0 from the scorer terms)."""

    item_kind: str = "auto"
    """What one scoring request item is: ``frame`` (current frame), ``pair`` (previous frame, current frame),
    ``window`` (the last ``window_size`` frames, oldest first), or ``auto`` (ask a reward worker's Info)."""
    window_size: int = 4
    """Frames per item when ``item_kind`` is ``window`` (the first frame is repeated at an episode's start)."""
    components: Dict[str, float] = field(default_factory=lambda: {"reward": 1.0})
    """Weighted sum of scorer outputs: ``reward`` is the scorer's scalar reward, any other name one of its
    components (``progress``, ``completion``, ``contrastive``, ``cosine``, ...); a missing name fails loudly.
    A YAML ``components:`` table or ``reward.components={...}`` replaces this default, it does not add to it."""
    potential_components: List[str] = field(default_factory=list)
    """Components (names of ``components``) turned into per-step rewards as potential differences:
    value(frame_j) - value(frame_{j-1}) at frame j's step (progress-type outputs). The others are rates:
    value(frame_j) * (steps since the previous frame), so a return does not depend on ``frame_stride``."""
    env_reward_weight: float = 0.0
    """Weight of the env's own reward (per ``env.reward_mode``: none / sparse success / dense) added to every
    step, e.g. 1.0 with ``env.reward_mode=sparse`` for RG-VLM style VLM + sparse success. Ground truth
    reaches the learner only through this."""
    addresses: Optional[List[str]] = None
    """Static reward worker addresses (``host:port``) instead of the pool's registry (a pool started elsewhere)."""
    wait_timeout_s: float = 600.0
    """Longest wait at the end of a sample for outstanding rewards before the iteration fails."""
    keep_frames_in_infos: bool = False
    """Keep frames in the episodes' infos after scoring (they are otherwise dropped before the learner)."""
    timeline_max_frames: int = 12
    """Frames kept per episode for the reward-timeline image in TensorBoard."""
