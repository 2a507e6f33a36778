"""The CNN scorer: a small real torch network that scores single frames against a task text.

The compact, CPU-friendly reward model of the project: frames are resized to ``image_size``,
run through a conv stack, and combined with a task embedding (an ``EmbeddingBag`` over hashed
lower-case word tokens, so no tokenizer download is needed). Two heads give the ``reward``
(sigmoid) and a ``progress`` component (sigmoid). Weights are random with a fixed seed, or a
``state_dict`` file given by ``params.weights``; ``model_version`` is ``random-<seed>`` or a
short hash of the weights file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlmrl.reward_workers.models.text_embedding import hash_tokens
from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScorerError, ScoreResult, register_scorer


class CnnRewardNet(nn.Module):
    """Conv stack over RGB frames + hashed-token task embedding -> (reward logit, progress logit)."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64), task_buckets: int = 4096, embed_dim: int = 64) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, kernel_size=3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.task_buckets = int(task_buckets)
        self.task_embed = nn.EmbeddingBag(self.task_buckets, embed_dim, mode="mean")
        self.head = nn.Sequential(nn.Linear(c_in + embed_dim, 64), nn.ReLU(inplace=True), nn.Linear(64, 2))

    def forward(self, images: torch.Tensor, token_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, S, S) float in [0, 1]; tokens as EmbeddingBag input/offsets. Returns (B, 2) logits."""
        feats = self.conv(images).mean(dim=(2, 3))
        task = self.task_embed(token_ids, offsets)
        return self.head(torch.cat([feats, task], dim=1))


def file_version(path: str | Path) -> str:
    """Short content hash of a weights file (its model_version)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


@register_scorer
class CnnScorer(Scorer):
    """Frame scorer running :class:`CnnRewardNet` in batches under ``torch.inference_mode()``."""

    name = "cnn"
    item_kind = ItemKind.FRAME

    @dataclass
    class Params:
        image_size: int = 64
        """Frames are resized (bilinear) to image_size x image_size."""
        channels: List[int] = field(default_factory=lambda: [16, 32, 64])
        """Output channels of the conv layers (stride 2 each)."""
        task_buckets: int = 4096
        """Hash buckets of the task-token embedding."""
        embed_dim: int = 64
        seed: int = 0
        """Seed of the random init (when no weights file is given)."""
        weights: Optional[str] = None
        """Path to a ``state_dict`` of CnnRewardNet (torch.save); None = random init."""
        device: str = "cpu"
        """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda if available)."""
        num_threads: int = 0
        """torch.set_num_threads for inference; 0 leaves torch's default."""

    def __init__(self, params: "CnnScorer.Params") -> None:
        super().__init__(params)
        if params.image_size < 8:
            raise ScorerError(f"cnn scorer: image_size must be >= 8, got {params.image_size}")
        if params.num_threads > 0:
            torch.set_num_threads(int(params.num_threads))
        device = params.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ScorerError(f"cnn scorer: device {device!r} requested but CUDA is not available")
        self.device = torch.device(device)
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(int(params.seed))
        try:
            self.net = CnnRewardNet(tuple(params.channels), params.task_buckets, params.embed_dim)
        finally:
            torch.random.set_rng_state(gen_state)
        if params.weights:
            path = Path(params.weights)
            if not path.is_file():
                raise ScorerError(f"cnn scorer: weights file {params.weights!r} does not exist")
            state = torch.load(path, map_location="cpu", weights_only=True)
            try:
                self.net.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise ScorerError(f"cnn scorer: weights {params.weights!r} do not fit the network: {e}") from e
            self._version = file_version(path)
        else:
            self._version = f"random-{params.seed}"
        self.net.to(self.device).eval()

    @property
    def model_id(self) -> str:
        return f"cnn:{self.params.weights or 'random'}"

    @property
    def model_version(self) -> str:
        return self._version

    def _images(self, items: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, 3, s, s) float images; items of one shape are converted and resized in one call."""
        s = self.params.image_size
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(items):  # item: (1, H, W, C) uint8; frames in one batch may differ in size
            groups.setdefault(item.shape, []).append(i)
        out = torch.empty((len(items), 3, s, s), dtype=torch.float32, device=self.device)
        for shape, idx in groups.items():
            x = torch.from_numpy(np.stack([items[i][0] for i in idx])).to(self.device)  # (n, H, W, C)
            c = shape[-1]
            x = x[..., :3] if c == 4 else x.expand(-1, -1, -1, 3) if c == 1 else x
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            if x.shape[-2:] != (s, s):
                x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=False)
            out[idx] = x
        return out

    def _tokens(self, tasks: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, offsets = [], []
        for t in tasks:
            offsets.append(len(ids))
            ids += hash_tokens(t, self.params.task_buckets)
        return (torch.tensor(ids, dtype=torch.long, device=self.device),
                torch.tensor(offsets, dtype=torch.long, device=self.device))

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        with torch.inference_mode():
            logits = self.net(self._images(items), *self._tokens(tasks))
            probs = torch.sigmoid(logits).float().cpu().numpy()
        return [ScoreResult(reward=float(r), components={"progress": float(p)}) for r, p in probs]

    def close(self) -> None:
        self.net.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
