"""The Bradley-Terry reward model r(s) of the preference mode (RL-VLM-F): trained by the ``RewardModelTrainer``
actor (:mod:`vlmrl.learner.preference.reward_model_trainer`) on preference labels, served by the ``bt_reward``
scorer (:mod:`vlmrl.reward_workers.scorers.bt_reward`), its weights travelling between them as bytes.

A small conv encoder over the frame plus a hashed-token task embedding, one scalar per ensemble member, squashed by
``tanh`` (PEBBLE / RL-VLM-F bound r(s) the same way). How the conv feature map becomes the head's input is
``pooling``: ``max`` (each channel's strongest response: *what* is in the frame, not *where*) or ``keypoints``
(a spatial soft-argmax per channel, Levine et al. 2016's "spatial softmax": the expected image coordinates of each
feature plus its strongest response, so the head can read where the object and the arm are relative to the goal;
see benchmarks/results/preference_pushcube.md for what each gives on PushCube).

``encoder_dir`` swaps the conv stack for a frozen, pretrained image+text encoder: the joint features of a compact LRM
(:class:`~vlmrl.reward_workers.models.compact_lrm.CompactLRM`, trained by ``vlmrl lrm-train`` on recorded episodes).
Only the heads learn from the preference labels; the encoder's weights stay in its folder (not in the state that
travels from the trainer to the workers), so every worker and the trainer must reach the same path. The trainer,
which passes the same buffered frames through the encoder at every update, keeps their features in a
:class:`FeatureCache` (:meth:`BtRewardModel.cache_features`); the served model encodes each new frame once anyway.
``init_from_progress`` starts every member at that LRM's own progress reward (``2 * progress - 1``); the labels then
correct it.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlmrl.reward_workers.models.compact_lrm import CompactLRM, frames_to_input, stack_frames
from vlmrl.reward_workers.models.errors import ScorerError
from vlmrl.reward_workers.models.text_embedding import hash_tokens


@dataclass
class BtModelParams:
    """Architecture of the Bradley-Terry reward model (shared by the scorer and the trainer actor)."""

    image_size: int = 32
    """Frames are resized (bilinear) to image_size x image_size."""
    channels: List[int] = field(default_factory=lambda: [16, 32, 32])
    """Output channels of the conv layers (stride 2 each)."""
    task_buckets: int = 1024
    """Hash buckets of the task-token embedding."""
    embed_dim: int = 32
    hidden: int = 64
    pooling: str = "max"
    """Conv map -> head input: ``max`` (global max per channel) or ``keypoints`` (spatial soft-argmax coordinates
    per channel + the global max; keeps positions with few features, see the module doc)."""
    ensemble_size: int = 1
    """Independently initialised members; reward = their mean (RL-VLM-F uses an ensemble of 3)."""
    seed: int = 0
    """Seed of the initial weights (the version served before the first update is ``init-<seed>``)."""
    encoder_dir: Optional[str] = None
    """A compact LRM folder: its frozen joint image+text features replace the conv stack (``image_size``,
    ``channels`` and ``pooling`` are then unused; the LRM's own image size applies). None = the conv stack."""
    logit_scale: float = 1.0
    """The BT model's P(second preferred) = sigmoid(logit_scale * (r(second) - r(first))). r is bounded by tanh to
    [-1, 1], so at 1 no pair can be preferred with more than sigmoid(2) = 0.88: with labels that never flip (an
    oracle), every pair keeps pushing its two frames apart and r saturates towards a two-level step. A larger scale
    lets the model separate pairs with small differences and keep the reward graded (measured on PushCube policy
    frames: benchmarks/results/preference_pushcube.md, section 3). PEBBLE sums r over 50-step segments, which does
    the same."""
    init_from_progress: bool = False
    """With ``encoder_dir``: every member starts as that LRM's own progress reward, ``2 * progress - 1`` (a linear
    read of the same features, kept trainable, plus a head whose last layer starts at zero), so the labels correct a
    reward that already follows the task instead of learning one from nothing. Requires ``encoder_dir``."""


POOLINGS = ("max", "keypoints")


class SpatialSoftArgmax(nn.Module):
    """(B, C, H, W) feature maps -> (B, 2C) expected (x, y) in [-1, 1] of each channel's softmax over positions, with
    a learned temperature (the "spatial softmax" keypoint layer of Levine et al. 2016, "End-to-End Training of Deep
    Visuomotor Policies")."""

    def __init__(self) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = h.shape
        attn = torch.softmax(h.flatten(2) / self.log_temperature.exp(), dim=-1).view(b, c, hh, ww)
        ys = torch.linspace(-1.0, 1.0, hh, device=h.device, dtype=h.dtype)
        xs = torch.linspace(-1.0, 1.0, ww, device=h.device, dtype=h.dtype)
        return torch.cat([(attn.sum(2) * xs).sum(-1), (attn.sum(3) * ys).sum(-1)], dim=1)


class BtRewardMember(nn.Module):
    """One ensemble member: conv stack (or frozen-encoder features) + task embedding -> tanh(r(s)); with a
    ``progress_head`` (``init_from_progress``) -> tanh(prior(z) + head(z, task)), starting at the LRM's progress."""

    def __init__(self, p: BtModelParams, encoded_dim: Optional[int] = None,
                 progress_head: Optional[nn.Linear] = None) -> None:
        super().__init__()
        self.conv: Optional[nn.Sequential] = None
        self.keypoints = None
        if encoded_dim is not None:  # inputs are a frozen encoder's features (B, encoded_dim)
            feats = int(encoded_dim)
        else:
            layers, c_in = [], 3
            for c in p.channels:
                layers += [nn.Conv2d(c_in, int(c), kernel_size=3, stride=2, padding=1), nn.ReLU(inplace=True)]
                c_in = int(c)
            self.conv = nn.Sequential(*layers)
            self.keypoints = SpatialSoftArgmax() if p.pooling == "keypoints" else None
            feats = 3 * c_in if self.keypoints is not None else c_in
        self.task_embed = nn.EmbeddingBag(int(p.task_buckets), int(p.embed_dim), mode="mean")
        self.head = nn.Sequential(nn.Linear(feats + int(p.embed_dim), int(p.hidden)), nn.ReLU(inplace=True),
                                  nn.Linear(int(p.hidden), 1))
        self.prior: Optional[nn.Linear] = None
        if progress_head is not None:
            # tanh(logit / 2) = 2 * sigmoid(logit) - 1: the initial reward is 2 * progress - 1 exactly
            self.prior = nn.Linear(feats, 1)
            with torch.no_grad():
                self.prior.weight.copy_(progress_head.weight * 0.5)
                self.prior.bias.copy_(progress_head.bias * 0.5)
                self.head[-1].weight.zero_()
                self.head[-1].bias.zero_()

    def forward(self, images: torch.Tensor, token_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        if self.conv is None:
            feats = images
        else:
            h = self.conv(images)
            feats = h.amax(dim=(2, 3))
            if self.keypoints is not None:
                feats = torch.cat([self.keypoints(h), feats], dim=1)
        out = self.head(torch.cat([feats, self.task_embed(token_ids, offsets)], dim=1))
        if self.prior is not None:
            out = out + self.prior(feats)
        return torch.tanh(out.squeeze(1))


class BtRewardModel(nn.Module):
    """The ensemble: ``forward`` gives per-member rewards ``(E, B)``; :meth:`preprocess` turns frames into inputs."""

    def __init__(self, p: BtModelParams) -> None:
        super().__init__()
        if int(p.ensemble_size) < 1:
            raise ScorerError(f"bt_reward: ensemble_size must be >= 1, got {p.ensemble_size}")
        if int(p.image_size) < 8:
            raise ScorerError(f"bt_reward: image_size must be >= 8, got {p.image_size}")
        if p.pooling not in POOLINGS:
            raise ScorerError(f"bt_reward: pooling must be one of {list(POOLINGS)}, got {p.pooling!r}")
        if not float(p.logit_scale) > 0:
            raise ScorerError(f"bt_reward: logit_scale must be > 0, got {p.logit_scale}")
        if p.init_from_progress and not p.encoder_dir:
            raise ScorerError("bt_reward: init_from_progress needs encoder_dir (the LRM whose progress head it starts "
                              "from)")
        self.p = p
        # frozen and kept out of the module tree: not trained, not in state_dict (see the module doc)
        self._encoder = [load_frozen_encoder(p.encoder_dir)] if p.encoder_dir else []
        self._feature_cache: Optional[FeatureCache] = None
        encoded_dim = self._encoder[0].config.embed_dim if self._encoder else None
        state = torch.random.get_rng_state()
        torch.manual_seed(int(p.seed))
        try:
            prior = self._encoder[0].progress_head if p.init_from_progress else None
            self.members = nn.ModuleList(BtRewardMember(p, encoded_dim, prior)
                                         for _ in range(int(p.ensemble_size)))
        finally:
            torch.random.set_rng_state(state)
        # reward normalisation set by the trainer (preference.normalize_reward); 0 / 1 = the raw reward
        self.register_buffer("reward_shift", torch.zeros(()))
        self.register_buffer("reward_scale", torch.ones(()))

    def cache_features(self, max_entries: int) -> None:
        """Keep up to ``max_entries`` frozen-encoder features (keyed by frame bytes + task), so frames seen again
        are not re-encoded; a no-op without ``encoder_dir`` (the conv stack learns, its features change)."""
        if self._encoder:
            self._feature_cache = FeatureCache(max_entries)

    def normalized(self, r: torch.Tensor) -> torch.Tensor:
        """The served reward: ``(r - reward_shift) / reward_scale`` (the trainer's standardisation; raw by default)."""
        return (r - self.reward_shift) / self.reward_scale

    def forward(self, images: torch.Tensor, token_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(images, token_ids, offsets) for m in self.members])

    def preprocess(self, frames: Sequence[np.ndarray], tasks: Sequence[str], device: torch.device | str = "cpu"):
        """uint8 (H, W, C) frames (sizes may differ) + task texts -> (images, token_ids, offsets); with
        ``encoder_dir`` the first element is the frozen encoder's features (B, d) instead of the images."""
        frames = [_rgb(np.asarray(f)) for f in frames]
        if self._encoder:
            images = self._encode(frames, tasks, device)
        else:
            s = int(self.p.image_size)
            imgs = []
            for f in frames:
                f = np.require(f, requirements=["C", "W"])  # read-only frames are copied (torch warns on them)
                x = torch.from_numpy(f).to(device).permute(2, 0, 1).unsqueeze(0)
                x = x.float().div_(255.0)
                if x.shape[-2:] != (s, s):
                    x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
                imgs.append(x)
            images = torch.cat(imgs)
        ids, offsets = [], []
        for t in tasks:
            offsets.append(len(ids))
            ids += hash_tokens(t, int(self.p.task_buckets))
        return (images, torch.tensor(ids, dtype=torch.long, device=device),
                torch.tensor(offsets, dtype=torch.long, device=device))

    @torch.no_grad()
    def _encode(self, frames: Sequence[np.ndarray], tasks: Sequence[str], device: torch.device | str) -> torch.Tensor:
        cache = self._feature_cache
        if cache is None:
            return self._encode_now(frames, tasks, device)
        keys = [FeatureCache.key(f, t) for f, t in zip(frames, tasks)]
        found = {k: cache.get(k) for k in keys if k in cache}  # read before any put can evict them
        todo = {k: i for i, k in enumerate(keys) if k not in found}  # one encoding per distinct (frame, task)
        if todo:
            idx = list(todo.values())
            new = self._encode_now([frames[i] for i in idx], [tasks[i] for i in idx], device)
            for k, z in zip(todo, new.cpu()):
                found[k] = z
                cache.put(k, z)
        return torch.stack([found[k] for k in keys]).to(device)

    @torch.no_grad()
    def _encode_now(self, frames: Sequence[np.ndarray], tasks: Sequence[str], device: torch.device | str) -> torch.Tensor:
        enc = self._encoder[0].to(device)
        s = enc.config.image_size
        x = frames_to_input(stack_frames(list(frames), s), s).to(device)
        return enc.features(x, enc.embed_text(list(tasks)))


class FeatureCache:
    """Least-recently-used map (frame bytes, task) -> frozen-encoder feature, for the BT trainer's repeated passes
    over its buffered pairs (a frozen encoder gives a frame the same feature every time)."""

    def __init__(self, max_entries: int) -> None:
        if int(max_entries) < 1:
            raise ValueError(f"a feature cache holds at least one entry, got {max_entries}")
        self.max_entries = int(max_entries)
        self._d: OrderedDict = OrderedDict()

    @staticmethod
    def key(frame: np.ndarray, task: str) -> bytes:
        f = np.ascontiguousarray(frame)
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((f.shape, str(f.dtype), task)).encode())
        h.update(f.tobytes())
        return h.digest()

    def __contains__(self, k: bytes) -> bool:
        return k in self._d

    def __len__(self) -> int:
        return len(self._d)

    def get(self, k: bytes) -> torch.Tensor:
        self._d.move_to_end(k)
        return self._d[k]

    def put(self, k: bytes, z: torch.Tensor) -> None:
        self._d[k] = z
        self._d.move_to_end(k)
        while len(self._d) > self.max_entries:
            self._d.popitem(last=False)


