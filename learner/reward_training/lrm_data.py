"""LRM training targets, the held-out split, and streamed training batches from episode datasets.

Targets (per frame, from the episode's ground truth; the frame at step s of an episode of T steps):

* progress: in a successful episode ``min(s / s_success, 1)`` where ``s_success`` is the first
  step with success (this is normalised time t/T for episodes that end at success, and stays 1
  while the task stays done). In a failed episode ``failed_progress_scale * s / T`` (a fixed
  discount: time passed, but the task was never done, so the frame is at most half-way by default),
  unless ``near_miss_progress`` is set and the episode's meta says where a scripted controller began
  the task's motion (``motion_start_step``: the push / lift; written for scripted episodes by
  ``vlmrl.envs.recording``): then progress rises linearly to ``near_miss_progress`` at that step and
  stays there (the approach was real progress, the rest of the episode adds none), and is 0 after
  ``left_at_step`` (the arm left with the task undone). Set it to the share of a demo's time its
  approach takes (the recorder prints it) so a near miss's approach gets the labels of a demo's.
  Object-aware (``object_progress_weight`` w > 0, issue 23): ``(1 - w) * <the time rule above> + w *
  <object progress>`` where object progress = ``1 - d_s / d_0`` (object-to-goal distance from the recorded
  states, clipped to [0, 0.9]) and 1 at every frame whose state is a success; a frame after the first success
  whose object left the goal gets no time credit. Arm-only motions then earn nothing the object did not.
  Reach-aware (``reach_progress_weight`` r > 0): ``(1 - w - r) * <time rule> + w * <object progress> + r * <reach
  progress>`` where reach progress = ``1 - tcp-to-object distance / its start value`` (clipped to [0, 1]). With
  w + r = 1 no term depends on time: a pose gets the same target whichever episode it is in (a demo's approach
  and an arm-only hard negative agree), and reaching alone earns at most r.
* completion: ``success[s]``.
* contrastive: ordered pairs of two frames of one episode, shown in random order, label = "the
  second is later". Only pairs whose order means progress are used: in a successful episode the
  two frames must differ in progress target (so two frames after success, where the task just
  stays done, are skipped); in a failed episode the later frame's dense env reward (at that
  state) must exceed the earlier one's by at least ``failed_pair_min_gain`` times the episode's
  reward range (the later state really is closer to the goal).

Dataset inputs: the ``dataset_dirs`` list of ``lrm_train`` / ``eval_reward`` takes, per entry, a plain
path (a dataset in the project's format, ``vlmrl.envs.dataset``) or a mapping with the fields of
``system.config.DatasetInputConfig`` (``path``, ``format`` = ``episodes`` | ``minari_hdf5`` |
``d4rl_hdf5``, ``name``, ``task_text``, ``source``, ``hdf5: {state_key, image_key, ...}``); every
entry is read through ``vlmrl.envs.offline_readers`` (:func:`dataset_sources`, :func:`load_entry`),
so one run can mix formats.

Split: an episode is held out (``val``) when a hash of (split_seed, split key) falls below
``val_fraction``: stable across runs, commands and dataset order (lrm-train and eval-reward agree),
and a source's split does not depend on the other sources in the list. The split key is the
episode id qualified by its source's name, ``<name>/<id>`` (HDF5 ids like ``episode_0`` repeat
across files); a project-format dataset given without a ``name`` keeps the bare id, so the split of
existing runs is unchanged (give such inputs a ``name`` when their ids repeat across datasets).

Streaming: training episodes are read in shuffled chunks of ``buffer_episodes`` (a shuffle
buffer); a dataset that fits in one chunk is loaded once and kept in memory across epochs.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from vlmrl.envs.dataset import Episode, load_episode
from vlmrl.envs.offline_readers import READER_FORMATS, EpisodeReader
from vlmrl.reward_workers.models.compact_lrm import stack_frames

SPLITS = ("train", "val", "all")


@dataclass
class TargetRule:
    """How ground truth becomes LRM targets (see the module docstring)."""

    failed_progress_scale: float = 0.5
    failed_pair_min_gain: float = 0.2
    near_miss_progress: Optional[float] = None
    object_progress_weight: float = 0.0
    """Weight of the object-aware term (module doc); 0 = the time rule alone."""
    reach_progress_weight: float = 0.0
    """Weight of the tcp-reaches-object term (module doc); object_progress_weight + it <= 1."""

    def __post_init__(self) -> None:
        if self.near_miss_progress is not None and not 0.0 <= self.near_miss_progress <= 1.0:
            raise ValueError(f"near_miss_progress must be in [0, 1] or null, got {self.near_miss_progress}")
        if not 0.0 <= self.object_progress_weight <= 1.0:
            raise ValueError(f"object_progress_weight must be in [0, 1], got {self.object_progress_weight}")
        if not 0.0 <= self.reach_progress_weight <= 1.0 - self.object_progress_weight + 1e-9:
            raise ValueError(f"reach_progress_weight must be in [0, 1 - object_progress_weight] = "
                             f"[0, {1.0 - self.object_progress_weight:g}], got {self.reach_progress_weight}")

    @classmethod
    def from_config(cls, cfg: Any) -> "TargetRule":
        """The rule of an ``lrm_train`` / ``eval_reward`` config section (fields of the same names)."""
        return cls(float(cfg.failed_progress_scale), float(getattr(cfg, "failed_pair_min_gain", 0.2)),
                   getattr(cfg, "near_miss_progress", None), float(getattr(cfg, "object_progress_weight", 0.0)),
                   float(getattr(cfg, "reach_progress_weight", 0.0)))


def first_success_step(ep: Episode) -> int | None:
    idx = np.flatnonzero(ep.success)
    return int(idx[0]) if len(idx) else None


def progress_targets(ep: Episode, rule: TargetRule = TargetRule()) -> np.ndarray:
    time_rule = _time_progress_targets(ep, rule)
    w, r = rule.object_progress_weight, rule.reach_progress_weight
    obj = object_progress(ep) if w > 0 or r > 0 else None
    reach = reach_progress(ep) if r > 0 else np.zeros_like(time_rule)
    if obj is None or reach is None:
        return time_rule
    done = ep.success[ep.frame_steps]
    after = ep.frame_steps > (first_success_step(ep) if ep.succeeded else ep.num_steps)
    time_rule = np.where(after & ~done, 0.0, time_rule)  # the object left the goal: no time credit any more
    return np.where(done, 1.0, (1 - w - r) * time_rule + w * obj + r * reach).astype(np.float32)


def object_progress(ep: Episode) -> Optional[np.ndarray]:
    """Per frame, how far the object got towards the goal: ``1 - distance / distance at the start`` in [0, 0.9]
    (1 is kept for success), from the episode's recorded states; None for a task without a known state layout."""
    from vlmrl.envs.behaviours import object_goal_distance

    return _closed_share(ep, object_goal_distance(ep.env_id, ep.states), 0.9)


