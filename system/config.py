"""The one config tree of vlmrl: OmegaConf structured configs (dataclasses) + YAML in ``configs/``.

The section schemas live with the code that reads them (``reward_workers/config.py``, ``envs/config.py``,
``actors/config.py``, ``learner/config.py``); this module assembles them into :class:`VlmrlConfig` and re-exports
them for the CLI. Every field is documented where it is declared. Load with :func:`load_config`, which merges
the schema defaults, an optional YAML file and ``key=value`` dotlist overrides (the CLI's
trailing arguments), and rejects unknown keys with a clear error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from vlmrl.actors.config import RewardConfig
from vlmrl.envs.config import BuildOfflineDatasetConfig, DatasetInputConfig, EnvConfig, HDF5KeysConfig, RecordDemosConfig
from vlmrl.learner.config import (AuditConfig, EvalRewardConfig, LabelConfig, LrmLoraConfig, LrmLossWeights,
                                  LrmRefineConfig, LrmTrainConfig, OfflineConfig, PreferenceConfig, RewardRefreshConfig,
                                  TrainConfig)
from vlmrl.reward_workers.config import (AutoscaleConfig, ClientConfig, PoolConfig, ScorerConfig, ServerConfig,
                                         TlsConfig, clear_tables_given_whole)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class VlmrlConfig:
    """Root of the config tree."""

    run_name: str = "default"
    output_dir: str = "runs"
    """Each run writes under ``<output_dir>/<run_name>/`` (resolved config, logs, checkpoints)."""
    seed: int = 0
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    record_demos: RecordDemosConfig = field(default_factory=RecordDemosConfig)
    lrm_train: LrmTrainConfig = field(default_factory=LrmTrainConfig)
    eval_reward: EvalRewardConfig = field(default_factory=EvalRewardConfig)
    build_offline_dataset: BuildOfflineDatasetConfig = field(default_factory=BuildOfflineDatasetConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    lrm_refine: LrmRefineConfig = field(default_factory=LrmRefineConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    reward_refresh: RewardRefreshConfig = field(default_factory=RewardRefreshConfig)


class ConfigError(ValueError):
    """A config file or override does not fit the schema."""


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A config path as given, or a bare name looked up in ``configs/`` (``reward_service`` -> configs/reward_service.yaml)."""
    p = Path(path)
    if p.exists():
        return p
    for candidate in (CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"):
        if candidate.exists():
            return candidate
    raise ConfigError(f"config file not found: {path} (looked in . and {CONFIG_DIR})")


def drop_params_of_renamed_plugins(base: DictConfig, layer: Any, given: Iterable[str]) -> None:
    """Empty ``X.params`` of every ``{name, params}`` node (a :class:`ScorerConfig`) whose ``X.name`` the command
    line changes: the YAML's parameters belong to the scorer it names (``vlmrl serve reward_service
    scorer.name=synthetic`` must not hand the cnn's ``image_size`` to synthetic); ``X.params...`` given on the
    same command line still apply."""
    for key in given:
        if not key.endswith(".name"):
            continue
        prefix = key[: -len(".name")]
        node = OmegaConf.select(base, prefix)
        new_name = OmegaConf.select(layer, key)
        if isinstance(node, DictConfig) and "params" in node and "name" in node and node.name != new_name:
            node.params = {}


def load_config(path: str | os.PathLike | None = None, overrides: List[str] | None = None) -> DictConfig:
    """Schema defaults <- YAML file <- ``key=value`` overrides; unknown keys and bad types raise ConfigError.

    A dict table (e.g. ``reward.components``) written whole in the YAML or as ``key={...}`` replaces the one
    before it (:func:`clear_tables_given_whole`); ``key.name=value`` sets one entry."""
    cfg = OmegaConf.structured(VlmrlConfig)
    try:
        if path is not None:
            layer = OmegaConf.load(resolve_config_path(path))
            clear_tables_given_whole(cfg, layer)
            cfg = OmegaConf.merge(cfg, layer)
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"overrides must be key=value, got: {bad}")
            layer = OmegaConf.from_dotlist(list(overrides))
            given = {o.split("=", 1)[0].strip() for o in overrides}
            clear_tables_given_whole(cfg, layer, given)
            drop_params_of_renamed_plugins(cfg, layer, given)
            cfg = OmegaConf.merge(cfg, layer)
    except (ConfigKeyError, ValidationError) as e:
        raise ConfigError(f"invalid config: {e}") from e
    return cfg


def run_dir(cfg: DictConfig) -> Path:
    """The run's output folder, created."""
    d = Path(cfg.output_dir) / cfg.run_name
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_resolved(cfg: DictConfig, directory: str | os.PathLike) -> Path:
    """Write the fully resolved config next to a run's outputs and return its path."""
    out = Path(directory) / "config.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out, resolve=True)
    return out
