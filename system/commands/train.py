"""``vlmrl train CONFIG [key=value ...]``: online PPO with rewards from the reward worker pool.

Modes (``train.mode``): ``vlm-score`` (the policy trains on the configured scorer's reward; the pool
is started as part of the job), ``env`` (ground-truth baseline on the env's reward) and ``lrm`` (a base
policy behaviour-cloned from ``lrm_refine.demos``, refined by PPO on the pool's rewards; see
:mod:`vlmrl.learner.online.lrm_refine`). Writes the
resolved config, TensorBoard logs (``tb/``) and checkpoints (``checkpoints/``) under the run dir;
``train.resume=true`` continues from the last checkpoint. See :mod:`vlmrl.learner.online.online_trainer`.
"""

from __future__ import annotations

import argparse

from vlmrl.system.commands.config_args import add_config_arguments, run_trainer_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default="train_toy")


def run(args: argparse.Namespace) -> int:
    from vlmrl.learner.online.online_trainer import OnlineTrainer

    return run_trainer_command("train", OnlineTrainer, args)
