"""The ``compact_lrm`` scorer: a trained compact Large Reward Model (reward_workers/models/compact_lrm.py) as a reward worker.

Items are PAIRs (previous frame, current frame). Each result carries the three LRM components,
``progress`` and ``completion`` (of the current frame) and ``contrastive`` (probability that the
current frame is further along than the previous one), and ``reward`` = the weighted sum
``sum_k weights[k] * component_k``. ``model_version`` is a hash of the weights file, so the
reward cache and responses change when the model is retrained.

The pair answer (``label``): ``second`` when ``contrastive`` > 0.5 + ``label_margin``, ``first`` when it is
< 0.5 - ``label_margin``, else ``none`` -- which frame is further along, the same first / second / none the VLM
``preference`` scorer answers, so a labeller pool running this scorer is the preference mode's AI labeller
(``preference.labeller=pool``, ``preference.labeller_scorer.name=compact_lrm``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch

from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScorerError, ScoreResult, register_scorer

COMPONENTS = ("progress", "completion", "contrastive")


def pair_label(contrastive: float, margin: float) -> str:
    """``first`` / ``second`` / ``none`` from P(second frame further along) (see module doc)."""
    if contrastive > 0.5 + margin:
        return "second"
    if contrastive < 0.5 - margin:
        return "first"
    return "none"


@register_scorer
class CompactLrmScorer(Scorer):
    """Scores (previous, current) frame pairs with a trained compact LRM folder, batched."""

    name = "compact_lrm"
    item_kind = ItemKind.PAIR

    @dataclass
    class Params:
        weights_dir: str = ""
        """A trained compact LRM folder (``vlmrl lrm-train`` out_dir: config.json + model.safetensors)."""
        weights: Dict[str, float] = field(default_factory=lambda: {"progress": 1.0, "completion": 1.0, "contrastive": 0.0})
        """reward = sum of weights[k] * component k over progress / completion / contrastive (missing keys weigh 0)."""
        device: str = "cpu"
        """torch device (``cuda`` on a GPU worker)."""
        num_threads: int = 0
        """torch CPU threads (0 = leave torch's setting)."""
        label_margin: float = 0.1
        """Pair answer: ``none`` while |contrastive - 0.5| <= this (see module doc); in [0, 0.5)."""

    def __init__(self, params: "CompactLrmScorer.Params") -> None:
        super().__init__(params)
        from vlmrl.reward_workers.models.compact_lrm import CompactLRM

        if not params.weights_dir:
            raise ScorerError("compact_lrm needs params.weights_dir (a folder written by `vlmrl lrm-train`)")
        bad = sorted(set(params.weights) - set(COMPONENTS))
        if bad:
            raise ScorerError(f"compact_lrm weights has unknown components {bad}; known: {list(COMPONENTS)}")
        weights_file = Path(params.weights_dir) / "model.safetensors"
        if params.device.startswith("cuda") and not torch.cuda.is_available():
            raise ScorerError(f"compact_lrm device={params.device!r} but no CUDA GPU is available")
        if not 0.0 <= float(params.label_margin) < 0.5:
            raise ScorerError(f"compact_lrm label_margin must be in [0, 0.5), got {params.label_margin}")
        if params.num_threads > 0:
            torch.set_num_threads(params.num_threads)
        try:
            self.model = CompactLRM.from_pretrained(params.weights_dir, device=params.device)
        except (FileNotFoundError, ValueError) as e:
            raise ScorerError(f"compact_lrm cannot load weights_dir={params.weights_dir!r}: {e}") from e
        digest = hashlib.sha256()
        with open(weights_file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        self._version = digest.hexdigest()[:12]
        self._weights = {k: float(params.weights.get(k, 0.0)) for k in COMPONENTS}

    @property
    def model_id(self) -> str:
        return f"compact_lrm:{self.params.weights_dir}"

    @property
    def model_version(self) -> str:
        return self._version

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        if len(tasks) != len(items):
            raise ScorerError(f"{len(tasks)} tasks for {len(items)} items")
        if not items:
            return []
        for i, it in enumerate(items):
            if it.ndim != 4 or it.shape[0] != 2 or it.shape[-1] != 3 or it.dtype != np.uint8:
                raise ScorerError(f"item {i}: compact_lrm takes uint8 pairs (2, H, W, 3), got {it.dtype} {it.shape}")
        out = self.model.predict(list(tasks), [it[0] for it in items], [it[1] for it in items])
        results = []
        for i in range(len(items)):
            comps = {k: float(out[k][i]) for k in COMPONENTS}
            results.append(ScoreResult(reward=sum(self._weights[k] * comps[k] for k in COMPONENTS), components=comps,
                                       label=pair_label(comps["contrastive"], float(self.params.label_margin))))
        return results
