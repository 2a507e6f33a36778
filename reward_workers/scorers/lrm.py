"""``lrm``: Large-Reward-Model rewards from a VLM by prompt logits (progress, completion, contrastive).

One PAIR item (previous frame, current frame) gives all three rewards of the LRM paper:

* progress: expected value of the 0..``progress_scale`` answer to "how far along is the robot"
  about the current frame, normalised to [0, 1];
* completion: P("yes") of "is the task complete" about the current frame (yes/no renormalised);
* contrastive: P("B") of "which image is further along, A or B" with A = previous, B = current.

``reward`` = ``weights.progress * progress + weights.completion * completion + weights.contrastive * contrastive``.
The 3 prompts of all items of a batch go to the backend together (padded forwards, micro-batched).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from vlmrl.reward_workers.scorers import prompts as P
from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScoreResult, ScorerError, register_scorer
from vlmrl.reward_workers.scorers.vlm_common import VLMBackendParams, check_items, expected_scale, make_backend, probs


@dataclass
class LrmWeights:
    """Weights of the three LRM rewards in the scalar ``reward``."""

    progress: float = 1.0
    completion: float = 0.0
    contrastive: float = 0.0


def lrm_requests(task: str, prev, cur, progress_scale: int = 10):
    """The three LRM prompts about (previous, current) frames, in order progress, completion, contrastive.
    The scorer asks them; LoRA training (learner/lrm_lora.py) teaches their answers with the same requests."""
    from vlmrl.reward_workers.backends.base import VLMRequest

    k = progress_scale
    return [
        VLMRequest(P.chat(P.user_turn(1, P.LRM_PROGRESS.format(task=task, scale=k))), [cur], P.scale_answers(k)),
        VLMRequest(P.chat(P.user_turn(1, P.LRM_COMPLETION.format(task=task))), [cur], P.LRM_COMPLETION_ANSWERS),
        VLMRequest(P.chat(P.user_turn(2, P.LRM_CONTRASTIVE.format(task=task))), [prev, cur],
                   P.LRM_CONTRASTIVE_ANSWERS),
    ]


@register_scorer
class LrmScorer(Scorer):
    """Scores (previous, current) frame pairs with a (LoRA-adapted) VLM into progress/completion/contrastive rewards."""

    name = "lrm"
    item_kind = ItemKind.PAIR

    @dataclass
    class Params(VLMBackendParams):
        weights: LrmWeights = field(default_factory=LrmWeights)
        """Weighted sum that makes ``reward`` from the three components."""
        progress_scale: int = 10
        """The progress question's answers are 0..progress_scale."""

    def __init__(self, params: "LrmScorer.Params") -> None:
        super().__init__(params)
        if params.progress_scale < 1:
            raise ScorerError(f"lrm: progress_scale must be >= 1, got {params.progress_scale}")
        self.backend = make_backend(params, self.name)

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def model_version(self) -> str:
        return f"{self.backend.model_version}-{P.PROMPT_VERSION}"

    def requests(self, task: str, item: np.ndarray):
        return lrm_requests(task, item[0], item[1], self.params.progress_scale)

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        check_items(self.name, tasks, items, 2)
        reqs = [r for t, it in zip(tasks, items) for r in self.requests(t, np.asarray(it))]
        logps = self.backend.score_candidates(reqs)
        w = self.params.weights
        out = []
        for i in range(len(items)):
            lp_prog, lp_comp, lp_cont = logps[3 * i: 3 * i + 3]
            comps = {
                "progress": expected_scale(lp_prog),
                "completion": float(probs(lp_comp)[0]),
                "contrastive": float(probs(lp_cont)[1]),
            }
            reward = w.progress * comps["progress"] + w.completion * comps["completion"] + w.contrastive * comps["contrastive"]
            out.append(ScoreResult(reward=float(reward), components=comps))
        return out

    def close(self) -> None:
        self.backend.close()
