"""Episodes of a trained policy, recorded with ground truth: the states an RL run really reached.

Role in the reward path: the scripted behaviour library (:mod:`vlmrl.envs.behaviours`) covers the exploits one can
think of; a policy trained on a learned reward finds others (measured on PushCube: an AI-labelled preference run's
late policy rests the arm beside the goal, frames the compact LRM ranks above reaching the cube). ``vlmrl
audit-reward`` with ``audit.policy_runs`` scores such a run's own episodes next to the library (their order against
the env's dense reward shows where the reward misleads), and ``--record-negatives`` records them on training seeds
with their states, dense reward and success, so ``vlmrl lrm-train`` learns ground-truth targets for them: hard
negatives mined from the RL policy's own rollouts.

Each episode runs the run's final policy (or the checkpoint named), sampling its own diagonal Gaussian as its
training episodes did, in the run's env (camera, frame size, control mode), from a fixed seed and a numpy
generator seeded from it: the same run, seed and checkpoint give the same episode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from vlmrl.envs.dataset import Episode
from vlmrl.learner.run_files import run_and_checkpoint

SOURCE = "policy"
CATEGORY = "policy"
"""Audit category of these episodes: reported and ordered against the dense reward, never gated by the exploit
margin (a policy may really make progress)."""
SEED_OFFSET = 90_000
RUN_SEEDS = 1_000
"""Run ``k`` of ``audit.policy_runs`` uses seeds ``base + SEED_OFFSET + RUN_SEEDS * k + i`` (i < RUN_SEEDS): clear of
the behaviours' seeds from ``base`` (10,000 per task) and of the next seed range of the audit config."""


def policy_seeds(base: int, run_index: int, episodes: int) -> range:
    """The env seeds of run ``run_index``'s ``episodes`` episodes from ``base`` (``audit.seed`` for the audit,
    ``audit.negatives_seed`` for recording)."""
    if not 0 < int(episodes) <= RUN_SEEDS:
        raise ValueError(f"policy episodes per run must be in [1, {RUN_SEEDS}], got {episodes}")
    start = int(base) + SEED_OFFSET + RUN_SEEDS * int(run_index)
    return range(start, start + int(episodes))


def behaviour_name(path: str | Path) -> str:
    """``policy_<run folder name>`` (+ ``_<checkpoint>`` for an earlier checkpoint): the audit's behaviour name."""
    run, ckpt = run_and_checkpoint(path)
    return f"policy_{run.name}" + (f"_{ckpt.name}" if ckpt is not None else "")


def iter_policy_episodes(path: str | Path, episodes: int, base_seed: int, run_index: int,
                         frame_stride: int) -> Iterator[Episode]:
    """``episodes`` recorded episodes of the policy of ``path`` (a ``vlmrl train`` run folder or one of its checkpoint
    folders) on seeds :func:`policy_seeds`; FileNotFoundError naming the fix when it is not a finished run."""
    from omegaconf import OmegaConf

    from vlmrl.learner.online.lrm_refine import final_policy

    run, ckpt = run_and_checkpoint(path)
    if not (run / "config.yaml").exists():
        raise FileNotFoundError(f"audit.policy_runs: {path} is not a `vlmrl train` run folder (no config.yaml)")
    cfg = OmegaConf.load(run / "config.yaml")
    yield from iter_module_episodes(final_policy(run, ckpt), cfg.env, policy_seeds(base_seed, run_index, episodes),
                                    frame_stride, behaviour_name(path), str(path))


def iter_module_episodes(module: Any, env_cfg: Any, seeds: Iterable[int], frame_stride: int, name: str,
                         run: str) -> Iterator[Episode]:
    """One recorded episode per seed of ``module`` (a PPO RLModule: its Gaussian sampled, actions clipped to the box)
    in the env of ``env_cfg``, frames every ``frame_stride`` steps, meta behaviour ``name`` / category ``policy``."""
    from vlmrl.envs.maniskill_env import ManiSkillTaskEnv
    from vlmrl.envs.recording import EpisodeCutoff, RecordingWrapper
    from vlmrl.learner.online.lrm_refine import gaussian_actions

    env = ManiSkillTaskEnv(env_cfg, frame_stride=int(frame_stride), end_on_success=False, reward_mode="none",
                           sim_backend="cpu", num_envs=1)
    try:
        low, high = env.action_space.low, env.action_space.high
        for seed in seeds:
            rng = np.random.default_rng(seed)
            rec = RecordingWrapper(env, env.max_episode_steps)
            obs, _ = rec.reset(seed=seed)
            try:
                for _ in range(env.max_episode_steps):
                    obs, _, _, truncated, _ = rec.step(np.clip(gaussian_actions(module, obs[None], rng)[0][0], low, high))
                    if truncated:
                        break
            except EpisodeCutoff:
                pass
            yield rec.finish().to_episode(env.task.env_id, SOURCE, {"behaviour": name, "category": CATEGORY,
                                                                    "run": run})
    finally:
        env.close()
