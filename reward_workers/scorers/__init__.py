"""Scorer plug-ins: each turns a batch of (task, frames) items into rewards."""

from vlmrl.reward_workers.scorers.base import (  # noqa: F401
    ItemKind,
    ScoreResult,
    Scorer,
    available_scorers,
    build_scorer,
    register_scorer,
)
