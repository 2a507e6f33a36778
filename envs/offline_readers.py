"""Streaming readers of offline episode datasets: one interface over the project's own format and
the HDF5 layouts users already have (Minari, D4RL). Role in the reward path: ``vlmrl label`` and
``vlmrl build-offline-dataset`` read episodes through these and send their frames to the reward
workers; every reader yields :class:`vlmrl.envs.dataset.Episode` records (frames, states, actions,
env reward, success, task text), one at a time, so a large dataset is never loaded whole.

Readers (all :class:`EpisodeReader`: ``len(reader)``, ``reader.entry(i)`` (cheap metadata, no
arrays), ``reader.load(i)`` (one episode), ``iter(reader)`` (stream)):

* :class:`EpisodeDatasetReader` -- the project's format (``vlmrl.envs.dataset``: index.jsonl + npz).
* :class:`MinariHDF5Reader`     -- Minari's ``main_data.hdf5`` layout, one group per episode.
* :class:`D4RLHDF5Reader`       -- D4RL's flat layout, episodes split on ``terminals | timeouts``.

HDF5 schema (keys are paths inside the file; all configurable in :class:`HDF5Keys` / the config's
``hdf5`` section)::

    Minari layout (episode groups, T steps each; group order = sorted by the number in the name)
      /episode_<n>/observations          (T+1, S)        state observations  } or a group of keys:
      /episode_<n>/observations/<key>    (T+1, ...)      dict observations   } state_key / image_key
      /episode_<n>/actions               (T, A)
      /episode_<n>/rewards               (T,)            the env's reward (kept as ``rewards``)
      /episode_<n>/terminations          (T,) bool       success fallback when no success key
      /episode_<n>/truncations           (T,) bool       (read, not needed)
      /episode_<n>/infos/success         (T,) or (T+1,)  success per step (T: after each action)

    D4RL layout (flat arrays over all N steps of all episodes)
      /observations        (N, S)       state before each action
      /next_observations   (N, S)       optional; gives the final state of an episode
      /actions             (N, A)
      /rewards             (N,)
      /terminals           (N,) bool    an episode ends after a step with terminals | timeouts
      /timeouts            (N,) bool
      /infos/success       (N,) bool    optional success after each action; fallback: terminals
      /<image_key>         (N, H, W, 3) optional frames before each action (next_<image_key> for the last)

Mapping to :class:`Episode`: ``states`` = the state key (T+1 rows; D4RL: observations of the
episode + the last ``next_observations`` row, or the last observation repeated when absent);
``frames`` = the image key, uint8 ``(H, W, 3)`` (``frame_steps`` = the step of each frame; no
image key -> zero frames: the reader works, labelling refuses it); ``rewards`` = the reward key;
``success`` (T+1 states) = the success key (a T-long key is "after step t", state 0 gets False)
or else ``terminations``/``terminals``. Task text: the ``task_text`` argument (config
``task_text``) wins; else the episode group's attribute ``task`` (Minari), else the file's root
attribute ``task``; none of them -> a clear error. The episode's ``source`` label likewise comes
from the attribute ``source`` or the reader's ``source`` argument.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from vlmrl.envs.dataset import DatasetFormatError, Episode, load_episode, read_index
from vlmrl.envs.config import HDF5KeysConfig

READER_FORMATS = ("episodes", "minari_hdf5", "d4rl_hdf5")


class EpisodeReader(ABC):
    """A streaming source of offline episodes (see the module docstring)."""

    name: str = ""
    """Short name of the dataset (the folder or file stem); labelled rows carry it."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of episodes (cheap: no arrays are read)."""

    @abstractmethod
    def entry(self, i: int) -> Dict[str, Any]:
        """Metadata of episode ``i`` without its arrays: at least ``id``, ``length``, ``source``."""

    @abstractmethod
    def load(self, i: int) -> Episode:
        """Episode ``i`` with all its arrays."""

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.load(i)

    def close(self) -> None:
        """Release open files."""

    def __enter__(self) -> "EpisodeReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EpisodeDatasetReader(EpisodeReader):
    """The project's episode format (``vlmrl.envs.dataset``): the index is read once, episodes on demand."""

    def __init__(self, root: str | os.PathLike, task_text: Optional[str] = None) -> None:
        self.root = Path(root)
        self.name = self.root.name
        self._index = read_index(self.root)
        self._task_text = task_text

    def __len__(self) -> int:
        return len(self._index)

    def entry(self, i: int) -> Dict[str, Any]:
        return self._index[i]

    def load(self, i: int) -> Episode:
        ep = load_episode(self.root, self._index[i])
        if self._task_text:
            ep.task = self._task_text
        return ep


