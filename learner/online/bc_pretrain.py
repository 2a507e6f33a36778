"""Behaviour cloning of the base policy of ``train.mode=lrm`` (the IL policy that the LRM rewards refine).

Role in the reward path: before any reward is asked for, the demonstrations (episode dataset of
:mod:`vlmrl.envs.dataset`, e.g. ``vlmrl record-demos`` output) are cloned into a policy with RLlib's
MARWIL at ``beta=0`` (pure BC: the loss is ``-log pi(a|s)``) on the new API stack. MARWIL's RLModule is
RLlib's ``DefaultPPOTorchRLModule``, built here with the SAME model config as the PPO of
:mod:`vlmrl.learner.online.ppo_builder` (``train.hidden``, tanh, separate value net), so its state loads
unchanged into the PPO learner (:mod:`vlmrl.learner.online.lrm_refine`).

Offline input: :func:`demos_to_episodes` turns the dataset's ``sources`` episodes (default: ``demo`` only,
not noisy/random ones) into RLlib ``SingleAgentEpisode``s, cut where the env would terminate (first success).
:func:`train_bc` builds MARWIL's Learner and feeds those episodes to ``Learner.update(episodes=...)``,
which runs MARWIL's own learner connector (batching, GAE columns) and loss. This skips RLlib's ray.data
offline pipeline (``offline_data(input_=...)``), which spends ~18 s per iteration scheduling a dataset
on a 2-core machine, far more than the demo sets here (a few thousand steps, held in memory) need.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Sequence

import numpy as np

MODULE_DIR = "bc_module"
"""Sub-folder of the run dir with the cloned RLModule (``RLModule.save_to_path``)."""


class BcDataError(ValueError):
    """The demonstration dataset cannot be used for behaviour cloning; the message says why."""


@dataclass
class BcData:
    """The demonstration episodes of BC and what they hold."""

    episodes: List[Any]
    """RLlib ``SingleAgentEpisode``s (numpy), one per demo."""
    num_steps: int
    state_dim: int
    action_dim: int
    demo_success_rate: float
    """Fraction of the demos that reach success (the scripted controllers are not perfect)."""


def demos_to_episodes(dataset: str | Path, sources: Sequence[str] = ("demo",), max_episodes: int = 0,
                      action_clip: float = 1.0) -> BcData:
    """The ``sources`` episodes of ``dataset`` as ``SingleAgentEpisode``s (module doc)."""
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from vlmrl.envs.dataset import iter_episodes

    root = Path(dataset)
    if not (root / "index.jsonl").exists():
        raise BcDataError(f"lrm_refine.demos={dataset!s} is not an episode dataset (no index.jsonl); record one "
                          f"with `vlmrl record-demos`")
    wanted = set(sources)
    episodes, n_steps, n_success, dims = [], 0, 0, None
    for ep in iter_episodes(root, where=lambda e: e.get("source", "demo") in wanted):
        if max_episodes and len(episodes) >= max_episodes:
            break
        if ep.num_steps == 0:
            continue
        d = (int(ep.states.shape[1]), int(ep.actions.shape[1]))
        if dims is not None and d != dims:
            raise BcDataError(f"{dataset}: episode {ep.episode_id} has state/action dims {d}, the others {dims}")
        dims = d
        success = np.asarray(ep.success, bool)
        hit = np.flatnonzero(success[1:])
        T = int(hit[0]) + 1 if len(hit) else ep.num_steps  # the demo ends where the env would terminate
        sa = SingleAgentEpisode(
            observations=[s.astype(np.float32) for s in ep.states[:T + 1]],
            actions=[np.clip(a, -action_clip, action_clip).astype(np.float32) for a in ep.actions[:T]],
            rewards=[float(x) for x in success[1:T + 1]],
            terminated=bool(len(hit)), truncated=not len(hit), len_lookback_buffer=0)
        episodes.append(sa.to_numpy())
        n_steps += T
        n_success += int(bool(len(hit)))
    if not episodes:
        raise BcDataError(f"{dataset}: no non-empty episodes with source in {sorted(wanted)} (check "
                          f"lrm_refine.demo_sources and the dataset's index.jsonl)")
    return BcData(episodes, n_steps, dims[0], dims[1], n_success / len(episodes))


def ppo_model_config(hidden: Sequence[int], free_log_std: bool = False):
    """The RLModule model config of PPO (learner/online/ppo_builder.py); BC must build the same network."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    return DefaultModelConfig(fcnet_hiddens=[int(h) for h in hidden], fcnet_activation="tanh", vf_share_layers=False,
                              free_log_std=bool(free_log_std))


def build_bc_config(hidden: Sequence[int], lr: float, seed: int = 0, free_log_std: bool = False):
    """MARWIL at ``beta=0`` (= BC) with PPO's module (module doc)."""
    from ray.rllib.algorithms.marwil import MARWILConfig

    return (
        MARWILConfig()
        .framework("torch")
        .learners(num_learners=0)
        .debugging(seed=int(seed))
        .rl_module(model_config=ppo_model_config(hidden, free_log_std))
        .training(beta=0.0, lr=float(lr))
    )


def train_bc(data: BcData, observation_space: Any, action_space: Any, out_dir: str | Path, hidden: Sequence[int],
             epochs: int, lr: float = 1e-3, minibatch_size: int = 256, seed: int = 0, free_log_std: bool = False,
             print_fn: Callable[[str], None] = print) -> Path:
    """Clone ``data`` for ``epochs`` passes (spaces = the online env's); save the module to ``<out_dir>/bc_module``."""
    import torch
    from ray.rllib.core import DEFAULT_MODULE_ID

    if epochs < 1:
        raise ValueError(f"lrm_refine.bc_epochs must be >= 1, got {epochs}")
    torch.manual_seed(int(seed))
    learner = build_bc_config(hidden, lr, seed, free_log_std).build_learner(
        spaces={DEFAULT_MODULE_ID: (observation_space, action_space)})
    every = max(1, epochs // 5)
    t0 = time.perf_counter()
    for i in range(1, int(epochs) + 1):
        res = learner.update(episodes=data.episodes, num_epochs=1, minibatch_size=int(minibatch_size),
                             shuffle_batch_per_epoch=True, timesteps={})
        if i == 1 or i == epochs or i % every == 0:
            loss = float(_peek(res[DEFAULT_MODULE_ID]["policy_loss"]))
            print_fn(f"bc epoch {i}/{epochs}: policy loss -log pi(a|s) {loss:.3f} "
                     f"({data.num_steps} demo steps, {time.perf_counter() - t0:.1f}s)")
    path = Path(out_dir) / MODULE_DIR
    learner.module[DEFAULT_MODULE_ID].save_to_path(str(path.resolve()))
    return path


def _peek(v: Any) -> float:
    return float(v.peek() if hasattr(v, "peek") else v)
