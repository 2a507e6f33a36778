"""The one config tree of vlmrl: OmegaConf structured configs (dataclasses) + YAML in ``configs/``.

Every field is documented where it is declared. Load with :func:`load_config`, which merges
the schema defaults, an optional YAML file and ``key=value`` dotlist overrides (the CLI's
trailing arguments), and rejects unknown keys with a clear error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class ScorerConfig:
    """Which scorer a reward worker runs and its parameters (validated by the scorer itself)."""

    name: str = "cnn"
    """Registered scorer name: ``synthetic``, ``cnn``; the VLM scorers add ``lrm``, ``preference``, ``window``, ``clip``."""
    params: Dict[str, Any] = field(default_factory=dict)
    """Scorer-specific parameters; each scorer declares a ``Params`` dataclass that checks them."""


@dataclass
class TlsConfig:
    """Optional TLS for the reward service (cluster use). Paths to PEM files."""

    enabled: bool = False
    cert_file: Optional[str] = None
    """Server certificate chain (server side)."""
    key_file: Optional[str] = None
    """Server private key (server side)."""
    ca_file: Optional[str] = None
    """CA bundle the client uses to verify the server."""
    server_name_override: Optional[str] = None
    """Client side: expected name in the server certificate (e.g. ``localhost`` in tests)."""


@dataclass
class ServerConfig:
    """One reward worker's gRPC server and dynamic batcher."""

    host: str = "127.0.0.1"
    """Bind address. Loopback unless configured (a cluster sets ``0.0.0.0`` plus TLS/token)."""
    port: int = 0
    """Port; 0 picks a free one (the chosen address is registered with the pool)."""
    max_batch: int = 32
    """Most items the scorer sees in one call."""
    max_wait_ms: float = 5.0
    """How long the batcher waits for more items after the first one arrives."""
    max_queue_items: int = 4096
    """Items waiting for the scorer beyond which new requests get RESOURCE_EXHAUSTED."""
    max_items_per_request: int = 1024
    """Largest item list one request may carry."""
    max_message_bytes: int = 64 * 1024 * 1024
    """gRPC receive/send limit; larger messages are refused by gRPC with RESOURCE_EXHAUSTED."""
    max_frame_pixels: int = 1024 * 1024
    """Largest H*W of one frame accepted (guards memory against a bogus shape)."""
    grace_s: float = 5.0
    """On shutdown, in-flight requests get this long to finish."""
    cache_size: int = 0
    """Reward cache entries (LRU keyed by scorer, model version, task, frame hash); 0 disables it."""
    auth_token: Optional[str] = None
    """If set, every call must carry ``authorization: Bearer <token>`` metadata."""
    tls: TlsConfig = field(default_factory=TlsConfig)


@dataclass
class ClientConfig:
    """The reward-service client used by actors and offline labelling."""

    deadline_s: float = 30.0
    """Deadline of one request to one worker."""
    max_in_flight: int = 8
    """Requests pipelined per worker connection."""
    retry_budget: int = 5
    """Times one request may be resent to another worker before the caller gets an exception."""
    retry_backoff_s: float = 0.2
    """Wait before a resend when no other worker is available."""
    max_items_per_request: int = 64
    """The client splits larger item lists into requests of this size."""
    discovery_interval_s: float = 2.0
    """How often the client re-reads the worker registry."""
    auth_token: Optional[str] = None
    tls: TlsConfig = field(default_factory=TlsConfig)


@dataclass
class PoolConfig:
    """The pool of reward workers, each a Ray actor hosting one gRPC server."""

    num_workers: int = 1
    num_gpus_per_worker: float = 0.0
    """1 on a GPU cluster, 0 on CPU."""
    num_cpus_per_worker: float = 1.0
    namespace: str = "vlmrl"
    """Ray namespace holding the registry (``vlmrl workers`` commands attach to it)."""
    registry_name: str = "vlmrl-reward-registry"
    """Name of the detached registry actor that lists worker addresses."""
    ray_address: Optional[str] = None
    """``auto`` to join a running cluster, None to start a local Ray."""


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


def load_config(path: str | os.PathLike | None = None, overrides: List[str] | None = None) -> DictConfig:
    """Schema defaults <- YAML file <- ``key=value`` overrides; unknown keys and bad types raise ConfigError."""
    cfg = OmegaConf.structured(VlmrlConfig)
    try:
        if path is not None:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(resolve_config_path(path)))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"overrides must be key=value, got: {bad}")
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
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
