"""``vlmrl label [CONFIG] [key=value ...]``: label every step of an offline dataset with the RG-VLM window
reward (or any configured scorer) through the reward workers; Parquet shards, resumable.

Settings: the ``label`` section (input dataset, window size, reward weights, shards, where the workers come
from) plus ``scorer``/``server``/``pool``/``client`` for the workers. Output schema and resume rules:
``vlmrl.learner.labels.labelling``. Example (two in-process workers running the synthetic scorer in window mode)::

    vlmrl label label.input.path=runs/datasets/offline_mix label.output_dir=runs/labelled/mix \\
        label.workers=local pool.num_workers=2 scorer.name=synthetic scorer.params.item_kind=window
"""

from __future__ import annotations

import argparse
import sys

from vlmrl.system.commands.config_args import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from vlmrl.envs.dataset import DatasetFormatError
    from vlmrl.envs.offline_readers import open_reader
    from vlmrl.learner.labels.label_workers import open_label_workers
    from vlmrl.learner.labels.labelling import LabellingError, label_dataset, settings_from_config
    from vlmrl.reward_workers.client import RewardServiceError
    from vlmrl.system.config import save_resolved

    lc = cfg.label
    if not lc.input.path:
        print("vlmrl label: set label.input.path (the dataset to label)", file=sys.stderr)
        return 2
    try:
        reader = open_reader(lc.input.path, lc.input.format, task_text=lc.input.task_text, keys=dict(lc.input.hdf5),
                             source=lc.input.source)
    except (DatasetFormatError, ValueError, OSError) as e:
        print(f"vlmrl label: cannot read {lc.input.path}: {e}", file=sys.stderr)
        return 2
    try:
        with reader, open_label_workers(cfg) as workers:
            settings = settings_from_config(lc, cfg.scorer, workers.scorer, workers.item_kind)
            n = len(reader) if lc.max_episodes <= 0 else min(len(reader), int(lc.max_episodes))
            print(f"labelling {n} episodes of {reader.name} with {settings.scorer} ({settings.item_kind}, "
                  f"{settings.frames_per_item} frames/item) on {len(workers.infos)} worker(s)", flush=True)
            report = label_dataset(reader, workers.client, settings, lc.output_dir, overwrite=lc.overwrite,
                                   max_items_in_flight=lc.max_items_in_flight, prefetch_shards=lc.prefetch_shards,
                                   progress=lc.progress, request_items=int(cfg.client.max_items_per_request))
            stats = workers.info()
    except (LabellingError, DatasetFormatError, RewardServiceError, ValueError, RuntimeError) as e:
        print(f"vlmrl label: {e}", file=sys.stderr)
        return 1
    save_resolved(cfg, lc.output_dir)
    hits = sum(s.get("cache_hits", 0) for s in stats)
    misses = sum(s.get("cache_misses", 0) for s in stats)
    print(f"labelled {report.steps} frames of {report.episodes} episodes in {report.seconds:.1f} s "
          f"({report.frames_per_s:.1f} frames/s, {report.items_scored} items, {report.cached_items} from cache); "
          f"shards: {report.shards_labelled} labelled, {report.shards_skipped} already done of {report.shards_total}; "
          f"workers' cache hits/misses: {hits}/{misses}; output: {lc.output_dir}", flush=True)
    return 0
