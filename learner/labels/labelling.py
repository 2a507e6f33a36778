"""Offline reward labelling (RG-VLM): every step of an offline dataset gets a scorer reward through the
reward workers, combined with the sparse env reward, written as resumable Parquet shards.

Role in the reward path: ``vlmrl label`` streams episodes from a reader (``vlmrl.envs.offline_readers``),
builds one scorer item per step, sends them with plain batched :class:`~vlmrl.reward_workers.client.RewardClient`
calls (many requests in flight, spread over all workers, resent elsewhere if a worker dies) and writes
what the offline learner (IQL, ``vlmrl offline``) reads.

Items of step t (the action taken in state t, leading to state t+1). Frames may be strided
(``frame_steps``); "the frame of state s" is the newest frame taken at or before step s:

* ``window`` (RG-VLM): the last w frames ending at the frame of state t+1, oldest first. At the start of
  an episode, where fewer than w frames exist, the window is padded at the front by repeating the
  episode's first frame (``[f0, f0, f0, f0, f0, f0, f0, f1]`` for t = 0, w = 8, frames at every step).
* ``pair``: (frame of state t, frame of state t+1).
* ``frame``: the frame of state t+1.

Steps whose items are identical (strided frames) are scored once. Rewards:
``r_vlm = clip((raw - vlm_reward_min) / (vlm_reward_max - vlm_reward_min), 0, 1)``,
``success_reward = label.success_reward if success[t+1] else 0`` and
``reward = w_vlm * r_vlm + w_env * success_reward``. Scorers whose raw rewards are not in [0, 1] (``clip``:
cosines in a narrow band) are calibrated on the data with :func:`calibrate_score_range`.

Output folder::

    <output_dir>/settings.json                 labelling settings; a rerun with other settings is refused
    <output_dir>/shards/shard-00000.parquet    the rows of episodes [0, N), N = episodes_per_shard
    <output_dir>/shards/shard-00000.done.json  commit marker: episode ids, rows, model versions, time
    <output_dir>/manifest.json                 written when every shard is done: totals, shard list
    <output_dir>/config.yaml                   resolved config of the last run

A shard is written to ``shards/.shard-k.parquet.tmp`` and renamed, then its marker is written the same
way: a shard without its marker does not exist. A rerun skips shards whose marker and file exist (it
does not load their episodes) and labels the rest. Read the result with :func:`read_labelled` (committed
shards only) or ``pyarrow.dataset.dataset(<output_dir>/shards)`` (temp files start with "." and are ignored).

Parquet schema (one row per step, rows ordered by episode then step):

    episode_id          string    the episode's id in its dataset
    episode_index       int64     position of the episode in the input dataset
    step                int32     t, 0..T-1
    num_steps           int32     T of the episode
    dataset             string    name of the input dataset
    task                string    task text the scorer was given
    env_id              string
    source              string    demo / noisy_demo / random / external ...
    state               list<float32>   observation (state) at t
    next_state          list<float32>   observation at t+1
    action              list<float32>   action at t
    env_reward          float32   the dataset's own reward of step t (dense in ManiSkill recordings)
    success             bool      success of state t+1
    success_reward      float32   sparse env reward: success_reward if success else 0
    r_vlm_raw           float32   the scorer's reward as returned
    r_vlm               float32   normalised to [0, 1]
    reward              float32   w_vlm * r_vlm + w_env * success_reward (what the learner trains on)
    terminal            bool      success at t+1 (when terminal_on_success): no bootstrapping past it
    is_first            bool      t == 0
    is_last             bool      t == T-1 (end of the recorded episode: terminal or truncated)
    frame_step          int32     step of the newest frame in the item
    item_frame_steps    list<int32>     steps of the item's frames, oldest first (padding repeats the first)
    scorer              string    scorer name reported by the workers
    model_version       string    model version that produced this reward
    prompt_variant      string    window scorer prompt (two_stage / single_stage) as configured; "" otherwise
    item_kind           string    window / pair / frame
    window_size         int32     frames per item
    cached              bool      answered from a worker's reward cache
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmrl.envs.dataset import Episode
from vlmrl.envs.offline_readers import EpisodeReader

ITEM_KINDS = ("window", "pair", "frame")
WINDOW_SIZES = (4, 8, 16)

SCHEMA = pa.schema([
    ("episode_id", pa.string()), ("episode_index", pa.int64()), ("step", pa.int32()), ("num_steps", pa.int32()),
    ("dataset", pa.string()), ("task", pa.string()), ("env_id", pa.string()), ("source", pa.string()),
    ("state", pa.list_(pa.float32())), ("next_state", pa.list_(pa.float32())), ("action", pa.list_(pa.float32())),
    ("env_reward", pa.float32()), ("success", pa.bool_()), ("success_reward", pa.float32()),
    ("r_vlm_raw", pa.float32()), ("r_vlm", pa.float32()), ("reward", pa.float32()),
    ("terminal", pa.bool_()), ("is_first", pa.bool_()), ("is_last", pa.bool_()),
    ("frame_step", pa.int32()), ("item_frame_steps", pa.list_(pa.int32())),
    ("scorer", pa.string()), ("model_version", pa.string()), ("prompt_variant", pa.string()),
    ("item_kind", pa.string()), ("window_size", pa.int32()), ("cached", pa.bool_()),
])
"""The Parquet schema of labelled steps (see the module docstring)."""


class LabellingError(RuntimeError):
    """Labelling cannot run or cannot continue; the message says why."""


@dataclass
class LabelSettings:
    """What decides the labels; a rerun into the same output folder must have the same settings."""

    dataset: str
    item_kind: str = "window"
    window_size: int = 8
    w_vlm: float = 1.0
    w_env: float = 1.0
    success_reward: float = 1.0
    vlm_reward_min: float = 0.0
    vlm_reward_max: float = 1.0
    terminal_on_success: bool = True
    episodes_per_shard: int = 16
    max_episodes: int = 0
    scorer: str = ""
    prompt_variant: str = ""
    scorer_params: Optional[Dict[str, Any]] = None
    """The ``scorer.params`` section when it describes the workers' scorer (model path, window, prompt, ...);
    None when the workers run another scorer than the section names (e.g. remote workers started elsewhere)."""
    input: Dict[str, Any] = field(default_factory=dict)
    """The input section (path, format, task_text, ...) as given."""

    def __post_init__(self) -> None:
        if self.item_kind not in ITEM_KINDS:
            raise LabellingError(f"label.item_kind must be one of {list(ITEM_KINDS)}, got {self.item_kind!r}")
        if self.item_kind == "window" and self.window_size not in WINDOW_SIZES:
            raise LabellingError(f"label.window_size must be one of {list(WINDOW_SIZES)}, got {self.window_size}")
        if not self.vlm_reward_max > self.vlm_reward_min:
            raise LabellingError(f"label.vlm_reward_max ({self.vlm_reward_max}) must be > vlm_reward_min ({self.vlm_reward_min})")
        if self.episodes_per_shard < 1:
            raise LabellingError(f"label.episodes_per_shard must be >= 1, got {self.episodes_per_shard}")

    @property
    def frames_per_item(self) -> int:
        return {"window": self.window_size, "pair": 2, "frame": 1}[self.item_kind]


# ---------------------------------------------------------------------------------------------- items


def state_frame_index(frame_steps: np.ndarray, num_steps: int) -> np.ndarray:
    """For each state s in 0..T: index of the newest frame taken at or before step s (the first frame if none)."""
    fs = np.asarray(frame_steps)
    if len(fs) == 0:
        raise LabellingError("the episode has no frames; labelling needs image observations "
                             "(HDF5: set input.hdf5.image_key)")
    if np.any(np.diff(fs) < 0):
        raise LabellingError("frame_steps must be non-decreasing")
    idx = np.searchsorted(fs, np.arange(num_steps + 1), side="right") - 1
    return np.maximum(idx, 0)


def step_items(frame_steps: np.ndarray, num_steps: int, kind: str, window: int) -> np.ndarray:
    """``(T, k)`` frame indices of each step's item (see the module docstring), oldest first."""
    at = state_frame_index(frame_steps, num_steps)
    after = at[1:]
    if kind == "frame":
        return after[:, None]
    if kind == "pair":
        return np.stack([at[:-1], after], axis=1)
    offsets = np.arange(-window + 1, 1)
    return np.maximum(after[:, None] + offsets[None, :], 0)  # front padding repeats frame 0


