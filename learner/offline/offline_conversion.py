"""Offline data -> the column-format Parquet that RLlib's offline IQL reads (``vlmrl offline``).

Role in the reward path: the last step before the learner. It takes either a **labelled** dataset
(``vlmrl label`` output: Parquet shards, one row per step, schema in :mod:`vlmrl.learner.labels.labelling`) or a
plain **episode** dataset (:mod:`vlmrl.envs.dataset`, no VLM labels) and writes one transition per row
in the column schema RLlib's ``OfflinePreLearner._map_to_episodes`` reads (``input_read_episodes=False``):

    eps_id       string          episode id (``<dataset>/<episode_id>``, "_" replaced by "-")
    obs          list<float32>   state at t (the task-text embedding is appended later, by a ConnectorV2)
    new_obs      list<float32>   state at t+1
    actions      list<float32>   action at t, clipped to [-action_clip, action_clip]
    rewards      float32         the reward chosen by ``offline.reward`` (see :data:`REWARDS`)
    terminateds  bool            no bootstrapping past this step (success at t+1 when ``terminal_on_success``)
    truncateds   bool            last recorded step of an episode that did not terminate
    infos        struct<task_text: string>  the episode's task text (read by the embedding connector)

Why rows and not recorded RLlib episodes: IQL only needs (s, a, r, s', done) tuples; the row format
maps one row to one 2-step episode without a replay buffer or msgpack, and shuffles per transition.
Actions are clipped just inside the bounds because IQL's policy is a tanh-squashed Gaussian whose
log-likelihood is infinite at exactly +-1.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REWARDS = ("env_sparse", "env_dense", "vlm", "vlm+sparse", "vlm_progress+sparse", "labelled")
"""``env_sparse``: success_reward when state t+1 is a success (else 0); ``env_dense``: the dataset's own
(dense) env reward; ``vlm``: the normalised scorer reward ``r_vlm`` only; ``vlm+sparse``:
``vlm_weight * r_vlm + sparse_weight * sparse``; ``vlm_progress+sparse``: ``r_vlm`` used as a potential, as the
online path's ``reward.potential_components`` do: ``vlm_weight * (r_vlm[t] - r_vlm[t-1]) + sparse_weight * sparse``
with ``r_vlm[-1] = 0`` (the first state has no label), so an episode's VLM return is its last progress whatever
its length; ``labelled``: the ``reward`` column exactly as ``vlmrl label`` combined it. The VLM choices need a
labelled dataset.

