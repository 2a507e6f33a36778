"""``clip``: CLIP image-text similarity reward (VLM-RM / RoboCLIP-style baseline).

Each FRAME item is embedded by a CLIP loaded with ``from_pretrained`` (one batched forward per
batch; task texts are embedded once and cached). Without ``baseline_prompt`` the reward is the
cosine similarity of image and task embeddings, in [-1, 1]. With it, the VLM-RM goal-baseline
regularisation: x, g, b = unit image, goal and baseline embeddings, d = (g - b)/|g - b|,
P = alpha * d d^T + (1 - alpha) * I, reward = 1 - 1/2 |(x - g) P|^2 (alpha = 0 gives plain
1 - 1/2 |x - g|^2 = cosine similarity; alpha = 1 keeps only the baseline->goal direction).

Scale: the reward is the raw score (the cosine in [-1, 1]; the VLM-RM reward, at most 1); the raw values
also stay in the components: ``cosine`` always, ``vlm_rm`` with ``baseline_prompt``. Real CLIP cosines of a
frame and a task text sit in a narrow, model-dependent band (about 0.15-0.35), so a fixed map of [-1, 1] to
[0, 1] would be wrong; offline labelling maps them with ``label.vlm_reward_min/max`` calibrated on the data
(:func:`vlmrl.learner.labels.labelling.calibrate_score_range`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np

from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScoreResult, ScorerError, register_scorer
from vlmrl.reward_workers.scorers.vlm_common import check_items


@register_scorer
class ClipScorer(Scorer):
    """Rewards a frame by its CLIP similarity to the task text (optionally goal-baseline projected)."""

    name = "clip"
    item_kind = ItemKind.FRAME

    @dataclass
    class Params:
        model: str = ""
        """Local path (or hub id) of a CLIP checkpoint (``CLIPModel`` + processor); required."""
        device: str = "auto"
        """``auto``, ``cpu``, ``cuda``, ``cuda:N``."""
        baseline_prompt: Optional[str] = None
        """VLM-RM baseline text (e.g. "a robot arm"); None = plain cosine similarity."""
        alpha: float = 1.0
        """VLM-RM projection strength in [0, 1] (used with ``baseline_prompt``)."""

    def __init__(self, params: "ClipScorer.Params") -> None:
        super().__init__(params)
        import torch
        from transformers import AutoModel, AutoProcessor

        from vlmrl.reward_workers.backends.base import files_version
        from vlmrl.reward_workers.backends.hf import resolve_device

        if not params.model:
            raise ScorerError("clip: params.model (path of a CLIP checkpoint) is required")
        if not 0.0 <= params.alpha <= 1.0:
            raise ScorerError(f"clip: alpha must be in [0, 1], got {params.alpha}")
        self.device = resolve_device(params.device)
        try:
            self.processor = AutoProcessor.from_pretrained(params.model)
            self.model = AutoModel.from_pretrained(params.model).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise ScorerError(f"clip: cannot load CLIP from {params.model!r}: {e}") from e
        if not hasattr(self.model, "get_image_features"):
            raise ScorerError(f"clip: {params.model!r} is not a CLIP-style model (no get_image_features)")
        self._version = files_version(params.model)
        self._text_cache: Dict[str, np.ndarray] = {}
        self._torch = torch

    @property
    def model_id(self) -> str:
        return self.params.model

    @property
    def model_version(self) -> str:
        return self._version

    @staticmethod
    def _unit(x) -> np.ndarray:
        x = x.detach().float().cpu().numpy().astype(np.float64)
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    @staticmethod
    def _features(out):
        # transformers 5 may return a model output; the projected embedding is its pooler_output
        return out if hasattr(out, "detach") else out.pooler_output

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self._text_cache})
        if missing:
            enc = self.processor(text=missing, return_tensors="pt", padding=True, truncation=True).to(self.device)
            with self._torch.inference_mode():
                emb = self._unit(self._features(self.model.get_text_features(**enc)))
            self._text_cache.update(zip(missing, emb))
        return np.stack([self._text_cache[t] for t in texts])

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        check_items(self.name, tasks, items, 1)
        enc = self.processor(images=[np.asarray(it)[0] for it in items], return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            x = self._unit(self._features(self.model.get_image_features(**enc)))
        g = self.text_embeddings(tasks)
        cos = np.sum(x * g, axis=-1)
        if self.params.baseline_prompt is None:
            return [ScoreResult(reward=float(c), components={"cosine": float(c)}) for c in cos]
        b = self.text_embeddings([self.params.baseline_prompt])[0]
        d = g - b
        d /= np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
        diff = x - g
        a = self.params.alpha
        proj = a * np.sum(diff * d, axis=-1, keepdims=True) * d + (1 - a) * diff  # (x - g) P, P symmetric
        vlm_rm = 1.0 - 0.5 * np.sum(proj * proj, axis=-1)
        return [ScoreResult(reward=float(v), components={"cosine": float(c), "vlm_rm": float(v)})
                for c, v in zip(cos, vlm_rm)]