@dataclass
class EpisodePlan:
    """The distinct items of an episode and which one each step uses."""

    unique: np.ndarray
    """(U, k) frame indices of the distinct items."""
    inverse: np.ndarray
    """(T,) index into ``unique`` of each step's item."""
    per_step: np.ndarray
    """(T, k) frame indices per step."""


def plan_episode(ep: Episode, settings: LabelSettings) -> EpisodePlan:
    per_step = step_items(ep.frame_steps, ep.num_steps, settings.item_kind, settings.window_size)
    unique, inverse = np.unique(per_step, axis=0, return_inverse=True)
    return EpisodePlan(unique, np.asarray(inverse).reshape(-1), per_step)


def calibrate_score_range(reader: EpisodeReader, scorer: Any, episodes: int = 16,
                          percentiles: Sequence[float] = (5.0, 95.0), window_size: int = 8,
                          batch_items: int = 64) -> Tuple[float, float]:
    """``(lo, hi)`` for ``label.vlm_reward_min/max``: the ``percentiles`` of a scorer's raw rewards over the steps
    of the dataset's first shard (episodes ``[0, episodes)``, i.e. ``label.episodes_per_shard``), each step's item
    built as ``vlmrl label`` builds it. For scorers whose raw scores do not span [0, 1], e.g. ``clip`` (cosines
    in a narrow band). ``scorer`` is an in-process scorer (``build_scorer``). Example::

        from vlmrl.envs.offline_readers import open_reader
        from vlmrl.reward_workers.scorers import build_scorer
        lo, hi = calibrate_score_range(open_reader("runs/datasets/mix"), build_scorer("clip", {"model": "/path/to/clip"}))
        # then: vlmrl label ... scorer.name=clip scorer.params.model=/path/to/clip label.vlm_reward_min=lo label.vlm_reward_max=hi
    """
    p_lo, p_hi = (float(p) for p in percentiles)
    if not 0.0 <= p_lo < p_hi <= 100.0:
        raise LabellingError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {list(percentiles)}")
    kind = getattr(scorer.item_kind, "value", scorer.item_kind)
    settings = LabelSettings(dataset="", item_kind=kind, window_size=window_size)
    raw: List[np.ndarray] = []
    for i in range(min(len(reader), max(1, int(episodes)))):
        ep = reader.load(i)
        plan = plan_episode(ep, settings)
        scores = []
        for a in range(0, len(plan.unique), batch_items):
            items = ep.frames[plan.unique[a:a + batch_items]]  # (n, k, H, W, 3)
            scores += [r.reward for r in scorer.score_batch([ep.task] * len(items), list(items))]
        raw.append(np.asarray(scores, np.float64)[plan.inverse])  # per step, like the r_vlm_raw column
    if not raw:
        raise LabellingError("calibrate_score_range: the dataset has no episodes")
    lo, hi = (float(v) for v in np.percentile(np.concatenate(raw), [p_lo, p_hi]))
    if not lo < hi:
        raise LabellingError(f"calibrate_score_range: percentiles {p_lo}/{p_hi} of the raw scores are both {lo} "
                             f"(constant scores); cannot make a range")
    return lo, hi


