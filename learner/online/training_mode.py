"""The interface between :class:`~vlmrl.learner.online.online_trainer.OnlineTrainer` and a ``train.mode``: what a mode adds
around RLlib's PPO iterations (LRM refinement clones a base policy and evaluates it; RL-VLM-F preference labels
pairs and trains the reward model the workers serve). The trainer calls every hook, in this order:
``start`` -> ``extra_callbacks`` -> (PPO built) ``on_algo_built`` -> [``on_restored`` when resuming |
``before_training``] -> per iteration ``after_iteration``, ``pop_images``, ``last_console_line``, and
``on_checkpoint_saved`` at each checkpoint -> ``close``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np


class TrainingMode:
    """A ``train.mode``'s hooks around PPO; each default does nothing, so a mode overrides only what it needs and
    ``env`` / ``vlm-score`` training runs this class as it is."""

    last_console_line: str = ""
    """Printed under the trainer's console line after each iteration when not empty."""

    def start(self, reward_pool: Any) -> None:
        """The reward pool is up (None without one); start what the mode runs beside PPO."""

    def extra_callbacks(self) -> List[Any]:
        """RLlib callback classes the env runners need on top of the reward callback."""
        return []

    def on_algo_built(self, algo: Any) -> None:
        """PPO is built (before a resume restores it)."""

    def before_training(self, algo: Any) -> None:
        """A fresh run (not a resume) is about to run its first iteration."""

    def after_iteration(self, algo: Any, iteration: int) -> Dict[str, float]:
        """The mode's work after PPO iteration ``iteration``; returns TensorBoard scalars."""
        return {}

    def pop_images(self) -> List[Tuple[str, np.ndarray]]:
        """(tag, HWC uint8 image) pairs to log this iteration."""
        return []

    def on_checkpoint_saved(self, path: Path) -> None:
        """PPO saved a checkpoint into ``path`` (before ``latest.json`` names it): save the mode's state beside it."""

    def on_restored(self, path: Path) -> None:
        """PPO was restored from the checkpoint ``path``: restore the mode's state."""

    def close(self) -> None:
        """The run ends (also on error)."""
