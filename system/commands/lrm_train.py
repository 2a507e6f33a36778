"""``vlmrl lrm-train [CONFIG] [key=value ...]``: train a reward model on episode datasets (section ``lrm_train``).

``lrm_train.dataset_dirs`` lists the datasets: folders in the project's format and/or mappings
``{path, format: episodes|minari_hdf5|d4rl_hdf5, task_text, hdf5: {...}}`` (learner/reward_training/lrm_data.py).

``lrm_train.model=compact`` trains the compact CNN LRM (learner/reward_training/lrm_train.py); ``model=vlm``
hands the section to ``vlmrl.learner.reward_training.lrm_lora.train_lora_lrm`` (LoRA on a VLM). Writes the model folder, the resolved config and TensorBoard scalars (``lrm/...``,
under ``<out_dir>/tb``) into ``lrm_train.out_dir``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlmrl.system.commands.config_args import add_config_arguments, config_from_args
from vlmrl.system.config import save_resolved

MODELS = ("compact", "vlm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    sec = cfg.lrm_train
    if sec.model not in MODELS:
        print(f"vlmrl lrm-train: lrm_train.model must be one of {MODELS}, got {sec.model!r}", file=sys.stderr)
        return 2
    from vlmrl.learner.reward_training.lrm_data import dataset_config_problem

    if int(sec.restarts) < 1 or (int(sec.restarts) > 1 and sec.model != "compact"):
        print(f"vlmrl lrm-train: lrm_train.restarts={sec.restarts}: must be >= 1, and > 1 only with model=compact "
              "(the LoRA VLM trains once)", file=sys.stderr)
        return 2
    if int(sec.parallel_restarts) < 1:
        print(f"vlmrl lrm-train: lrm_train.parallel_restarts={sec.parallel_restarts}: must be >= 1 (restarts trained "
              "at once, each in its own process)", file=sys.stderr)
        return 2
    problem = dataset_config_problem(sec.dataset_dirs, "lrm_train.dataset_dirs")
    if problem:
        print(f"vlmrl lrm-train: {problem}", file=sys.stderr)
        return 2
    out = Path(sec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out)
    if sec.model == "vlm":
        from vlmrl.learner.reward_training.lrm_lora import train_lora_lrm

        try:
            train_lora_lrm(sec, log=lambda m: print(m, flush=True))
        except ValueError as e:
            print(f"vlmrl lrm-train: {e}", file=sys.stderr)
            return 2
        return 0
    from torch.utils.tensorboard import SummaryWriter

    from vlmrl.learner.reward_training.lrm_train import train_best_of_restarts

    writer = SummaryWriter(str(out / "tb"))
    try:
        result = train_best_of_restarts(sec, log=lambda m: print(m, flush=True), writer=writer)
    except ValueError as e:
        print(f"vlmrl lrm-train: {e}", file=sys.stderr)
        return 2
    finally:
        writer.close()
    print(f"lrm-train: saved compact LRM to {result['out_dir']} ({result['steps']} steps)")
    return 0