def reach_progress(ep: Episode) -> Optional[np.ndarray]:
    """Per frame, how far the tcp got towards the object: ``1 - distance / distance at the start`` in [0, 1], from
    the episode's recorded states; None for a task without a known state layout."""
    from vlmrl.envs.behaviours import tcp_object_distance

    return _closed_share(ep, tcp_object_distance(ep.env_id, ep.states), 1.0)


def _closed_share(ep: Episode, d: Optional[np.ndarray], upper: float) -> Optional[np.ndarray]:
    """``1 - d / d[0]`` at the episode's frames, clipped to [0, upper]; None without distances."""
    if d is None or len(d) == 0:
        return None
    return np.clip(1.0 - d[ep.frame_steps] / max(float(d[0]), 1e-6), 0.0, upper)


def _time_progress_targets(ep: Episode, rule: TargetRule) -> np.ndarray:
    steps = ep.frame_steps.astype(np.float64)
    s_succ = first_success_step(ep)
    if s_succ is not None:
        return np.clip(steps / max(s_succ, 1), 0.0, 1.0).astype(np.float32)
    start = ep.meta.get("motion_start_step")
    if rule.near_miss_progress is not None and start is not None:
        p = rule.near_miss_progress * np.minimum(steps / max(int(start), 1), 1.0)
        left = ep.meta.get("left_at_step")
        if left is not None:
            p[steps > int(left)] = 0.0
        return p.astype(np.float32)
    return (rule.failed_progress_scale * steps / max(ep.num_steps, 1)).astype(np.float32)


def completion_targets(ep: Episode) -> np.ndarray:
    return ep.success[ep.frame_steps].astype(np.float32)


def state_values(ep: Episode) -> np.ndarray:
    """Dense env reward at the state of each frame (reward of the step that led there; step 0 -> first reward)."""
    if ep.num_steps == 0:
        return np.zeros(len(ep.frame_steps), np.float32)
    return ep.rewards[np.maximum(ep.frame_steps - 1, 0)].astype(np.float32)


