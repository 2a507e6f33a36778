"""Config schemas of the reward service: the scorer a worker runs, its gRPC server, the client, the worker pool.

Part of the one config tree (:mod:`vlmrl.system.config` assembles it); they live here, with the code that reads
them, so the reward workers never import upward. Every field is documented where it is declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Optional

from omegaconf import DictConfig, OmegaConf


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
    fixed_batch_size: int = 0
    """0: the scorer gets each batch as it formed (1..max_batch items, depending on timing). N > 0: it gets pieces of
    exactly N items (the last padded with copies, their results dropped), so a reward does not depend on which items
    shared its batch -- CPU kernels round differently per batch size, which makes same-seed runs drift apart
    (configs/demo.yaml). Exact for fixed-shape models (cnn, compact_lrm, bt_reward); VLM batches also differ by
    their left padding. Costs the padded items' compute."""
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
    """null: no auth. A string: every call must carry ``authorization: Bearer <token>`` metadata; an empty or blank
    string (e.g. an unset ``${oc.env:VAR,}``) is a start-up error, never a silent 'no auth'."""
    require_auth: bool = False
    """Auth asked for: the server refuses to start unless ``auth_token`` is a non-empty string (a dotlist
    ``server.auth_token=$UNSET_VAR`` parses as null, so only this flag can catch it). A server bound to a
    non-loopback host without a token logs a warning."""
    tls: TlsConfig = field(default_factory=TlsConfig)
    # --- issue 26: per-client bounds and decode limits (see README "One reward worker") ---
    max_stream_requests: int = 64
    """Requests one ScoreStream may have in flight (read but not yet answered on the wire). At the cap the server
    stops reading that stream, so HTTP/2 flow control holds back its sender: a flooding or never-reading client
    holds at most this many requests and answers in server memory."""
    max_client_items: int = 1024
    """Items one client (a ScoreStream, or the unary calls of one connection) may have being decoded, queued or
    scored. A stream at the cap is not read until items finish; a unary call over it gets RESOURCE_EXHAUSTED.
    A client with nothing in flight is always admitted one request. The batcher serves clients round-robin."""
    max_client_decoded_bytes: int = 256 * 1024 * 1024
    """Like ``max_client_items``, for the bytes of a client's requests in flight (received message + decoded frames)."""
    max_request_decoded_bytes: int = 128 * 1024 * 1024
    """Largest decoded size (sum of H*W*C over a request's frames, from the declared shapes, checked before any
    PNG/JPEG is decoded) of one request; larger ones get INVALID_ARGUMENT."""
    max_decoded_bytes: int = 1024 * 1024 * 1024
    """Bytes of requests (received message + decoded frames) the whole server holds in flight; a request that would
    pass it gets RESOURCE_EXHAUSTED."""
    max_connection_streams: int = 100
    """Concurrent calls on one HTTP/2 connection (gRPC ``max_concurrent_streams``); more wait on the client (a burst
    sent before the client has the server's HTTP/2 settings gets REFUSED_STREAM, i.e. UNAVAILABLE, and is retried)."""


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
    # --- issue 22/26: waiting for replacement workers ---
    no_worker_wait_s: float = 60.0
    """The bound on waiting for a reward worker: while no worker is usable (all dead, being replaced by the pool's
    supervisor) every queued and in-flight request waits, spending no retries; once no worker has answered for this
    long, all of them fail together with RewardUnavailableError (0 = fail at once). Failed workers are retried with
    backoff (``retry_backoff_s`` doubling up to 2 s), so a dead address is not hammered."""
    # --- issue 25/26: request size ---
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest serialized wire request (and answer) the client sends. Item lists are split so each request fits;
    a single item too large alone fails its call at once (RequestTooLargeError), unsent and not retried. Keep it
    at most the workers' ``server.max_message_bytes``: a worker refuses larger messages, which the client resends."""


# --- issue 22: placement and autoscaling of the reward worker pool ---