# ---------------------------------------------------------------------------------------------- rows


def _list_column(rows: np.ndarray, dtype: Any) -> pa.Array:
    rows = np.asarray(rows, dtype=dtype)
    rows = rows.reshape(len(rows), -1)
    offsets = np.arange(0, rows.size + 1, rows.shape[1], dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(rows.reshape(-1)))


def episode_table(ep: Episode, episode_index: int, dataset: str, plan: EpisodePlan, results: Sequence[Any],
                  settings: LabelSettings) -> pa.Table:
    """The labelled rows of one episode; ``results[u]`` is the RewardResult of ``plan.unique[u]``."""
    T = ep.num_steps
    raw_u = np.array([r.reward for r in results], np.float64)
    raw = raw_u[plan.inverse]
    lo, hi = settings.vlm_reward_min, settings.vlm_reward_max
    r_vlm = np.clip((raw - lo) / (hi - lo), 0.0, 1.0)
    success = np.asarray(ep.success[1:], bool)
    success_reward = np.where(success, settings.success_reward, 0.0)
    reward = settings.w_vlm * r_vlm + settings.w_env * success_reward
    steps = np.arange(T)
    item_steps = np.asarray(ep.frame_steps)[plan.per_step].astype(np.int32)
    versions = [results[u].model_version for u in plan.inverse]
    cached = [bool(results[u].cached) for u in plan.inverse]
    cols = {
        "episode_id": [ep.episode_id or str(episode_index)] * T, "episode_index": np.full(T, episode_index, np.int64),
        "step": steps.astype(np.int32), "num_steps": np.full(T, T, np.int32),
        "dataset": [dataset] * T, "task": [ep.task] * T, "env_id": [ep.env_id] * T, "source": [ep.source] * T,
        "state": _list_column(ep.states[:-1], np.float32), "next_state": _list_column(ep.states[1:], np.float32),
        "action": _list_column(ep.actions, np.float32),
        "env_reward": np.asarray(ep.rewards, np.float32), "success": success,
        "success_reward": success_reward.astype(np.float32), "r_vlm_raw": raw.astype(np.float32),
        "r_vlm": r_vlm.astype(np.float32), "reward": reward.astype(np.float32),
        "terminal": success & settings.terminal_on_success, "is_first": steps == 0, "is_last": steps == T - 1,
        "frame_step": item_steps[:, -1], "item_frame_steps": _list_column(item_steps, np.int32),
        "scorer": [settings.scorer] * T, "model_version": versions, "prompt_variant": [settings.prompt_variant] * T,
        "item_kind": [settings.item_kind] * T, "window_size": np.full(T, settings.frames_per_item, np.int32),
        "cached": cached,
    }
    return pa.table({name: pa.array(cols[name], type=SCHEMA.field(name).type) if not isinstance(cols[name], pa.Array)
                     else cols[name].cast(SCHEMA.field(name).type) for name in SCHEMA.names}, schema=SCHEMA)