def pair_labels(ep: Episode, a: np.ndarray, b: np.ndarray, rule: TargetRule = TargetRule(),
                progress: np.ndarray | None = None) -> Tuple[np.ndarray, np.ndarray]:
    """(label: frame b is later, valid: the order of a and b means progress) for frame index arrays a, b."""
    steps = ep.frame_steps
    label = steps[b] > steps[a]
    if ep.succeeded:
        p = progress_targets(ep, rule) if progress is None else progress
        valid = p[a] != p[b]
    else:
        v = state_values(ep)
        span = float(v.max() - v.min()) if len(v) else 0.0
        later_gain = np.where(label, v[b] - v[a], v[a] - v[b])
        valid = (steps[a] != steps[b]) & (span > 0) & (later_gain >= rule.failed_pair_min_gain * span)
    return label, valid


@dataclass(frozen=True)
class DatasetSource:
    """One entry of a dataset list, resolved (hashable: entries of a split name their source by it)."""

    path: str
    format: str = "episodes"
    name: str = ""
    """Label of the source (explicit ``name``, else the folder / file name)."""
    task_text: Optional[str] = None
    source: str = "external"
    hdf5: Tuple[Tuple[str, Any], ...] = ()
    qualified: bool = True
    """Split keys are ``<name>/<id>`` (False: the bare id, for project-format inputs without a ``name``)."""
    repeat: int = 1
    """Times each training episode of this source is used per epoch (:func:`repeat_entries`)."""

    def split_key(self, entry: dict) -> str:
        return f"{self.name}/{entry['id']}" if self.qualified else str(entry["id"])

    def open(self) -> EpisodeReader:
        from vlmrl.envs.offline_mix import open_input

        return open_input(self)