@dataclass
class AutoscaleConfig:
    """``pool.autoscale``: the pool's supervisor resizes the pool from the workers' Info statistics (HPA-style:
    wanted = ceil(size * observed / target), one step per ``cooldown_s``, no change within ``hysteresis``)."""

    enabled: bool = False
    min_workers: int = 1
    max_workers: int = 4
    metric: str = "queue_depth"
    """``queue_depth`` (items waiting in a worker's batcher + requests in flight, mean per worker) or ``latency_ms``
    (mean request latency per worker over the last interval)."""
    target: float = 8.0
    """The wanted value of ``metric`` per worker."""
    hysteresis: float = 0.2
    """No scaling while the observed value is within target x (1 +- hysteresis)."""
    cooldown_s: float = 10.0
    """At least this long between two scale events."""
    interval_s: float = 1.0
    """How often the workers' statistics are read; the decision uses the mean over the last ``window`` reads."""
    window: int = 3


@dataclass
class PoolConfig:
    """The pool of reward workers, each a Ray actor hosting one gRPC server, kept at its target size by a
    supervisor actor (``reward_workers/supervisor.py``)."""

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
    # --- issue 22: self-healing, placement, autoscaling ---
    resources: Dict[str, float] = field(default_factory=dict)
    """Ray custom resources each worker needs (e.g. ``{reward_node: 1}``): workers only go to nodes started with
    them (``ray start --resources='{"reward_node": 4}'``), so reward nodes and actor nodes scale separately."""
    label_selector: Dict[str, str] = field(default_factory=dict)
    """Ray node labels a worker's node must have (Ray's ``label_selector``, e.g. ``{ray.io/accelerator-type: A100}``)."""
    spread: bool = True
    """Place workers with Ray's SPREAD strategy (one node's loss takes as few workers as possible)."""
    heal: bool = True
    """The supervisor replaces dead workers (crash, OOM kill, node loss) with new ones carrying the current weights."""
    supervise_interval_s: float = 0.5
    """How often the supervisor checks the workers' liveness."""
    start_timeout_s: float = 120.0
    """A new worker must be serving within this long (else it is killed and the reason reported)."""
    fail_if_infeasible: bool = True
    """Refuse at once a pool size no set of the cluster's nodes can ever hold (listing the nodes' resources); set
    false on a cluster with the Ray autoscaler, where the pending workers' requests grow the cluster."""
    autoscale: AutoscaleConfig = field(default_factory=AutoscaleConfig)
    spares: int = 0
    """Warm standby workers (issue 22): started and ready but not registered, so clients send them nothing. A lost
    worker is replaced by registering a spare (milliseconds, not a worker's start-up of seconds to a minute) and a
    new spare starts behind it. Each spare holds its resources (one GPU each on a GPU pool)."""


def clear_tables_given_whole(base: DictConfig, layer: Any, keys: Optional[Iterable[str]] = None, _prefix: str = "") -> None:
    """Empty each plain-dict node of ``base`` (a ``Dict[...]`` field, not a dataclass) that ``layer`` gives as a
    whole table, so that merging ``layer`` next replaces the table instead of adding to it key by key.

    Such tables are weighted sums whose missing names weigh 0 (``reward.components``, the compact LRM's
    ``weights``, ``lrm_train.vlm.task_weights``): OmegaConf's key-by-key merge would silently keep the schema's
    ``{reward: 1.0}`` beside a YAML's ``{progress: 1.0}``. ``keys``: the dotted paths that count as given whole
    (a command line's ``reward.components={...}``, but not ``reward.components.progress=2``); None: all."""
    wanted = None if keys is None else set(keys)
    for k, value in (layer.items() if isinstance(layer, (dict, DictConfig)) else ()):
        if not isinstance(value, (dict, DictConfig)) or not isinstance(base, DictConfig) or k not in base:
            continue
        path = f"{_prefix}{k}"
        if OmegaConf.get_type(base, k) is dict:
            if wanted is None or path in wanted:
                base[k] = {}
        else:
            clear_tables_given_whole(base[k], value, wanted, _prefix=f"{path}.")


@dataclass
class RewardServiceConfig:
    """The sections of the config tree a reward worker reads (the root :class:`vlmrl.system.config.VlmrlConfig`
    has the same ones): what a worker process or Ray actor validates its config dict against."""

    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)


def reward_service_config(cfg: Any) -> DictConfig:
    """A whole config tree (dict or DictConfig) cut to :class:`RewardServiceConfig`'s sections and checked."""
    sections = {k: cfg[k] for k in ("scorer", "server", "client", "pool") if k in cfg}
    return OmegaConf.merge(OmegaConf.structured(RewardServiceConfig), sections)
