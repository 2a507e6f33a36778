"""``toy_reach_oracle``: a GROUND-TRUTH preference oracle for the ToyReach test env (NOT a VLM, not a reward model).

It stands in for the VLM labeller of the preference mode in CPU tests and smoke runs: for a PAIR
of ToyReach frames it measures the agent-goal distance from the pixels (white agent square,
green goal disk, see :meth:`vlmrl.envs.toy_reach_env.ToyReachEnv.render`) and prefers the frame
where the agent is closer; ``none`` when the distances differ by less than ``tie_px`` pixels
(dropped like RL-VLM-F's "no preference"). Components follow the ``preference`` scorer
(``p_first``, ``p_second``, ``p_none``, here 0/1) plus the two distances; ``reward`` =
(d_first - d_second) / frame diagonal. Frames of any other env get meaningless labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScorerError, ScoreResult, register_scorer


def toy_agent_goal_distance(frame: np.ndarray) -> float:
    """Pixel distance between the white agent square and the green goal disk of a ToyReach frame."""
    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[-1] < 3:
        raise ScorerError(f"toy_reach_oracle: expected an (H, W, 3) frame, got shape {f.shape}")
    rgb = f[..., :3].astype(np.int16)
    agent = np.argwhere((rgb > 240).all(axis=-1))
    goal = np.argwhere((rgb[..., 1] > 150) & (rgb[..., 0] < 100) & (rgb[..., 2] < 120))
    if len(agent) == 0:
        raise ScorerError("toy_reach_oracle: no agent (white square) in the frame; is this a ToyReach frame?")
    if len(goal) == 0:  # the agent square covers the whole disk
        return 0.0
    return float(np.linalg.norm(agent.mean(axis=0) - goal.mean(axis=0)))


@register_scorer
class ToyReachOracleScorer(Scorer):
    """Ground-truth pair labeller for ToyReach frames (see module doc); a test oracle, not a learned model."""

    name = "toy_reach_oracle"
    item_kind = ItemKind.PAIR

    @dataclass
    class Params:
        tie_px: float = 0.5
        """Distances closer than this many pixels are a tie (label ``none``)."""

    @property
    def model_version(self) -> str:
        return f"oracle-tie{self.params.tie_px}"

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        out = []
        for item in items:
            d1, d2 = toy_agent_goal_distance(item[0]), toy_agent_goal_distance(item[1])
            diag = float(np.hypot(*item.shape[1:3]))
            label = "none" if abs(d1 - d2) < self.params.tie_px else ("first" if d1 < d2 else "second")
            comps = {"p_first": float(label == "first"), "p_second": float(label == "second"),
                     "p_none": float(label == "none"), "dist_first_px": d1, "dist_second_px": d2}
            out.append(ScoreResult(reward=(d1 - d2) / diag, components=comps, label=label))
        return out
