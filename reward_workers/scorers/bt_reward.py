"""``bt_reward``: the learned Bradley-Terry reward r(s) of the preference mode (RL-VLM-F), hot-swappable.

A thin adapter over :class:`vlmrl.reward_workers.models.bt_reward_model.BtRewardModel`: the
scorer's ``reward`` is the ensemble mean (standardised when the trainer set the model's
``reward_shift`` / ``reward_scale``, ``preference.normalize_reward``; ``raw_reward`` is the mean before), ``ensemble_std``
its spread. The same
:class:`BtRewardModel` is trained by the ``RewardModelTrainer`` actor
(:mod:`vlmrl.learner.preference.reward_model_trainer`) on preference labels; its new weights reach
running reward workers through :meth:`BtRewardScorer.update_weights` (bytes of a ``state_dict``,
called between batches by the server), and ``model_version`` is the version the trainer gave them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from vlmrl.reward_workers.models.bt_reward_model import BtModelParams, BtRewardModel, load_state_bytes
from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScorerError, ScoreResult, register_scorer
from vlmrl.reward_workers.scorers.cnn import file_version


@register_scorer
class BtRewardScorer(Scorer):
    """Frame scorer running the learned Bradley-Terry reward model; takes hot-swapped weights (see module doc)."""

    name = "bt_reward"
    item_kind = ItemKind.FRAME

    @dataclass
    class Params(BtModelParams):
        weights: Optional[str] = None
        """Path to a ``state_dict`` file of BtRewardModel (e.g. a run's ``reward_model/latest.pt``); None = init."""
        device: str = "cpu"
        """``cpu``, ``cuda``, ``cuda:N`` or ``auto``."""

    def __init__(self, params: "BtRewardScorer.Params") -> None:
        super().__init__(params)
        device = "cuda" if params.device == "auto" and torch.cuda.is_available() else params.device
        device = "cpu" if device == "auto" else device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ScorerError(f"bt_reward: device {device!r} requested but CUDA is not available")
        self.device = torch.device(device)
        self.model = BtRewardModel(params)
        self._version = f"init-{params.seed}"
        if params.weights:
            path = Path(params.weights)
            if not path.is_file():
                raise ScorerError(f"bt_reward: weights file {params.weights!r} does not exist")
            load_state_bytes(self.model, path.read_bytes())
            self._version = file_version(path)
        self.model.to(self.device).eval()

    @property
    def model_id(self) -> str:
        return f"bt_reward:{self.params.weights or 'learned'}"

    @property
    def model_version(self) -> str:
        return self._version

    def update_weights(self, version: str, state: bytes) -> None:
        if not version:
            raise ScorerError("bt_reward: a weight update needs a non-empty version")
        fresh = BtRewardModel(self.params)
        load_state_bytes(fresh, state)  # a bad update leaves the served model untouched
        self.model = fresh.to(self.device).eval()
        self._version = str(version)

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        model = self.model
        with torch.inference_mode():
            r = model(*model.preprocess([it[0] for it in items], tasks, self.device)).float().cpu().numpy()
        mean, std = r.mean(axis=0), r.std(axis=0)
        served = model.normalized(torch.from_numpy(mean)).numpy()
        return [ScoreResult(reward=float(v), components={"ensemble_std": float(s), "raw_reward": float(m)})
                for v, m, s in zip(served, mean, std)]
