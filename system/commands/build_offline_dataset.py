"""``vlmrl build-offline-dataset [CONFIG] [key=value ...]``: merge recorded sources (several tasks and task
texts; demo / noisy_demo / random episodes) into one mixed-quality offline dataset with ``manifest.json``
(per-input and total counts by source and task). Settings: the ``build_offline_dataset`` section
(``vlmrl.envs.offline_mix``). Example (two ``record-demos`` folders, 20 demos + 20 noisy + 10 random each)::

    vlmrl build-offline-dataset build_offline_dataset.output_dir=runs/datasets/mix \\
      'build_offline_dataset.inputs=[{path: runs/datasets/push, counts: {demo: 20, noisy_demo: 20, random: 10}},
                                     {path: runs/datasets/pick, counts: {demo: 20, noisy_demo: 20, random: 10}}]'
"""

from __future__ import annotations

import argparse
import json
import sys

from vlmrl.system.commands.config_args import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from vlmrl.envs.dataset import DatasetFormatError
    from vlmrl.envs.offline_mix import build_offline_dataset

    try:
        report = build_offline_dataset(cfg.build_offline_dataset, log=lambda m: print(m, flush=True))
    except (ValueError, DatasetFormatError, OSError) as e:
        print(f"vlmrl build-offline-dataset: {e}", file=sys.stderr)
        return 2
    print(f"wrote {report.episodes} episodes ({report.steps} steps) to {report.output_dir}: by source "
          f"{json.dumps(report.by_source)}, success rate by source "
          f"{json.dumps({k: round(v, 2) for k, v in report.success_rate_by_source.items()})}, "
          f"{len(report.by_task)} task texts", flush=True)
    return 0