def dataset_sources(items: Sequence[Any]) -> List[DatasetSource]:
    """The dataset list of a config (plain paths and/or ``DatasetInputConfig``-like mappings) as sources.

    Raises ValueError for an empty list, an unknown format or key, or a mapping without a path."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException as OmegaConfBaseError

    from vlmrl.envs.config import DatasetInputConfig

    if items is None or len(items) == 0:
        raise ValueError("no dataset_dirs given: list at least one dataset (a folder, or {path: ..., format: ...})")
    out: List[DatasetSource] = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            out.append(DatasetSource(path=str(item), name=Path(item).name, qualified=False))
            continue
        if isinstance(item, DatasetInputConfig):
            item = OmegaConf.structured(item)
        elif not isinstance(item, (dict, DictConfig)):
            raise ValueError(f"dataset entry {item!r}: expected a path or a mapping {{path: ..., format: ...}}")
        try:
            inp = OmegaConf.merge(OmegaConf.structured(DatasetInputConfig), item)
        except OmegaConfBaseError as e:
            raise ValueError(f"dataset entry {OmegaConf.to_container(OmegaConf.create(item)) if isinstance(item, dict) else item}: {e}") from e
        if inp.format not in READER_FORMATS:
            raise ValueError(f"dataset {inp.path!r}: format {inp.format!r} cannot be read here; "
                             f"choose one of {list(READER_FORMATS)}")
        if not inp.path:
            raise ValueError(f"a dataset entry of format {inp.format!r} needs a path")
        if inp.counts or inp.max_episodes:
            raise ValueError(f"dataset {inp.path!r}: counts / max_episodes are build-offline-dataset settings")
        if int(inp.repeat) < 1:
            raise ValueError(f"dataset {inp.path!r}: repeat must be >= 1, got {inp.repeat}")
        name = inp.name
        if not name:
            p = Path(inp.path)
            name = p.stem if p.suffix in (".hdf5", ".h5") else p.name
            if p.name == "main_data.hdf5":  # <name>/data/main_data.hdf5 (Minari's folder)
                name = p.parent.parent.name if p.parent.name == "data" else p.parent.name
        hdf5 = tuple(sorted(OmegaConf.to_container(inp.hdf5, resolve=True).items()))
        out.append(DatasetSource(path=str(inp.path), format=inp.format, name=name, task_text=inp.task_text or None,
                                 source=inp.source, hdf5=hdf5, repeat=int(inp.repeat),
                                 qualified=not (inp.format == "episodes" and not inp.name)))
    return _unique_names(out)


def _unique_names(sources: List[DatasetSource]) -> List[DatasetSource]:
    """Sources whose label is the same folder / file name (``a/policy_negatives``, ``b/policy_negatives``) get the
    parent folders that tell them apart, so per-source counts and logs name each; explicit ``name`` s stay."""
    def label(s: DatasetSource, depth: int) -> str:
        parts = Path(s.path).parts
        return "/".join(parts[-depth:]) if depth <= len(parts) else s.path

    out = list(sources)
    for depth in range(2, 8):
        counts = Counter(s.name for s in out)
        clash = [i for i, s in enumerate(out) if counts[s.name] > 1 and s.name == label(s, depth - 1)]
        if not clash:
            break
        for i in clash:
            out[i] = replace(out[i], name=label(out[i], depth))
    return out


def sources_label(sources: Sequence[DatasetSource]) -> str:
    return ",".join(s.name if s.format == "episodes" else f"{s.name} ({s.format})" for s in sources)


_READERS: Dict[Tuple[DatasetSource, int], EpisodeReader] = {}


def _reader(src: DatasetSource) -> EpisodeReader:
    """An open reader of ``src``, reused while its file is unchanged (HDF5 files stay open)."""
    p = Path(src.path)
    stamp = p / "index.jsonl" if src.format == "episodes" and p.is_dir() else p
    key = (src, stamp.stat().st_mtime_ns if stamp.exists() else 0)
    if key not in _READERS:
        for k in [k for k in _READERS if k[0] == src]:
            _READERS.pop(k).close()
        _READERS[key] = src.open()
    return _READERS[key]


def load_entry(src: DatasetSource, entry: dict) -> Episode:
    """The episode of one split entry (``entry['_i']`` = its index in the source's reader)."""
    if src.format == "episodes":
        ep = load_episode(src.path, entry)
        if src.task_text:
            ep.task = src.task_text
        return ep
    return _reader(src).load(int(entry["_i"]))


def dataset_config_problem(items: Sequence[Any], key: str) -> Optional[str]:
    """What the commands print for a bad ``<key>`` dataset list: empty, or an entry that does not open."""
    if not items:
        return f"no datasets: set {key}=[dir1,dir2]"
    return check_datasets(list(items))


def check_datasets(items: Sequence[Any]) -> Optional[str]:
    """None when every dataset entry resolves and opens, else a message naming the bad ones (for the commands)."""
    from vlmrl.envs.dataset import DatasetFormatError

    try:
        sources = dataset_sources(items)
    except ValueError as e:
        return str(e)
    bad = []
    for src in sources:
        try:
            reader = _reader(src)
            if len(reader):
                reader.entry(0)  # e.g. an HDF5 file without task text fails here
        except (DatasetFormatError, ValueError, OSError) as e:
            bad.append(f"{src.path} ({src.format}): {e}")
    return ("cannot read dataset(s): " + "; ".join(bad)) if bad else None


def is_val_episode(entry: dict, val_fraction: float, split_seed: int = 0,
                   source: Optional[DatasetSource] = None) -> bool:
    if source is None or not source.qualified:  # the original hash of bare ids (existing splits unchanged)
        return zlib.crc32(f"{split_seed}:{entry['id']}".encode()) / 2 ** 32 < val_fraction
    # crc32 is affine in its input: same-length names would give correlated splits, so a real hash here
    digest = hashlib.blake2b(f"{split_seed}:{source.split_key(entry)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64 < val_fraction


def split_entries(datasets: Sequence[Any], split: str, val_fraction: float,
                  split_seed: int = 0) -> List[Tuple[DatasetSource, dict]]:
    """(source, entry) of every episode in ``split`` across datasets (no arrays loaded).

    ``datasets``: plain paths and/or dataset-input mappings (see the module docstring), or sources."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    sources = [d if isinstance(d, DatasetSource) else dataset_sources([d])[0] for d in (datasets or [])]
    if not sources:
        raise ValueError("no dataset_dirs given: list at least one dataset (a folder, or {path: ..., format: ...})")
    out = []
    for src in sources:
        reader = _reader(src)
        for i in range(len(reader)):
            entry = dict(reader.entry(i), _i=i)
            if split == "all" or (split == "val") == is_val_episode(entry, val_fraction, split_seed, src):
                out.append((src, entry))
    return out


def repeat_entries(entries: List[Tuple[DatasetSource, dict]]) -> List[Tuple[DatasetSource, dict]]:
    """Training entries with each one listed ``source.repeat`` times (oversampling per source)."""
    return [x for x in entries for _ in range(x[0].repeat)]


def iter_split_episodes(datasets: Sequence[Any], split: str, val_fraction: float, split_seed: int = 0,
                        max_episodes: int = 0) -> Iterator[Episode]:
    """Stream the episodes of one split, one at a time."""
    entries = split_entries(datasets, split, val_fraction, split_seed)
    if max_episodes > 0:
        entries = entries[:max_episodes]
    for src, entry in entries:
        yield load_entry(src, entry)


@dataclass
class PreparedEpisode:
    """One episode's frames resized for training, with its targets."""

    episode: Episode
    frames: torch.Tensor  # uint8 (F, S, S, 3)
    progress: np.ndarray
    completion: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.frames)


def prepare_episode(ep: Episode, image_size: int, rule: TargetRule) -> PreparedEpisode:
    frames = stack_frames(list(ep.frames), image_size)
    light = Episode(task=ep.task, env_id=ep.env_id, frames=ep.frames[:0], frame_steps=ep.frame_steps,
                    states=ep.states[:0], actions=ep.actions, rewards=ep.rewards, success=ep.success,
                    source=ep.source, seed=ep.seed, episode_id=ep.episode_id)  # full-size frames dropped
    return PreparedEpisode(light, frames, progress_targets(ep, rule), completion_targets(ep))


@dataclass
class TrainBatch:
    """A batch of frame pairs (a, b) from the same episodes, with targets for both and the pair label."""

    tasks: List[str]
    frames_a: torch.Tensor  # uint8 (B, S, S, 3)
    frames_b: torch.Tensor
    progress_a: torch.Tensor
    progress_b: torch.Tensor
    completion_a: torch.Tensor
    completion_b: torch.Tensor
    b_later: torch.Tensor
    pair_valid: torch.Tensor


class ShuffleBufferBatches:
    """Training batches streamed from episode datasets through a shuffle buffer of whole episodes."""

    def __init__(self, entries: List[Tuple[DatasetSource, dict]], image_size: int, batch_size: int, rule: TargetRule,
                 buffer_episodes: int = 512, seed: int = 0) -> None:
        if not entries:
            raise ValueError("no training episodes (check dataset_dirs and val_fraction)")
        self.entries, self.image_size, self.batch_size, self.rule = entries, image_size, batch_size, rule
        self.buffer_episodes = max(1, buffer_episodes)
        self.rng = np.random.default_rng(seed)
        self._resident: List[PreparedEpisode] | None = None  # whole dataset, if it fits one buffer

    def _chunks(self) -> Iterator[List[PreparedEpisode]]:
        if self._resident is not None:
            yield self._resident
            return
        order = self.rng.permutation(len(self.entries))
        for start in range(0, len(order), self.buffer_episodes):
            chunk = [prepare_episode(load_entry(d, e), self.image_size, self.rule)
                     for d, e in (self.entries[i] for i in order[start:start + self.buffer_episodes])]
            if len(self.entries) <= self.buffer_episodes:
                self._resident = chunk
            yield chunk

    def epoch(self) -> Iterator[TrainBatch]:
        """One pass: every frame of every training episode is the first frame of a pair once."""
        for chunk in self._chunks():
            ep_idx = np.concatenate([np.full(p.num_frames, i) for i, p in enumerate(chunk)])
            fr_idx = np.concatenate([np.arange(p.num_frames) for p in chunk])
            perm = self.rng.permutation(len(ep_idx))
            for s in range(0, len(perm), self.batch_size):
                sel = perm[s:s + self.batch_size]
                if len(sel) < 2:
                    continue
                yield self._batch(chunk, ep_idx[sel], fr_idx[sel])

    def _batch(self, chunk: List[PreparedEpisode], eps: np.ndarray, a: np.ndarray) -> TrainBatch:
        b = np.empty_like(a)
        label = np.zeros(len(a), bool)
        valid = np.zeros(len(a), bool)
        for k, (e, i) in enumerate(zip(eps, a)):
            n = chunk[e].num_frames
            j = (i + self.rng.integers(1, n)) % n if n > 1 else i  # another frame of the same episode
            b[k] = j
            lab, ok = pair_labels(chunk[e].episode, np.array([i]), np.array([j]), self.rule, chunk[e].progress)
            label[k], valid[k] = lab[0], ok[0]
        f = torch.float32
        return TrainBatch(
            tasks=[chunk[e].episode.task for e in eps],
            frames_a=torch.stack([chunk[e].frames[i] for e, i in zip(eps, a)]),
            frames_b=torch.stack([chunk[e].frames[j] for e, j in zip(eps, b)]),
            progress_a=torch.tensor([chunk[e].progress[i] for e, i in zip(eps, a)], dtype=f),
            progress_b=torch.tensor([chunk[e].progress[j] for e, j in zip(eps, b)], dtype=f),
            completion_a=torch.tensor([chunk[e].completion[i] for e, i in zip(eps, a)], dtype=f),
            completion_b=torch.tensor([chunk[e].completion[j] for e, j in zip(eps, b)], dtype=f),
            b_later=torch.tensor(label, dtype=f), pair_valid=torch.tensor(valid, dtype=f))


def dataset_label(datasets: Sequence[Any]) -> str:
    return sources_label(dataset_sources(datasets))
