"""``vlmrl offline CONFIG [key=value ...]``: language-conditioned IQL (AWR extraction) on an offline dataset.

Trains RLlib's IQL on a labelled (``vlmrl label``) or episode dataset with the reward chosen by
``offline.reward`` (env_sparse, env_dense, vlm, vlm+sparse, labelled), then evaluates the policy in the
simulator (``env`` section) on held-out seeds with seen and unseen task texts. Writes the resolved config,
converted data (``data/``), TensorBoard logs (``tb/``), checkpoints (``checkpoints/``) and ``eval.json``
under the run dir. See :mod:`vlmrl.learner.offline_trainer`.
"""

from __future__ import annotations

import argparse

from vlmrl.system.commands.config_args import add_config_arguments, run_trainer_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default="offline_toy")


def run(args: argparse.Namespace) -> int:
    from vlmrl.learner.offline_conversion import ConversionError
    from vlmrl.learner.offline_trainer import OfflineTrainer

    return run_trainer_command("offline", OfflineTrainer, args, user_errors=(ConversionError,))
