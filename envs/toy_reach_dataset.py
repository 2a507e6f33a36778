"""Offline episodes of the ToyReach TEST env (``vlmrl.envs.toy_reach_env``) for fast offline-learner tests.

Writes the project's episode dataset format (:mod:`vlmrl.envs.dataset`) from three sources:
``demo`` (moves straight at the goal), ``noisy_demo`` (the demo action plus Gaussian noise) and ``random``
(uniform actions), with the task texts of :data:`TOY_TEXTS` ``seen`` (every text with every source).
Frames are not kept (the offline learner reads states only); episodes carry an empty frames array.
``TOY_TEXTS['unseen']`` are held-out wordings for the seen/unseen evaluation of a language-conditioned policy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np

from vlmrl.envs import info_keys as K
from vlmrl.envs.dataset import Episode, EpisodeWriter
from vlmrl.envs.toy_reach_env import TOY_TASK, TOY_TEXT, ToyReachEnv

TOY_TEXTS: Dict[str, Tuple[str, ...]] = {
    "seen": (TOY_TEXT, "move the white square to the green disk", "bring the agent onto the green circle"),
    "unseen": ("steer the small white block over the green target", "get the square to the goal disk"),
}
"""Task texts of ToyReach: ``seen`` used in datasets, ``unseen`` held out (the env ignores the text)."""
SOURCES = ("demo", "noisy_demo", "random")


def _action(source: str, obs: np.ndarray, rng: np.random.Generator, noise_std: float) -> np.ndarray:
    if source == "random":
        return rng.uniform(-1, 1, 2).astype(np.float32)
    delta = obs[4:6]
    a = delta / max(float(np.linalg.norm(delta)), 0.15)  # full speed far away, slows near the goal
    if source == "noisy_demo":
        a = a + rng.normal(0.0, noise_std, 2)
    return np.clip(a, -1, 1).astype(np.float32)


def record_toy_episode(seed: int, source: str, task_text: str, max_steps: int = 30,
                       noise_std: float = 0.8) -> Episode:
    """One ToyReach episode from ``source`` (module doc); everything is a function of ``seed``."""
    if source not in SOURCES:
        raise ValueError(f"unknown toy source {source!r}; expected one of {SOURCES}")
    env = ToyReachEnv({"task_text": task_text, "capture_frames": False, "max_episode_steps": max_steps,
                       "reward_mode": "dense"})
    rng = np.random.default_rng(seed + 7)
    obs, info = env.reset(seed=seed)
    states, actions, rewards, success = [obs], [], [], [bool(info[K.SUCCESS])]
    done = False
    while not done:
        a = _action(source, obs, rng, noise_std)
        obs, r, term, trunc, info = env.step(a)
        states.append(obs)
        actions.append(a)
        rewards.append(r)
        success.append(bool(info[K.SUCCESS]))
        done = term or trunc
    return Episode(task=task_text, env_id=TOY_TASK, frames=np.zeros((0, 8, 8, 3), np.uint8),
                   frame_steps=np.zeros(0, np.int32), states=np.asarray(states, np.float32),
                   actions=np.asarray(actions, np.float32), rewards=np.asarray(rewards, np.float32),
                   success=np.asarray(success), source=source, seed=seed).validate()


def toy_episode_source_and_text(i: int, sources: Sequence[str] = SOURCES) -> Tuple[str, str]:
    """Source and seen task text of the ``i``-th episode of a toy dataset: sources cycle fastest and each text
    is used for one whole cycle of sources, so every text has episodes of every source (text and data
    quality are independent; cycling both with ``i`` would tie each text to one source whenever their counts
    share a factor, and a language-conditioned policy would learn the wording as a proxy for quality)."""
    seen = TOY_TEXTS["seen"]
    return sources[i % len(sources)], seen[(i // len(sources)) % len(seen)]


def write_toy_dataset(root: str | os.PathLike, num_episodes: int, sources: Sequence[str] = SOURCES,
                      seed: int = 0, max_steps: int = 30) -> Path:
    """``num_episodes`` ToyReach episodes (sources and seen texts per :func:`toy_episode_source_and_text`)."""
    writer = EpisodeWriter(root)
    for i in range(num_episodes):
        source, text = toy_episode_source_and_text(i, sources)
        writer.write(record_toy_episode(seed=seed * 100_003 + i, source=source, task_text=text, max_steps=max_steps))
    return Path(root)