# Where the fields of an episode live in an HDF5 file (paths relative to an episode group for Minari,
# to the file root for D4RL): the config's ``hdf5`` section itself.
HDF5Keys = HDF5KeysConfig


def _open_h5(path: str | os.PathLike):
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py ships with mani-skill
        raise RuntimeError("reading HDF5 datasets needs h5py (pip install h5py)") from e
    p = Path(path)
    if p.is_dir():
        p = p / "data" / "main_data.hdf5" if (p / "data" / "main_data.hdf5").exists() else p / "main_data.hdf5"
    if not p.exists():
        raise DatasetFormatError(f"HDF5 dataset not found: {p}")
    return p, h5py.File(p, "r")


def _attr(obj: Any, name: str) -> Optional[str]:
    if not name or name not in obj.attrs:
        return None
    v = obj.attrs[name]
    return v.decode() if isinstance(v, bytes) else str(v)


def _success_states(raw: Optional[np.ndarray], T: int, where: str) -> np.ndarray:
    """A success array of T (after each action) or T+1 (per state) entries as (T+1,) bool."""
    if raw is None:
        return np.zeros(T + 1, bool)
    raw = np.asarray(raw).astype(bool).reshape(-1)
    if len(raw) == T:
        return np.concatenate([[False], raw])
    if len(raw) == T + 1:
        return raw
    raise DatasetFormatError(f"{where}: success has {len(raw)} entries, expected T={T} or T+1={T + 1}")


def _frames(raw: Optional[np.ndarray], where: str) -> tuple[np.ndarray, np.ndarray]:
    if raw is None:
        return np.zeros((0, 1, 1, 3), np.uint8), np.zeros(0, np.int32)
    arr = np.asarray(raw)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise DatasetFormatError(f"{where}: image observations must be uint8 (N, H, W, 3), got {arr.dtype} {arr.shape}")
    return arr, np.arange(len(arr), dtype=np.int32)


