"""The scorer plug-in interface of the reward service.

A scorer declares the one item kind it takes (a single frame, a pair of frames, or a window of
frames) and scores a whole batch at once; the server's dynamic batcher owns batching, so a
scorer never sees requests, only items. New scorers register with :func:`register_scorer` and
drop in without touching the server.

Items reach a scorer as uint8 arrays of shape ``(k, H, W, C)``: k = 1 for ``frame``,
k = 2 for ``pair`` (first, second), k = w for ``window`` (oldest first). Items in one batch
may have different H, W (a scorer resizes as it needs).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Mapping, Sequence, Type

import numpy as np
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from vlmrl.reward_workers.config import clear_tables_given_whole
from vlmrl.reward_workers.models.errors import ScorerError  # noqa: F401  (re-exported: scorers raise it)


class ItemKind(str, enum.Enum):
    """What one item holds: a frame, a pair of frames, or a window of frames."""

    FRAME = "frame"
    PAIR = "pair"
    WINDOW = "window"


@dataclass
class ScoreResult:
    """The reward of one item: a scalar, named components, and an optional categorical label."""

    reward: float
    components: Dict[str, float] = field(default_factory=dict)
    label: str = ""


class Scorer(ABC):
    """Base of every scorer plug-in: turns a batch of (task, item) pairs into rewards.

    Subclasses set ``name`` and ``item_kind``, may declare a ``Params`` dataclass for their
    config (unknown keys are rejected), and implement :meth:`score_batch`.
    """

    name: ClassVar[str]
    item_kind: ClassVar[ItemKind]

    @dataclass
    class Params:
        """No parameters."""

    def __init__(self, params: Any) -> None:
        self.params = params

    @property
    def model_id(self) -> str:
        """What model this scorer runs (path, hub id, or a description)."""
        return self.name

    @property
    def model_version(self) -> str:
        """Version of the weights now in use; responses and cache keys carry it."""
        return "0"

    @property
    def frames_per_item(self) -> int | None:
        """Exact frames per item this scorer needs (1, 2, w), or None if any count is fine."""
        return {ItemKind.FRAME: 1, ItemKind.PAIR: 2}.get(self.item_kind)

    @abstractmethod
    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        """Score ``items[i]`` (uint8, ``(k, H, W, C)``) against ``tasks[i]``; one result per item, same order."""

    def update_weights(self, version: str, state: bytes) -> None:
        """Swap in new model weights (a serialized state) that ``model_version`` then reports as ``version``.

        The server calls this on the scorer's own thread, between two batches, so a batch is always
        scored by one version (hot swap, see ``RewardServer.update_weights``). Scorers whose model
        is learned during training (``bt_reward``) override it; the rest refuse.
        """
        raise ScorerError(f"scorer {self.name!r} does not take weight updates")

    def close(self) -> None:
        """Release models and threads (called on server shutdown)."""

    @classmethod
    def check_params(cls, params: Any) -> None:
        """Cheap checks of ``params`` that load no model (e.g. that a weights folder exists), raising ScorerError:
        a job that starts reward workers runs them first, so a wrong path is one line before any worker starts
        instead of a worker's traceback. Default: nothing beyond the ``Params`` schema."""


_REGISTRY: Dict[str, Type[Scorer]] = {}


def register_scorer(cls: Type[Scorer]) -> Type[Scorer]:
    """Class decorator: make a scorer selectable by ``scorer.name`` in the config."""
    if not getattr(cls, "name", None) or not isinstance(getattr(cls, "item_kind", None), ItemKind):
        raise TypeError(f"{cls.__name__} must set class attributes `name` and `item_kind`")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"scorer name {cls.name!r} is taken by {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin_scorers() -> None:
    # Importing the modules registers their scorers; optional ones may be absent.
    import importlib

    for module in ("synthetic", "cnn", "compact_lrm", "lrm", "preference", "window", "clip", "bt_reward",
                   "toy_reach_oracle"):
        importlib.import_module(f"vlmrl.reward_workers.scorers.{module}")


def available_scorers() -> list[str]:
    _load_builtin_scorers()
    return sorted(_REGISTRY)


def _scorer_and_params(name: str, params: Mapping[str, Any] | None) -> tuple[Type[Scorer], Any]:
    """The registered class and ``params`` checked against its ``Params`` schema."""
    _load_builtin_scorers()
    if name not in _REGISTRY:
        raise ScorerError(f"unknown scorer {name!r}; available: {sorted(_REGISTRY)}")
    cls = _REGISTRY[name]
    try:
        given, schema = dict(params or {}), OmegaConf.structured(cls.Params)
        clear_tables_given_whole(schema, given)  # weights={progress: 1.0} means completion 0
        merged = OmegaConf.merge(schema, given)
    except (ConfigKeyError, ValidationError) as e:
        raise ScorerError(f"bad params for scorer {name!r}: {str(e).splitlines()[0]}") from e  # not OmegaConf's key dump
    return cls, OmegaConf.to_object(merged)


def build_scorer(name: str, params: Mapping[str, Any] | None = None) -> Scorer:
    """Instantiate a registered scorer; parameters are checked against its ``Params`` schema."""
    cls, checked = _scorer_and_params(name, params)
    return cls(checked)


def check_scorer_config(name: str, params: Mapping[str, Any] | None = None) -> None:
    """What can be checked of a scorer config without loading its model: the name, the ``Params`` schema and the
    scorer's own ``check_params`` (raises ScorerError). Jobs run it before they start reward workers."""
    cls, checked = _scorer_and_params(name, params)
    cls.check_params(checked)


def check_scorer_section(scorer_cfg: Any, key: str) -> None:
    """:func:`check_scorer_config` of a config section ``{name, params}``; ValueError naming ``key`` (e.g.
    ``scorer``) when workers built from it could not start. Only for workers on the checking machine (a cluster's
    nodes may hold weights it does not)."""
    params = scorer_cfg.get("params")
    params = OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else dict(params or {})
    try:
        check_scorer_config(str(scorer_cfg.name), params)
    except ScorerError as e:
        raise ValueError(f"{key}: {e}") from e