# ---------------------------------------------------------------------------------------------- shards on disk


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ShardStore:
    """The output folder: committed shards (file + done marker), settings and the final manifest."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir)
        self.shards = self.root / "shards"

    def parquet(self, k: int) -> Path:
        return self.shards / f"shard-{k:05d}.parquet"

    def marker(self, k: int) -> Path:
        return self.shards / f"shard-{k:05d}.done.json"

    def is_done(self, k: int) -> bool:
        return self.marker(k).exists() and self.parquet(k).exists()

    def prepare(self, settings: LabelSettings, overwrite: bool) -> None:
        """Create the folder, or check that an existing one was labelled with the same settings."""
        if overwrite and self.root.exists():
            shutil.rmtree(self.root)
        self.shards.mkdir(parents=True, exist_ok=True)
        path = self.root / "settings.json"
        mine = json.loads(json.dumps(asdict(settings)))
        if path.exists():
            theirs = json.loads(path.read_text())
            if theirs != mine:
                diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                raise LabellingError(
                    f"{self.root} was labelled with other settings (differ in {diff}); use another label.output_dir "
                    f"or label.overwrite=true")
        else:
            _atomic_write_bytes(path, json.dumps(mine, indent=2).encode())

    def commit(self, k: int, table: pa.Table, meta: Dict[str, Any]) -> None:
        """Write shard ``k`` atomically: temp file + rename, then the marker (temp + rename)."""
        final = self.parquet(k)
        tmp = final.with_name(f".{final.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        _atomic_write_bytes(self.marker(k), json.dumps(meta, indent=2).encode())

    def done_markers(self) -> List[Dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.shards.glob("shard-*.done.json"))]


def read_labelled(out_dir: str | os.PathLike) -> pa.Table:
    """All committed shards of a labelled dataset as one table (rows by episode, then step)."""
    store = ShardStore(out_dir)
    files = [store.parquet(m["shard"]) for m in store.done_markers()]
    if not files:
        raise LabellingError(f"{out_dir} has no committed shards")
    return pa.concat_tables([pq.read_table(f) for f in files])


# ---------------------------------------------------------------------------------------------- labelling


class _InFlight:
    """Counts submitted, unanswered items; ``acquire`` blocks past the cap (a lone oversize chunk may pass)."""

    def __init__(self, cap: int) -> None:
        self.cap, self.n = max(1, int(cap)), 0
        self._cv = threading.Condition()

    def acquire(self, k: int) -> None:
        with self._cv:
            self._cv.wait_for(lambda: self.n == 0 or self.n + k <= self.cap)
            self.n += k

    def release(self, k: int) -> None:
        with self._cv:
            self.n -= k
            self._cv.notify_all()


@dataclass
class _PendingEpisode:
    index: int
    episode: Episode
    plan: EpisodePlan
    futures: List[Any]


@dataclass
class LabelReport:
    """What one ``label_dataset`` call did."""

    shards_total: int = 0
    shards_skipped: int = 0
    shards_labelled: int = 0
    episodes: int = 0
    steps: int = 0
    items_scored: int = 0
    cached_items: int = 0
    seconds: float = 0.0

    @property
    def frames_per_s(self) -> float:
        """Labelled steps (one reward per frame step) per second of this call."""
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def label_dataset(reader: EpisodeReader, client: Any, settings: LabelSettings, out_dir: str | os.PathLike,
                  overwrite: bool = False, max_items_in_flight: int = 512, prefetch_shards: int = 2,
                  on_shard_committed: Optional[Callable[[int], None]] = None, progress: bool = False,
                  request_items: int = 64) -> LabelReport:
    """Label ``reader``'s episodes into ``out_dir`` through ``client`` (a RewardClient); resumable.

    ``on_shard_committed(k)`` runs after shard k is committed (tests use it to simulate a crash).
    Raises the client's error (e.g. RewardUnavailableError) if some item cannot be scored: the shards
    committed before stay, a rerun resumes from them.
    """
    store = ShardStore(out_dir)
    store.prepare(settings, overwrite)
    n_eps = len(reader) if settings.max_episodes <= 0 else min(len(reader), settings.max_episodes)
    N = settings.episodes_per_shard
    shards = [(k, list(range(k * N, min((k + 1) * N, n_eps)))) for k in range((n_eps + N - 1) // N)]
    report = LabelReport(shards_total=len(shards))
    todo = [(k, eps) for k, eps in shards if not store.is_done(k)]
    report.shards_skipped = len(shards) - len(todo)
    total_steps = sum(int(reader.entry(i)["length"]) for _, eps in todo for i in eps)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, unit="frame", unit_scale=True, desc="labelling", dynamic_ncols=True)
    gate = _InFlight(max_items_in_flight)
    kind, dataset_name = settings.item_kind, reader.name
    t0 = time.perf_counter()

    def submit_episode(i: int) -> _PendingEpisode:
        ep = reader.load(i)
        plan = plan_episode(ep, settings)
        futures = []
        for a in range(0, len(plan.unique), request_items):
            chunk = plan.unique[a:a + request_items]
            items = ep.frames[chunk]  # (n, k, H, W, 3)
            if kind == "frame":
                items = items[:, 0]
            gate.acquire(len(chunk))
            fut = client.submit(ep.task, items, kind)
            fut.add_done_callback(lambda _f, n=len(chunk): gate.release(n))
            futures.append(fut)
        return _PendingEpisode(i, ep, plan, futures)

    def commit(k: int, pending: List[_PendingEpisode]) -> None:
        tables, versions = [], set()
        for p in pending:
            results = [r for f in p.futures for r in f.result()]
            if len(results) != len(p.plan.unique):
                raise LabellingError(f"episode {p.episode.episode_id}: {len(results)} rewards for {len(p.plan.unique)} items")
            tables.append(episode_table(p.episode, p.index, dataset_name, p.plan, results, settings))
            versions.update(r.model_version for r in results)
            report.items_scored += len(results)
            report.cached_items += sum(bool(r.cached) for r in results)
        table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
        store.commit(k, table, {"shard": k, "file": store.parquet(k).name, "rows": table.num_rows,
                                "episodes": [p.episode.episode_id or str(p.index) for p in pending],
                                "episode_indices": [p.index for p in pending], "model_versions": sorted(versions),
                                "committed_at": time.time()})
        steps = sum(p.episode.num_steps for p in pending)
        report.shards_labelled += 1
        report.episodes += len(pending)
        report.steps += steps
        if bar is not None:
            bar.update(steps)
            el = time.perf_counter() - t0
            bar.set_postfix_str(f"{report.steps / max(el, 1e-9):.1f} frames/s, shard {k}")
        if on_shard_committed is not None:
            on_shard_committed(k)

    queue: List[tuple[int, List[_PendingEpisode]]] = []
    try:
        for k, eps in todo:
            queue.append((k, [submit_episode(i) for i in eps]))
            while len(queue) >= max(1, prefetch_shards):
                commit(*queue.pop(0))
        while queue:
            commit(*queue.pop(0))
    finally:  # on an error, requests still in flight are left to the client (closed by the caller)
        if bar is not None:
            bar.close()
    report.seconds = time.perf_counter() - t0
    if all(store.is_done(k) for k, _ in shards):
        markers = store.done_markers()
        manifest = {"settings": asdict(settings), "shards": [m["file"] for m in markers],
                    "rows": sum(m["rows"] for m in markers), "episodes": sum(len(m["episodes"]) for m in markers),
                    "model_versions": sorted({v for m in markers for v in m["model_versions"]}),
                    "schema": [f"{f.name}: {f.type}" for f in SCHEMA]}
        _atomic_write_bytes(store.root / "manifest.json", json.dumps(manifest, indent=2).encode())
    return report


def prompt_variant(scorer_cfg: Any, worker_scorer: str) -> str:
    """The window scorer's prompt (``two_stage`` / ``single_stage``) from the ``scorer`` section; "" for other
    scorers, ``unknown`` when the workers run ``window`` but the ``scorer`` section describes another scorer."""
    if worker_scorer != "window":
        return ""
    if scorer_cfg is None or scorer_cfg.name != "window":
        return "unknown"
    from vlmrl.reward_workers.scorers.window import WindowScorer

    return str((scorer_cfg.params or {}).get("prompt", WindowScorer.Params.prompt))


def settings_from_config(label_cfg: Any, scorer_cfg: Any, worker_scorer: str, worker_item_kind: str) -> LabelSettings:
    """LabelSettings from the ``label`` section and what the workers report (scorer name, item kind)."""
    from omegaconf import OmegaConf

    kind = label_cfg.item_kind or worker_item_kind
    if label_cfg.item_kind and worker_item_kind and label_cfg.item_kind != worker_item_kind:
        raise LabellingError(f"label.item_kind={label_cfg.item_kind} but the workers' scorer {worker_scorer!r} "
                             f"takes {worker_item_kind} items")
    inp = OmegaConf.to_container(label_cfg.input, resolve=True) if OmegaConf.is_config(label_cfg.input) else dict(label_cfg.input)
    params = None
    if scorer_cfg is not None and scorer_cfg.name == worker_scorer:
        raw = scorer_cfg.params or {}
        params = OmegaConf.to_container(raw, resolve=True) if OmegaConf.is_config(raw) else dict(raw)
    return LabelSettings(
        dataset=str(inp.get("path", "")), item_kind=kind, window_size=int(label_cfg.window_size),
        w_vlm=float(label_cfg.w_vlm), w_env=float(label_cfg.w_env), success_reward=float(label_cfg.success_reward),
        vlm_reward_min=float(label_cfg.vlm_reward_min), vlm_reward_max=float(label_cfg.vlm_reward_max),
        terminal_on_success=bool(label_cfg.terminal_on_success), episodes_per_shard=int(label_cfg.episodes_per_shard),
        max_episodes=int(label_cfg.max_episodes), scorer=worker_scorer,
        prompt_variant=prompt_variant(scorer_cfg, worker_scorer), scorer_params=params, input=inp)