def _rgb(f: np.ndarray) -> np.ndarray:
    """(H, W, 1|3|4) uint8 -> (H, W, 3)."""
    c = f.shape[-1]
    return f[..., :3] if c == 4 else np.repeat(f, 3, axis=-1) if c == 1 else f


def load_frozen_encoder(directory: str) -> CompactLRM:
    """The compact LRM of ``encoder_dir``, in eval mode with gradients off; a clear error when it is not one."""
    try:
        model = CompactLRM.from_pretrained(directory)
    except (FileNotFoundError, ValueError) as e:
        raise ScorerError(f"bt_reward: encoder_dir {directory!r} is not usable ({e}); train one with "
                          f"`vlmrl lrm-train` or set scorer.params.encoder_dir=null") from e
    for q in model.parameters():
        q.requires_grad_(False)
    return model


def state_to_bytes(model: nn.Module) -> bytes:
    """A model's ``state_dict`` as bytes (what ``update_weights`` takes)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def load_state_bytes(model: nn.Module, state: bytes) -> None:
    """Load :func:`state_to_bytes` output into ``model``; a clear error when it does not fit."""
    try:
        sd = torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with what was wrong
        raise ScorerError(f"bt_reward: weight update is not a torch state_dict: {type(e).__name__}: {e}") from e
    for k in ("reward_shift", "reward_scale"):  # weights saved before normalisation existed: raw reward
        if k not in sd and k in dict(model.named_buffers()):
            sd[k] = dict(model.named_buffers())[k].detach().cpu().clone()
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ScorerError(f"bt_reward: weight update does not fit the model (check scorer.params): {e}") from e