Why ``vlm_progress+sparse``: ``vlm+sparse`` pays ~``r_vlm`` per step, so near the goal a step that does NOT
enter the (terminal) success state earns ~``r_vlm / (1 - gamma)`` over the horizon against
``r_vlm + success_reward`` for succeeding: the positive dense reward pays the policy to hover."""
VLM_REWARDS = ("vlm", "vlm+sparse", "vlm_progress+sparse", "labelled")

RLLIB_SCHEMA = pa.schema([
    ("eps_id", pa.string()), ("obs", pa.list_(pa.float32())), ("new_obs", pa.list_(pa.float32())),
    ("actions", pa.list_(pa.float32())), ("rewards", pa.float32()), ("terminateds", pa.bool_()),
    ("truncateds", pa.bool_()), ("infos", pa.struct([("task_text", pa.string())])),
])
"""Columns of the converted transitions (see module doc)."""

DATA_FILE = "transitions.parquet"
SUMMARY_FILE = "summary.json"


class ConversionError(ValueError):
    """The offline dataset cannot be converted; the message says what was wrong."""


@dataclass
class RewardSpec:
    """Which reward the learner trains on and how the terminal flags are set."""

    reward: str = "vlm+sparse"
    vlm_weight: float = 1.0
    sparse_weight: float = 1.0
    success_reward: float = 1.0
    terminal_on_success: bool = True
    action_clip: float = 0.999

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise ConversionError(f"offline.reward must be one of {REWARDS}, got {self.reward!r}")
        if not 0.0 < self.action_clip <= 1.0:
            raise ConversionError(f"offline.action_clip must be in (0, 1], got {self.action_clip}")


@dataclass
class ConversionSummary:
    """What was written: sizes, spaces and per-task-text counts (saved as summary.json)."""

    path: str
    source_format: str
    reward: str
    num_rows: int
    num_episodes: int
    state_dim: int
    action_dim: int
    task_texts: Dict[str, int] = field(default_factory=dict)
    """Rows per task text."""
    env_ids: List[str] = field(default_factory=list)
    reward_mean: float = 0.0
    terminal_fraction: float = 0.0

    @property
    def data_file(self) -> str:
        return str(Path(self.path) / DATA_FILE)


def detect_format(path: str | os.PathLike) -> str:
    """``labelled`` (has ``shards/``) or ``episodes`` (has ``index.jsonl``); a clear error otherwise."""
    p = Path(path)
    if (p / "shards").is_dir():
        return "labelled"
    if (p / "index.jsonl").exists():
        return "episodes"
    raise ConversionError(f"{path} is neither a labelled dataset (no shards/ folder, see `vlmrl label`) nor an "
                          f"episode dataset (no index.jsonl)")


def _progress_differences(progress: np.ndarray, is_first: np.ndarray, step: Any) -> np.ndarray:
    """``progress[t] - progress[t-1]`` within each episode (0 before an episode's first row); rows must be in
    episode and step order, as ``vlmrl label`` writes them."""
    steps = np.asarray(step.to_numpy(), dtype=np.int64)
    if len(steps) and not (is_first[0] and np.all(is_first[1:] | (steps[1:] == steps[:-1] + 1))):
        raise ConversionError("labelled rows are not in episode/step order; cannot form progress differences")
    prev = np.concatenate([[0.0], progress[:-1]]).astype(np.float32)
    prev[is_first] = 0.0
    return progress - prev


def _labelled_columns(path: Path, spec: RewardSpec) -> Dict[str, np.ndarray | list]:
    from vlmrl.learner.labels.labelling import LabellingError, read_labelled

    try:
        t = read_labelled(path)
    except LabellingError as e:
        raise ConversionError(str(e)) from e
    col = {name: t.column(name) for name in t.column_names}
    success_r = spec.success_reward * np.asarray(col["success"].to_numpy(zero_copy_only=False), dtype=np.float32)
    r_vlm = np.asarray(col["r_vlm"].to_numpy(), dtype=np.float32)
    is_first = np.asarray(col["is_first"].to_numpy(zero_copy_only=False), dtype=bool)
    rewards = {
        "env_sparse": success_r,
        "env_dense": np.asarray(col["env_reward"].to_numpy(), dtype=np.float32),
        "vlm": r_vlm,
        "vlm+sparse": spec.vlm_weight * r_vlm + spec.sparse_weight * success_r,
        "vlm_progress+sparse": spec.vlm_weight * _progress_differences(r_vlm, is_first, col["step"])
        + spec.sparse_weight * success_r,
        "labelled": np.asarray(col["reward"].to_numpy(), dtype=np.float32),
    }[spec.reward]
    success = np.asarray(col["success"].to_numpy(zero_copy_only=False), dtype=bool)
    is_last = np.asarray(col["is_last"].to_numpy(zero_copy_only=False), dtype=bool)
    terminal = success if spec.terminal_on_success else np.zeros_like(success)
    ds, ep = col["dataset"].to_pylist(), col["episode_id"].to_pylist()
    return {
        "eps_id": [_eps_id(d, e) for d, e in zip(ds, ep)],
        "obs": _stack(col["state"].to_pylist(), "state"),
        "new_obs": _stack(col["next_state"].to_pylist(), "next_state"),
        "actions": _stack(col["action"].to_pylist(), "action"),
        "rewards": rewards.astype(np.float32),
        "terminateds": terminal,
        "truncateds": is_last & ~terminal,
        "task": col["task"].to_pylist(),
        "env_id": col["env_id"].to_pylist(),
    }


def _episode_columns(path: Path, spec: RewardSpec, max_episodes: int) -> Dict[str, np.ndarray | list]:
    from vlmrl.envs.dataset import iter_episodes

    if spec.reward in VLM_REWARDS:
        raise ConversionError(f"offline.reward={spec.reward} needs VLM labels, but {path} is an unlabelled episode "
                              f"dataset; label it with `vlmrl label` or use reward=env_sparse / env_dense")
    parts: Dict[str, list] = {k: [] for k in ("eps_id", "obs", "new_obs", "actions", "rewards", "terminateds",
                                               "truncateds", "task", "env_id")}
    name = path.name
    for i, ep in enumerate(iter_episodes(path)):
        if max_episodes and i >= max_episodes:
            break
        T = ep.num_steps
        if T == 0:
            continue
        succ = ep.success[1:].astype(bool)
        rew = spec.success_reward * succ.astype(np.float32) if spec.reward == "env_sparse" else ep.rewards
        term = succ if spec.terminal_on_success else np.zeros(T, bool)
        last = np.zeros(T, bool)
        last[-1] = True
        parts["eps_id"] += [_eps_id(name, ep.episode_id)] * T
        parts["obs"].append(ep.states[:-1])
        parts["new_obs"].append(ep.states[1:])
        parts["actions"].append(ep.actions.reshape(T, -1))
        parts["rewards"].append(np.asarray(rew, np.float32))
        parts["terminateds"].append(term)
        parts["truncateds"].append(last & ~term)
        parts["task"] += [ep.task] * T
        parts["env_id"] += [ep.env_id] * T
    if not parts["obs"]:
        raise ConversionError(f"{path} holds no episodes with steps")
    out: Dict[str, np.ndarray | list] = {k: v for k, v in parts.items() if k in ("eps_id", "task", "env_id")}
    for k in ("obs", "new_obs", "actions", "rewards", "terminateds", "truncateds"):
        out[k] = np.concatenate(parts[k])
    return out


def _eps_id(dataset: str, episode_id: str) -> str:
    """``<dataset>/<episode id>`` without "_" (RLlib's learner connectors suffix ids with ``_<row>``)."""
    return f"{dataset}/{episode_id}".replace("_", "-")


def _stack(rows: list, name: str) -> np.ndarray:
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise ConversionError(f"column {name!r} has rows of different lengths {sorted(lengths)[:5]}")
    return np.asarray(rows, dtype=np.float32)


def convert_offline_dataset(source: str | os.PathLike, out_dir: str | os.PathLike, spec: RewardSpec,
                            source_format: str = "auto", max_episodes: int = 0) -> ConversionSummary:
    """Convert ``source`` (labelled or episode dataset) into ``<out_dir>/transitions.parquet`` + summary.json."""
    src = Path(source)
    if not src.exists():
        raise ConversionError(f"offline dataset {source} does not exist")
    fmt = detect_format(src) if source_format == "auto" else source_format
    if fmt == "labelled":
        cols = _labelled_columns(src, spec)
        if max_episodes:
            keep_ids = list(dict.fromkeys(cols["eps_id"]))[:max_episodes]
            mask = np.isin(np.asarray(cols["eps_id"]), keep_ids)
            cols = {k: (v[mask] if isinstance(v, np.ndarray) else [x for x, m in zip(v, mask) if m])
                    for k, v in cols.items()}
    elif fmt == "episodes":
        cols = _episode_columns(src, spec, max_episodes)
    else:
        raise ConversionError(f"offline.dataset_format must be auto, labelled or episodes, got {fmt!r}")
    acts = np.clip(cols["actions"], -spec.action_clip, spec.action_clip).astype(np.float32)
    n = len(cols["rewards"])
    if not np.all(np.isfinite(cols["rewards"])):
        raise ConversionError(f"{source}: the {spec.reward!r} reward has non-finite values")
    table = pa.table({
        "eps_id": pa.array(cols["eps_id"], pa.string()),
        "obs": pa.array(list(cols["obs"]), pa.list_(pa.float32())),
        "new_obs": pa.array(list(cols["new_obs"]), pa.list_(pa.float32())),
        "actions": pa.array(list(acts), pa.list_(pa.float32())),
        "rewards": pa.array(cols["rewards"], pa.float32()),
        "terminateds": pa.array(cols["terminateds"], pa.bool_()),
        "truncateds": pa.array(cols["truncateds"], pa.bool_()),
        "infos": pa.array([{"task_text": t} for t in cols["task"]], RLLIB_SCHEMA.field("infos").type),
    }, schema=RLLIB_SCHEMA)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / DATA_FILE)
    texts: Dict[str, int] = {}
    for t in cols["task"]:
        texts[t] = texts.get(t, 0) + 1
    summary = ConversionSummary(
        path=str(out), source_format=fmt, reward=spec.reward, num_rows=n,
        num_episodes=len(set(cols["eps_id"])), state_dim=int(cols["obs"].shape[1]),
        action_dim=int(acts.shape[1]), task_texts=texts, env_ids=sorted(set(cols["env_id"])),
        reward_mean=float(np.mean(cols["rewards"])), terminal_fraction=float(np.mean(cols["terminateds"])))
    (out / SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=1))
    return summary