def _flat_states(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    return arr.reshape(len(arr), -1)


class MinariHDF5Reader(EpisodeReader):
    """Minari layout: one ``episode_<n>`` group per episode (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, keys: Optional[HDF5Keys] = None, task_text: Optional[str] = None,
                 source: str = "external", env_id: str = "") -> None:
        self.path, self._f = _open_h5(path)
        if self.path.name != "main_data.hdf5":
            self.name = self.path.stem
        else:  # <name>/data/main_data.hdf5 (Minari's folder) or <name>/main_data.hdf5
            self.name = self.path.parent.parent.name if self.path.parent.name == "data" else self.path.parent.name
        self.keys = keys or HDF5Keys()
        self._task_text, self._source = task_text, source
        self._env_id = env_id or _attr(self._f, "env_id") or ""
        groups = [k for k in self._f.keys() if re.fullmatch(r"episode_\d+", k)]
        if not groups:
            raise DatasetFormatError(f"{self.path}: no episode_<n> groups (is it a D4RL flat file? use format=d4rl_hdf5)")
        self._groups = sorted(groups, key=lambda k: int(k.split("_")[1]))

    def __len__(self) -> int:
        return len(self._groups)

    def _get(self, g: Any, key: Optional[str], required: bool) -> Optional[np.ndarray]:
        if not key or key not in g:
            if required:
                raise DatasetFormatError(f"{self.path}:{g.name}: missing key {key!r}")
            return None
        obj = g[key]
        if not hasattr(obj, "shape"):
            raise DatasetFormatError(f"{self.path}:{g.name}: {key!r} is a group of {sorted(obj.keys())}, not an array; "
                                     f"name one of them (e.g. state_key={key}/{next(iter(obj.keys()), '...')})")
        return obj[()]

    def _task(self, g: Any) -> str:
        task = self._task_text or _attr(g, self.keys.task_attr) or _attr(self._f, self.keys.task_attr)
        if not task:
            raise DatasetFormatError(
                f"{self.path}:{g.name}: no task text (no {self.keys.task_attr!r} attribute on the episode or the file); "
                f"give one with task_text=... (config: task_text)")
        return task

    def entry(self, i: int) -> Dict[str, Any]:
        g = self._f[self._groups[i]]
        return {"id": self._groups[i], "length": int(g[self.keys.action_key].shape[0]),
                "source": _attr(g, self.keys.source_attr) or self._source, "task": self._task(g)}

    def load(self, i: int) -> Episode:
        name = self._groups[i]
        g = self._f[name]
        where = f"{self.path}:{name}"
        actions = np.asarray(self._get(g, self.keys.action_key, True), np.float32)
        T = len(actions)
        actions = actions.reshape(T, -1)
        states = _flat_states(self._get(g, self.keys.state_key, True))
        if len(states) != T + 1:
            raise DatasetFormatError(f"{where}: {self.keys.state_key} has {len(states)} rows, expected T+1={T + 1}")
        rewards = np.asarray(self._get(g, self.keys.reward_key, True), np.float32).reshape(-1)
        success_raw = self._get(g, self.keys.success_key, False)
        if success_raw is None:
            success_raw = self._get(g, "terminations", False)
        frames, frame_steps = _frames(self._get(g, self.keys.image_key, False), where)
        if len(frames) not in (0, T + 1):
            raise DatasetFormatError(f"{where}: {self.keys.image_key} has {len(frames)} images, expected T+1={T + 1}")
        return Episode(task=self._task(g), env_id=self._env_id, frames=frames, frame_steps=frame_steps, states=states,
                       actions=actions, rewards=rewards, success=_success_states(success_raw, T, where),
                       source=_attr(g, self.keys.source_attr) or self._source, episode_id=name,
                       meta={"hdf5": str(self.path)}).validate()

    def close(self) -> None:
        self._f.close()


class D4RLHDF5Reader(EpisodeReader):
    """D4RL flat layout: episodes are runs of steps ending at ``terminals | timeouts`` (see the module docstring).

    Only the two boolean arrays are read up front; an episode's rows are sliced from the file on ``load``.
    """

    def __init__(self, path: str | os.PathLike, keys: Optional[HDF5Keys] = None, task_text: Optional[str] = None,
                 source: str = "external", env_id: str = "") -> None:
        self.path, self._f = _open_h5(path)
        self.name = self.path.stem
        self.keys = keys or HDF5Keys()
        self._task_text, self._source = task_text, source
        self._env_id = env_id or _attr(self._f, "env_id") or ""
        for k in ("terminals", self.keys.action_key, self.keys.state_key, self.keys.reward_key):
            if k not in self._f:
                raise DatasetFormatError(f"{self.path}: missing key {k!r} (D4RL layout)")
        ends = np.asarray(self._f["terminals"][()], bool)
        if "timeouts" in self._f:
            ends = ends | np.asarray(self._f["timeouts"][()], bool)
        n = len(ends)
        stops = list(np.flatnonzero(ends) + 1)
        if not stops or stops[-1] != n:
            stops.append(n)  # a trailing run without an end flag is a (truncated) episode too
        starts = [0] + stops[:-1]
        self._spans = [(int(a), int(b)) for a, b in zip(starts, stops) if b > a]
        task = self._task_text or _attr(self._f, self.keys.task_attr)
        if not task:
            raise DatasetFormatError(f"{self.path}: no task text (no {self.keys.task_attr!r} attribute on the file); "
                                     f"give one with task_text=... (config: task_text)")
        self._task = task

    def __len__(self) -> int:
        return len(self._spans)

    def entry(self, i: int) -> Dict[str, Any]:
        a, b = self._spans[i]
        return {"id": f"episode_{i}", "length": b - a, "source": _attr(self._f, self.keys.source_attr) or self._source,
                "task": self._task}

    def load(self, i: int) -> Episode:
        a, b = self._spans[i]
        f, k = self._f, self.keys
        T = b - a
        obs = _flat_states(f[k.state_key][a:b])
        nxt_key = f"next_{k.state_key}"
        last = _flat_states(f[nxt_key][b - 1:b]) if nxt_key in f else obs[-1:]
        states = np.concatenate([obs, last])
        actions = np.asarray(f[k.action_key][a:b], np.float32).reshape(T, -1)
        rewards = np.asarray(f[k.reward_key][a:b], np.float32).reshape(-1)
        success = f[k.success_key][a:b] if k.success_key in f else f["terminals"][a:b]
        frames = frame_steps = None
        if k.image_key and k.image_key in f:
            imgs = f[k.image_key][a:b]
            nxt_img = f"next_{k.image_key}"
            if nxt_img in f:
                imgs = np.concatenate([imgs, f[nxt_img][b - 1:b]])
            frames, frame_steps = _frames(imgs, f"{self.path}:{k.image_key}")
        else:
            frames, frame_steps = _frames(None, "")
        return Episode(task=self._task, env_id=self._env_id, frames=frames, frame_steps=frame_steps, states=states,
                       actions=actions, rewards=rewards, success=_success_states(success, T, f"{self.path}[{a}:{b}]"),
                       source=self.entry(i)["source"], episode_id=f"episode_{i}", meta={"hdf5": str(self.path)}).validate()

    def close(self) -> None:
        self._f.close()


def open_reader(path: str | os.PathLike, format: str = "episodes", task_text: Optional[str] = None,
                keys: Optional[HDF5Keys | Dict[str, Any]] = None, source: str = "external", env_id: str = "") -> EpisodeReader:
    """The reader for ``format`` (``episodes``, ``minari_hdf5``, ``d4rl_hdf5``) over ``path``."""
    if isinstance(keys, dict) or (keys is not None and not isinstance(keys, HDF5Keys)):
        keys = HDF5Keys(**dict(keys))
    if format == "episodes":
        return EpisodeDatasetReader(path, task_text=task_text)
    if format == "minari_hdf5":
        return MinariHDF5Reader(path, keys, task_text=task_text, source=source, env_id=env_id)
    if format == "d4rl_hdf5":
        return D4RLHDF5Reader(path, keys, task_text=task_text, source=source, env_id=env_id)
    raise ValueError(f"unknown dataset format {format!r}; choose one of {list(READER_FORMATS)}")


def write_minari_hdf5(path: str | os.PathLike, episodes: List[Episode], image_key: str = "observations/pixels",
                      state_key: str = "observations/state", task_in: str = "episode") -> Path:
    """Write episodes in the Minari layout (for tests and for exporting); frames must be at every state.

    ``task_in``: ``episode`` (attribute on each episode group), ``file`` (root attribute, first episode's
    task) or ``none`` (no task attribute: readers then need ``task_text``).
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if task_in == "file" and episodes:
            f.attrs["task"] = episodes[0].task
        for n, ep in enumerate(episodes):
            T = ep.num_steps
            if len(ep.frames) != T + 1:
                raise ValueError("write_minari_hdf5 needs a frame at every state (T+1 frames)")
            g = f.create_group(f"episode_{n}")
            g.create_dataset(state_key, data=ep.states)
            g.create_dataset(image_key, data=ep.frames, compression="gzip", compression_opts=1)
            g.create_dataset("actions", data=ep.actions)
            g.create_dataset("rewards", data=ep.rewards)
            g.create_dataset("terminations", data=ep.success[1:])
            g.create_dataset("truncations", data=np.zeros(T, bool))
            g.create_dataset("infos/success", data=ep.success[1:])
            g.attrs["source"] = ep.source
            if task_in == "episode":
                g.attrs["task"] = ep.task
    return path
