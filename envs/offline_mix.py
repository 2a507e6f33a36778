"""Mixed-quality offline datasets: merge several recorded sources (tasks, task texts; demonstrations,
noisy demonstrations, random/failed episodes) into one episode dataset with a manifest.

Role in the reward path: the offline mode needs data where reward labelling matters -- a mix of good
and bad behaviour across tasks -- so that the VLM labels (``vlmrl label``) carry information the
demonstrations alone would not. Inputs are ``record-demos`` output folders (one per task), HDF5
datasets (``vlmrl.envs.offline_readers``) or generated SYNTHETIC episodes (tests, CPU demos).

Selection per input: ``counts`` caps the episodes taken per source label (``{demo: 20, random: 10}``;
labels not listed are skipped; empty = all labels), ``max_episodes`` caps the input. Only index
entries are read to select; selected episodes are streamed one at a time into the output
(``vlmrl.envs.dataset`` format; ids ``<input name>-<original id>``, the origin kept in ``meta``).
``manifest.json`` next to the index records, per input and in total, the episodes taken per source
label and per task text, the success rate per source, and what was requested.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from vlmrl.envs.dataset import Episode, EpisodeWriter
from vlmrl.envs.offline_readers import EpisodeReader, open_reader

MIX_FORMATS = ("episodes", "minari_hdf5", "d4rl_hdf5", "synthetic")


class SyntheticEpisodeReader(EpisodeReader):
    """Generates SYNTHETIC episodes on demand (``vlmrl.envs.synthetic_episodes``; sources and tasks cycled)."""

    def __init__(self, num_episodes: int, seed: int = 0, num_steps: int = 24, image_size: int = 48,
                 task_text: Optional[str] = None) -> None:
        from vlmrl.envs.synthetic_episodes import SOURCES

        if num_episodes < 1:
            raise ValueError(f"a synthetic input needs max_episodes >= 1 (how many to generate), got {num_episodes}")
        self.name, self._n, self._seed = f"synthetic{seed}", num_episodes, seed
        self._kw = dict(num_steps=num_steps, image_size=image_size)
        self._sources, self._task_text = SOURCES, task_text

    def __len__(self) -> int:
        return self._n

    def entry(self, i: int) -> Dict[str, Any]:
        return {"id": f"{i:06d}", "length": self._kw["num_steps"], "source": self._sources[i % len(self._sources)]}

    def load(self, i: int) -> Episode:
        from vlmrl.envs.synthetic_episodes import make_synthetic_episode

        ep = make_synthetic_episode(seed=self._seed * 100_003 + i, source=self.entry(i)["source"], **self._kw)
        ep.episode_id = self.entry(i)["id"]
        if self._task_text:
            ep.task = self._task_text
        return ep


def open_input(inp: Any) -> EpisodeReader:
    """The reader of one ``build_offline_dataset.inputs`` entry (a DatasetInputConfig)."""
    fmt = inp.format
    if fmt not in MIX_FORMATS:
        raise ValueError(f"input {inp.path or inp.name!r}: unknown format {fmt!r}; choose one of {list(MIX_FORMATS)}")
    if fmt == "synthetic":
        return SyntheticEpisodeReader(int(inp.max_episodes), seed=int(inp.seed), task_text=inp.task_text)
    if not inp.path:
        raise ValueError(f"an input of format {fmt!r} needs a path")
    return open_reader(inp.path, fmt, task_text=inp.task_text, keys=dict(inp.hdf5), source=inp.source)


def select(reader: EpisodeReader, counts: Dict[str, int], max_episodes: int = 0) -> List[int]:
    """Indices of the episodes taken: in dataset order, at most ``counts[label]`` per source label."""
    taken: Counter = Counter()
    out = []
    for i in range(len(reader)):
        if max_episodes > 0 and len(out) >= max_episodes:
            break
        label = reader.entry(i).get("source", "")
        if counts:
            if label not in counts or taken[label] >= int(counts[label]):
                continue
        taken[label] += 1
        out.append(i)
    return out


@dataclass
class MixReport:
    """What :func:`build_offline_dataset` wrote (also saved as ``manifest.json``)."""

    output_dir: str
    episodes: int = 0
    steps: int = 0
    by_source: Dict[str, int] = field(default_factory=dict)
    by_task: Dict[str, int] = field(default_factory=dict)
    success_rate_by_source: Dict[str, float] = field(default_factory=dict)
    inputs: List[Dict[str, Any]] = field(default_factory=list)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "input"


def build_offline_dataset(section: Any, log: Callable[[str], None] = lambda m: None) -> MixReport:
    """Merge ``section.inputs`` into ``section.output_dir`` (a BuildOfflineDatasetConfig); see the module docstring."""
    if not section.inputs:
        raise ValueError("build_offline_dataset.inputs is empty: give at least one input (path + format)")
    out = Path(section.output_dir)
    if (out / "index.jsonl").exists():
        raise ValueError(f"{out} already holds a dataset; choose a new build_offline_dataset.output_dir")
    readers, picks, names = [], [], []
    try:
        for n, inp in enumerate(section.inputs):
            if int(getattr(inp, "repeat", 1)) != 1:
                raise ValueError(f"input {inp.path!r}: repeat is a reward-model training setting (lrm_train.dataset_dirs)")
            reader = open_input(inp)
            readers.append(reader)
            name = _safe(inp.name or reader.name or f"input{n}")
            if name in names:
                name = f"{name}{n}"
            names.append(name)
            chosen = select(reader, dict(inp.counts or {}), int(inp.max_episodes) if inp.format != "synthetic" else 0)
            picks += [(n, i) for i in chosen]
            log(f"{name}: taking {len(chosen)} of {len(reader)} episodes")
        if not picks:
            raise ValueError("no episode selected: check the inputs' counts (source labels) and paths")
        if section.shuffle:
            random.Random(int(section.seed)).shuffle(picks)
        writer = EpisodeWriter(out)
        report = MixReport(output_dir=str(out))
        per_input: Dict[int, Dict[str, Counter]] = defaultdict(lambda: {"source": Counter(), "task": Counter()})
        succ: Counter = Counter()
        by_source: Counter = Counter()
        by_task: Counter = Counter()
        for n, i in picks:
            ep = readers[n].load(i)
            orig = ep.episode_id or readers[n].entry(i)["id"]
            ep.meta = dict(ep.meta or {}, origin={"input": names[n], "path": str(section.inputs[n].path), "id": orig})
            ep.episode_id = _safe(f"{names[n]}-{orig}")
            writer.write(ep)
            per_input[n]["source"][ep.source] += 1
            per_input[n]["task"][ep.task] += 1
            by_source[ep.source] += 1
            by_task[ep.task] += 1
            succ[ep.source] += int(ep.succeeded)
            report.episodes += 1
            report.steps += ep.num_steps
    finally:
        for r in readers:
            r.close()
    report.by_source, report.by_task = dict(by_source), dict(by_task)
    report.success_rate_by_source = {s: succ[s] / c for s, c in by_source.items()}
    for n, inp in enumerate(section.inputs):
        report.inputs.append({"name": names[n], "path": str(inp.path), "format": inp.format,
                              "requested": dict(inp.counts or {}), "max_episodes": int(inp.max_episodes),
                              "taken_by_source": dict(per_input[n]["source"]), "taken_by_task": dict(per_input[n]["task"])})
    manifest = {"created_at": time.time(), "episodes": report.episodes, "steps": report.steps,
                "by_source": report.by_source, "by_task": report.by_task,
                "success_rate_by_source": report.success_rate_by_source, "inputs": report.inputs,
                "shuffle": bool(section.shuffle), "seed": int(section.seed)}
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out / "manifest.json")
    return report
