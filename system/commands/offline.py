"""``vlmrl offline CONFIG [key=value ...]``: language-conditioned IQL (AWR extraction) on an offline dataset.

Trains RLlib's IQL on a labelled (``vlmrl label``) or episode dataset with the reward chosen by
``offline.reward`` (env_sparse, env_dense, vlm, vlm+sparse, labelled), then evaluates the policy in the
simulator (``env`` section) on held-out seeds with seen and unseen task texts. Writes the resolved config,
converted data (``data/``), TensorBoard logs (``tb/``), checkpoints (``checkpoints/``) and ``eval.json``
under the run dir. See :mod:`vlmrl.learner.offline.offline_trainer`.
"""

from __future__ import annotations

import argparse

from vlmrl.system.commands.config_args import add_config_arguments, run_trainer_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default="offline_toy")


def write_toy_dataset_if_asked(cfg) -> None:
    """``offline.toy_dataset_episodes > 0`` on the ToyReach test env: write the missing toy dataset first."""
    from pathlib import Path

    from vlmrl.envs.toy_reach_env import TOY_TASK

    n, where = int(cfg.offline.toy_dataset_episodes), Path(cfg.offline.dataset)
    if n <= 0 or where.exists():
        return
    if cfg.env.task != TOY_TASK:
        raise ValueError(f"offline.toy_dataset_episodes is for the {TOY_TASK} test env, not env.task={cfg.env.task}; "
                         f"record a dataset with `vlmrl record-demos` and set offline.dataset instead")
    from vlmrl.envs.toy_reach_dataset import write_toy_dataset

    print(f"writing {n} {TOY_TASK} test episodes to {where} (offline.toy_dataset_episodes)", flush=True)
    write_toy_dataset(where, n, max_steps=int(cfg.env.max_episode_steps))


def run(args: argparse.Namespace) -> int:
    from vlmrl.learner.offline.offline_conversion import ConversionError
    from vlmrl.learner.offline.offline_trainer import OfflineTrainer

    return run_trainer_command("offline", OfflineTrainer, args, user_errors=(ConversionError,),
                               prepare=write_toy_dataset_if_asked)
