"""The layout of a training run's folder, shared by ``vlmrl train`` (:mod:`vlmrl.learner.online.online_trainer`), its modes
and ``vlmrl offline``: TensorBoard under ``tb/``, checkpoints under ``checkpoints/iter_NNNNNN/`` with
``checkpoints/latest.json`` naming the newest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

TB_DIR = "tb"
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"


def run_and_checkpoint(path: str | Path) -> Tuple[Path, Optional[Path]]:
    """(run folder, checkpoint folder or None for the newest) of a run folder or one of its checkpoint folders."""
    p = Path(path)
    if p.parent.name == CHECKPOINT_DIR:
        return p.parent.parent, p
    return p, None


def latest_checkpoint(run_dir: Path) -> Optional[Dict[str, Any]]:
    """``{"iteration", "path", "env_steps"}`` of the run's newest checkpoint, or None."""
    f = Path(run_dir) / CHECKPOINT_DIR / LATEST
    if not f.exists():
        return None
    return json.loads(f.read_text())


def prune_checkpoints(run_dir: Path, keep: int) -> List[Path]:
    """Delete all but the newest ``keep`` ``checkpoints/iter_*`` folders (never the one ``latest.json`` names;
    ``keep`` <= 0 keeps all); returns the deleted folders."""
    if int(keep) <= 0:
        return []
    latest = latest_checkpoint(run_dir)
    keep_name = Path(latest["path"]).name if latest else None
    folders = sorted(p for p in (Path(run_dir) / CHECKPOINT_DIR).glob("iter_*") if p.is_dir())
    doomed = [p for p in folders[:-int(keep)] if p.name != keep_name]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed
