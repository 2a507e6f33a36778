"""``preference``: RL-VLM-F pairwise preference labels from a VLM by prompt logits.

A PAIR item (first, second) is asked "which image is closer to achieving the task" with answers
"1", "2" and "0" (no preference). Components are the answer probabilities renormalised over these
three: ``p_first``, ``p_second``, ``p_none``; ``label`` is the most probable of first/second/none
(what RL-VLM-F trains its Bradley-Terry reward model on). ``reward`` = p_second - p_first, in
[-1, 1]: positive when the second (later) frame is preferred, so a (previous, current) pair gives a
dense improvement signal directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vlmrl.reward_workers.models import prompts as P
from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScoreResult, register_scorer
from vlmrl.reward_workers.scorers.vlm_common import VLMBackendParams, check_items, make_backend, probs

LABELS = ("first", "second", "none")


@register_scorer
class PreferenceScorer(Scorer):
    """Labels which of two frames is closer to the goal (RL-VLM-F), with its probabilities."""

    name = "preference"
    item_kind = ItemKind.PAIR

    @dataclass
    class Params(VLMBackendParams):
        pass

    def __init__(self, params: "PreferenceScorer.Params") -> None:
        super().__init__(params)
        self.backend = make_backend(params, self.name)

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def model_version(self) -> str:
        return f"{self.backend.model_version}-{P.PROMPT_VERSION}"

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        from vlmrl.reward_workers.backends.base import VLMRequest

        check_items(self.name, tasks, items, 2)
        reqs = [VLMRequest(P.chat(P.user_turn(2, P.PREFERENCE.format(task=t))), [it[0], it[1]], P.PREFERENCE_ANSWERS)
                for t, it in zip(tasks, items)]
        out = []
        for lp in self.backend.score_candidates(reqs):
            p = probs(lp)
            comps = {"p_first": float(p[0]), "p_second": float(p[1]), "p_none": float(p[2])}
            out.append(ScoreResult(reward=float(p[1] - p[0]), components=comps, label=LABELS[int(np.argmax(p))]))
        return out

    def close(self) -> None:
        self.backend.close()
