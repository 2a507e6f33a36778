"""The preference mode's part of a ``vlmrl train`` checkpoint: one file next to PPO's state.

:class:`~vlmrl.learner.online.online_trainer.OnlineTrainer` writes PPO to ``checkpoints/iter_NNNNNN``; the
preference mode adds :data:`STATE_FILE` there (:meth:`PreferenceMode.on_checkpoint_saved`) and reads it
back on ``train.resume=true`` (:meth:`PreferenceMode.on_restored`). The file is a ``torch.save`` dict
loaded with ``weights_only=True`` (tensors, numbers, strings, bytes, lists and dicts only; frames are
stacked ``uint8`` tensors), written to a temporary name and renamed, so a crash mid-write never leaves
a half file under the final name. What it holds is listed in :mod:`vlmrl.learner.preference.mode`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

STATE_FILE = "preference_state.pt"
FORMAT = 1


class PreferenceStateMissingError(ValueError):
    """``train.resume=true`` in preference mode, but the checkpoint has no preference state (see mode doc)."""


def state_path(checkpoint_dir: str | Path) -> Path:
    return Path(checkpoint_dir) / STATE_FILE


def pack_frames(frames: Sequence[np.ndarray]) -> Dict[str, Any]:
    """Frames as one stacked uint8 tensor when they share a shape (the usual case), else one tensor each."""
    arrs = [np.asarray(f, np.uint8) for f in frames]
    if arrs and all(a.shape == arrs[0].shape for a in arrs):
        return {"stacked": torch.from_numpy(np.stack(arrs))}
    return {"list": [torch.from_numpy(np.ascontiguousarray(a)) for a in arrs]}


def unpack_frames(packed: Dict[str, Any]) -> List[np.ndarray]:
    if "stacked" in packed:
        return list(packed["stacked"].numpy())
    return [t.numpy() for t in packed["list"]]


def save_state(checkpoint_dir: str | Path, state: Dict[str, Any]) -> Path:
    """Write ``state`` (plus the format number) to ``<checkpoint_dir>/preference_state.pt`` atomically."""
    path = state_path(checkpoint_dir)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return path


def require_state(checkpoint_dir: str | Path) -> Path:
    """The state file of ``checkpoint_dir``; :class:`PreferenceStateMissingError` saying why when it is not there."""
    path = state_path(checkpoint_dir)
    if not path.is_file():
        raise PreferenceStateMissingError(
            f"train.resume=true in train.mode=preference, but checkpoint {Path(checkpoint_dir)} has no {STATE_FILE} "
            f"(written by a run from before the preference mode checkpointed its reward model, or deleted). Resuming "
            f"PPO without it would switch the policy to an untrained reward model, so the run stops instead: start a "
            f"new run (another run_name / output_dir), or resume from a checkpoint that has {STATE_FILE}.")
    return path


def load_state(checkpoint_dir: str | Path) -> Dict[str, Any]:
    """Read what :func:`save_state` wrote; :class:`PreferenceStateMissingError` when the file is not there."""
    path = require_state(checkpoint_dir)
    state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: preference state format {state.get('format')!r}, this version reads {FORMAT}")
    return state
