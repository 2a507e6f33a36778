"""The compact Large Reward Model: a CPU-sized stand-in for the paper's LoRA-tuned VLM reward model.

A small CNN (about 1 M parameters at the default widths, built from scratch, no pretrained
weights) encodes 64–128 px frames; a task-text embedding (frozen all-MiniLM-L6-v2 + a trainable
projection, or a trainable hashed bag of words; see :mod:`vlmrl.reward_workers.models.text_embedding`)
conditions it (FiLM on the last feature map, then concatenation). Three heads give the LRM's
reward modalities:

* ``progress``    r_prog in [0, 1]: how far along the task the current frame is (absolute progress);
* ``completion``  r_comp in [0, 1]: probability that the task is done in the current frame;
* ``contrastive`` r_cont in [0, 1]: from a (previous, current) pair, probability that the current
  frame is further along. Antisymmetric by construction: r_cont(a, b) = 1 - r_cont(b, a).

Saved as a folder (``save_pretrained`` / ``from_pretrained``): ``config.json`` +
``model.safetensors`` (+ ``text_cache.*``: cached MiniLM embeddings of the training tasks, so
loading needs MiniLM only for task texts never seen).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from vlmrl.reward_workers.models.text_embedding import MINILM_DIM, MiniLMTextEmbedder, hashed_token_ids

FORMAT_NAME = "vlmrl-compact-lrm"
FORMAT_VERSION = 1
TEXT_ENCODERS = ("minilm", "hashed")


@dataclass
class CompactLRMConfig:
    """Architecture of a compact LRM (saved as ``config.json`` next to the weights)."""

    image_size: int = 64
    """Frames are resized to image_size x image_size (square) before the CNN."""
    widths: List[int] = field(default_factory=lambda: [32, 64, 128, 256])
    """Channels of the CNN stages; each stage halves the resolution (image_size must divide by 2**len)."""
    embed_dim: int = 128
    """Width of the joint image+text feature the heads read."""
    text_encoder: str = "minilm"
    """``minilm`` (frozen all-MiniLM-L6-v2 + trainable projection) or ``hashed`` (trainable bag of hashed words)."""
    hash_buckets: int = 2048
    """Vocabulary size of the hashed text encoder."""

    def validate(self) -> "CompactLRMConfig":
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}, got {self.text_encoder!r}")
        if not self.widths or any(w < 8 or w % 8 for w in self.widths):
            raise ValueError(f"widths must be a non-empty list of multiples of 8, got {list(self.widths)}")
        if self.image_size % (2 ** len(self.widths)) or self.image_size < 2 ** len(self.widths) * 2:
            raise ValueError(f"image_size={self.image_size} must be a multiple of 2**{len(self.widths)} "
                             f"and at least {2 ** len(self.widths) * 2}")
        if self.embed_dim < 8:
            raise ValueError(f"embed_dim must be >= 8, got {self.embed_dim}")
        return self


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.GroupNorm(8, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(8, cout), nn.SiLU())


def frames_to_input(frames: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, S, S), resized (antialiased bilinear) if needed."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    x = frames.permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return (x / 255.0 - 0.5) / 0.25


def stack_frames(frames: Sequence[np.ndarray], image_size: int) -> torch.Tensor:
    """A list of uint8 (H, W, 3) frames, possibly of different sizes -> one uint8 (N, S, S, 3) tensor."""
    out = torch.empty((len(frames), image_size, image_size, 3), dtype=torch.uint8)
    by_shape: Dict[tuple, list[int]] = {}
    for i, f in enumerate(frames):
        by_shape.setdefault(tuple(f.shape), []).append(i)
    for shape, idx in by_shape.items():
        t = torch.from_numpy(np.ascontiguousarray(np.stack([frames[i] for i in idx])))
        if shape[:2] != (image_size, image_size):
            x = frames_to_input(t, image_size) * 0.25 + 0.5
            t = (x * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        out[idx] = t
    return out


class CompactLRM(nn.Module):
    """Compact reward model: frames + task text -> progress, completion and contrastive rewards."""

    def __init__(self, config: CompactLRMConfig, text_cache: Dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.config = config.validate()
        chans = [3, *config.widths]
        self.encoder = nn.Sequential(*[_stage(a, b) for a, b in zip(chans[:-1], chans[1:])])
        last = config.widths[-1]
        self.reduce = nn.Conv2d(last, 32, 1)
        side = config.image_size // 2 ** len(config.widths)
        d = config.embed_dim
        if config.text_encoder == "minilm":
            self.minilm = MiniLMTextEmbedder(text_cache)
            self.text_proj = nn.Sequential(nn.Linear(MINILM_DIM, d), nn.SiLU(), nn.Linear(d, d))
        else:
            self.text_bag = nn.EmbeddingBag(config.hash_buckets, d, mode="mean")
        self.film = nn.Linear(d, 2 * last)
        self.fuse = nn.Sequential(nn.Linear(32 * side * side + d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d), nn.SiLU())
        self.progress_head = nn.Linear(d, 1)
        self.completion_head = nn.Linear(d, 1)
        self.contrastive_net = nn.Sequential(nn.Linear(3 * d, d), nn.SiLU(), nn.Linear(d, 1))

    # --- building blocks ---------------------------------------------------------------
    def embed_text(self, tasks: Sequence[str]) -> torch.Tensor:
        dev = self.film.weight.device
        if self.config.text_encoder == "minilm":
            return self.text_proj(self.minilm(tasks).to(dev))
        ids, offsets = hashed_token_ids(tasks, self.config.hash_buckets)
        return self.text_bag(ids.to(dev), offsets.to(dev))

    def features(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Normalised frames (N, 3, S, S) + text embeddings (N, d) -> joint features (N, d)."""
        h = self.encoder(x)
        gamma, beta = self.film(text).chunk(2, dim=-1)
        h = h * (1 + gamma[..., None, None]) + beta[..., None, None]
        h = self.reduce(h).flatten(1)
        return self.fuse(torch.cat([h, text], dim=-1))

    def contrastive_logit(self, z_prev: torch.Tensor, z_cur: torch.Tensor) -> torch.Tensor:
        """Logit that ``cur`` is further along than ``prev``; antisymmetric in its arguments."""
        def g(a, b):
            return self.contrastive_net(torch.cat([b - a, a, b], dim=-1)).squeeze(-1)
        return g(z_prev, z_cur) - g(z_cur, z_prev)

    def forward(self, x_prev: torch.Tensor, x_cur: torch.Tensor, text: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Logits of the three heads for normalised frame pairs; progress/completion also for ``prev``."""
        z = self.features(torch.cat([x_prev, x_cur]), torch.cat([text, text]))
        z_prev, z_cur = z.chunk(2)
        prog = self.progress_head(z).squeeze(-1)
        comp = self.completion_head(z).squeeze(-1)
        n = len(x_cur)
        return {"progress_prev": prog[:n], "progress": prog[n:], "completion_prev": comp[:n],
                "completion": comp[n:], "contrastive": self.contrastive_logit(z_prev, z_cur)}

    # --- inference ---------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, tasks: Sequence[str], prev_frames, cur_frames) -> Dict[str, np.ndarray]:
        """Rewards in [0, 1] for uint8 frame pairs (arrays (N, H, W, 3) or lists of (H, W, 3))."""
        if not (len(tasks) == len(prev_frames) == len(cur_frames)):
            raise ValueError(f"tasks, prev_frames and cur_frames differ in length: "
                             f"{len(tasks)}, {len(prev_frames)}, {len(cur_frames)}")
        dev = self.film.weight.device
        s = self.config.image_size
        x_prev = frames_to_input(stack_frames(list(prev_frames), s), s).to(dev)
        x_cur = frames_to_input(stack_frames(list(cur_frames), s), s).to(dev)
        out = self(x_prev, x_cur, self.embed_text(tasks))
        return {k: torch.sigmoid(out[k]).float().cpu().numpy() for k in ("progress", "completion", "contrastive")}

    # --- persistence -------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **asdict(self.config)}
        (d / "config.json").write_text(json.dumps(meta, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(d / "model.safetensors"))
        if self.config.text_encoder == "minilm" and self.minilm.cache:
            texts = sorted(self.minilm.cache)
            save_file({"embeddings": torch.stack([self.minilm.cache[t] for t in texts])}, str(d / "text_cache.safetensors"))
            (d / "text_cache.json").write_text(json.dumps(texts))
        return d

    @staticmethod
    def check_folder(directory: str | os.PathLike) -> None:
        """FileNotFoundError unless ``directory`` holds a saved compact LRM (config.json + model.safetensors)."""
        d = Path(directory)
        if not (d / "config.json").exists() or not (d / "model.safetensors").exists():
            raise FileNotFoundError(f"{d} is not a compact LRM folder (needs config.json and model.safetensors)")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str = "cpu") -> "CompactLRM":
        d = Path(directory)
        cfg_path, weights = d / "config.json", d / "model.safetensors"
        cls.check_folder(d)
        meta = json.loads(cfg_path.read_text())
        if meta.get("format") != FORMAT_NAME:
            raise ValueError(f"{cfg_path}: format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
        config = CompactLRMConfig(**{f.name: meta[f.name] for f in fields(CompactLRMConfig) if f.name in meta})
        cache = None
        if (d / "text_cache.json").exists():
            texts = json.loads((d / "text_cache.json").read_text())
            emb = load_file(str(d / "text_cache.safetensors"))["embeddings"]
            cache = dict(zip(texts, emb))
        model = cls(config, text_cache=cache)
        model.load_state_dict(load_file(str(weights)))
        return model.to(device).eval()
