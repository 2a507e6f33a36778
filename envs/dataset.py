"""The project's episode dataset format: what demo recording writes and LRM training, reward
evaluation and the offline mode read.

On disk, a dataset is a folder::

    <root>/index.jsonl          one JSON line per episode: id, file, task, env_id, source, length, success
    <root>/episodes/<id>.npz    the arrays of one episode (numpy .npz, compressed)

Arrays of an episode with T steps (T actions):

    frames       uint8   (F, H, W, 3)   camera frames, taken at steps ``frame_steps``
    frame_steps  int32   (F,)           step index of each frame, in 0..T (0 = after reset)
    states       float32 (T+1, S)       policy observations (state), 0..T
    actions      float32 (T, A)
    rewards      float32 (T,)           the env's own (dense) reward: evaluation only
    success      bool    (T+1,)         ground-truth success at each state 0..T

Readers stream one episode at a time (``iter_episodes``); a dataset is never loaded whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np

ARRAY_FIELDS = ("frames", "frame_steps", "states", "actions", "rewards", "success")


class DatasetFormatError(ValueError):
    """An episode file or index line does not match the documented format."""


@dataclass
class Episode:
    """One recorded episode (see the module docstring for shapes)."""

    task: str
    env_id: str
    frames: np.ndarray
    frame_steps: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    success: np.ndarray
    source: str = "demo"
    """Where it came from: ``demo``, ``noisy_demo``, ``random``, ``policy``, or an external dataset name."""
    seed: int = -1
    episode_id: str = ""
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(len(self.actions))

    @property
    def succeeded(self) -> bool:
        return bool(self.success.any())

    def validate(self) -> "Episode":
        T = self.num_steps
        checks = [
            (self.frames.dtype == np.uint8 and self.frames.ndim == 4 and self.frames.shape[-1] == 3,
             f"frames must be uint8 (F,H,W,3), got {self.frames.dtype} {self.frames.shape}"),
            (self.frame_steps.shape == (len(self.frames),), "frame_steps must have one entry per frame"),
            (len(self.frame_steps) == 0 or (self.frame_steps.min() >= 0 and self.frame_steps.max() <= T),
             "frame_steps must lie in 0..T"),
            (len(self.states) == T + 1, f"states must have T+1={T + 1} rows, got {len(self.states)}"),
            (self.rewards.shape == (T,), f"rewards must have shape (T,)=({T},), got {self.rewards.shape}"),
            (self.success.shape == (T + 1,), f"success must have shape (T+1,)=({T + 1},), got {self.success.shape}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise DatasetFormatError(f"episode {self.episode_id or '?'}: {msg}")
        return self


class EpisodeWriter:
    """Appends episodes to a dataset folder (creating it); safe to reopen and continue."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        (self.root / "episodes").mkdir(parents=True, exist_ok=True)
        self._index = self.root / "index.jsonl"
        self._count = sum(1 for _ in open(self._index)) if self._index.exists() else 0

    def write(self, ep: Episode) -> str:
        ep.validate()
        ep_id = ep.episode_id or f"{self._count:06d}"
        rel = f"episodes/{ep_id}.npz"
        tmp = self.root / f"episodes/.{ep_id}.tmp.npz"
        np.savez_compressed(tmp, **{k: getattr(ep, k) for k in ARRAY_FIELDS})
        os.replace(tmp, self.root / rel)  # an index line never points at a half-written file
        line = {"id": ep_id, "file": rel, "task": ep.task, "env_id": ep.env_id, "source": ep.source,
                "seed": ep.seed, "length": ep.num_steps, "success": ep.succeeded, "meta": ep.meta}
        with open(self._index, "a") as f:
            f.write(json.dumps(line) + "\n")
        self._count += 1
        return ep_id


def read_index(root: str | os.PathLike) -> list[dict]:
    """The index lines of a dataset (small: no arrays)."""
    path = Path(root) / "index.jsonl"
    if not path.exists():
        raise DatasetFormatError(f"{root} is not an episode dataset (no index.jsonl)")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_episode(root: str | os.PathLike, entry: dict) -> Episode:
    with np.load(Path(root) / entry["file"]) as z:
        missing = [k for k in ARRAY_FIELDS if k not in z]
        if missing:
            raise DatasetFormatError(f"{entry['file']}: missing arrays {missing}")
        arrays = {k: z[k] for k in ARRAY_FIELDS}
    return Episode(task=entry["task"], env_id=entry["env_id"], source=entry.get("source", ""),
                   seed=entry.get("seed", -1), episode_id=entry["id"], meta=entry.get("meta", {}),
                   **arrays).validate()


def iter_episodes(root: str | os.PathLike, where: Optional[Callable[[dict], bool]] = None) -> Iterator[Episode]:
    """Stream episodes one at a time, optionally filtered on their index line (no arrays loaded to filter)."""
    for entry in read_index(root):
        if where is None or where(entry):
            yield load_episode(root, entry)
