"""Evaluation of an offline-trained, language-conditioned policy in the simulator.

Role in the reward path: the number that says whether a reward (sparse only vs VLM + sparse) produced a
better policy. Episodes run on held-out env seeds (``offline.eval_seed`` onwards; recorded datasets use
small seeds) with the task text drawn from a split of the task registry (:mod:`vlmrl.envs.tasks`): ``seen``
(the training wordings) and ``unseen`` (held-out paraphrases). The policy acts deterministically (the mean
of its squashed Gaussian) on ``state ++ embedding(task text)`` (:func:`append_embedding`, the same table the
learner connector used). Per split: success rate (success at any step), return (sum of the env's
ground-truth normalised dense reward ``info['env_reward']``) and episode length; per task text as well.

The generalisation drop is reported as RG-VLM reports its drop under randomised initial states: the
relative loss ``(seen - unseen) / seen`` (in %), here for success rate and return between seen and unseen texts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from vlmrl.envs import info_keys as K
from vlmrl.learner.offline.task_embedding_connector import append_embedding

Policy = Callable[[np.ndarray], np.ndarray]
"""(N, S + D) conditioned observations -> (N, A) actions."""


@dataclass
class SplitResult:
    """Aggregates of one task-text split."""

    episodes: int = 0
    success_rate: float = 0.0
    return_mean: float = 0.0
    length_mean: float = 0.0
    per_text: Dict[str, Dict[str, float]] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Per-split results for one task, and the seen -> unseen generalisation drop."""

    task: str
    splits: Dict[str, SplitResult] = field(default_factory=dict)

    def drop(self, metric: str = "success_rate") -> Optional[float]:
        """Relative drop (%) of ``metric`` from seen to unseen texts; None if either is missing or seen is 0."""
        if "seen" not in self.splits or "unseen" not in self.splits:
            return None
        seen, unseen = getattr(self.splits["seen"], metric), getattr(self.splits["unseen"], metric)
        return None if seen <= 0 else 100.0 * (seen - unseen) / seen

    def scalars(self, prefix: str = "eval") -> Dict[str, float]:
        out: Dict[str, float] = {}
        for name, s in self.splits.items():
            out[f"{prefix}/{name}_success_rate"] = s.success_rate
            out[f"{prefix}/{name}_return"] = s.return_mean
            out[f"{prefix}/{name}_episode_len"] = s.length_mean
        for metric, short in (("success_rate", "success"), ("return_mean", "return")):
            d = self.drop(metric)
            if d is not None:
                out[f"{prefix}/generalisation_drop_{short}_pct"] = d
        return out

    def to_dict(self) -> Dict[str, Any]:
        d = {"task": self.task, "splits": {k: asdict(v) for k, v in self.splits.items()}}
        d["generalisation_drop_success_pct"] = self.drop("success_rate")
        d["generalisation_drop_return_pct"] = self.drop("return_mean")
        return d


def task_texts(task: str, split: str) -> Tuple[str, ...]:
    """The task's texts of ``split`` (ToyReach's from vlmrl.envs.toy_reach_dataset, others from the registry)."""
    from vlmrl.envs.toy_reach_env import TOY_TASK

    if task == TOY_TASK:
        from vlmrl.envs.toy_reach_dataset import TOY_TEXTS

        if split == "all":
            return TOY_TEXTS["seen"] + TOY_TEXTS["unseen"]
        if split not in TOY_TEXTS:
            raise ValueError(f"task text split must be 'seen', 'unseen' or 'all', got {split!r}")
        return TOY_TEXTS[split]
    from vlmrl.envs.tasks import get_task

    return get_task(task).texts(split)


def make_eval_env(env_cfg: Any, task_text: str, max_steps: Optional[int] = None):
    """A state-only env (no frames rendered) of ``env_cfg.task`` with a fixed task text: one CPU-sim env, also where
    ``env_cfg`` asks for the GPU sim."""
    from omegaconf import OmegaConf

    from vlmrl.envs.toy_reach_env import TOY_TASK, ToyReachEnv

    c = OmegaConf.to_container(env_cfg, resolve=True) if not isinstance(env_cfg, dict) else dict(env_cfg)
    c.update(task_text=task_text, capture_frames=False, sim_backend="cpu", num_envs=1)
    if max_steps:
        c["max_episode_steps"] = int(max_steps)
    if c.get("task") == TOY_TASK:
        return ToyReachEnv(c)
    from vlmrl.envs.maniskill_env import make_env

    return make_env(c)


def run_episode(env: Any, policy: Policy, text: str, table: Mapping[str, np.ndarray], seed: int) -> Dict[str, float]:
    obs, info = env.reset(seed=seed)
    ret, steps, success = 0.0, 0, bool(info.get(K.SUCCESS, False))
    done = False
    while not done:
        x = append_embedding(np.asarray(obs, np.float32)[None], [text], table)
        action = np.asarray(policy(x))[0]
        obs, _, term, trunc, info = env.step(action)
        ret += float(info.get(K.ENV_REWARD, 0.0))
        success = success or bool(info.get(K.SUCCESS, False))
        steps += 1
        done = bool(term or trunc)
    return {"success": float(success), "return": ret, "length": float(steps)}


def evaluate_policy(policy: Policy, env_cfg: Any, table: Mapping[str, np.ndarray], splits: Sequence[str],
                    episodes_per_split: int, seed: int, max_steps: Optional[int] = None) -> EvalResult:
    """Run ``episodes_per_split`` episodes per split (texts cycled, seeds ``seed``, ``seed + 1``, ...;
    the same seeds for every split, so splits differ only in their wording)."""
    task = str(env_cfg["task"] if isinstance(env_cfg, dict) else env_cfg.task)
    result = EvalResult(task=task)
    envs: Dict[str, Any] = {}
    try:
        for split in splits:
            texts = task_texts(task, split)
            rows: List[Tuple[str, Dict[str, float]]] = []
            for k in range(int(episodes_per_split)):
                text = texts[k % len(texts)]
                if text not in envs:
                    envs[text] = make_eval_env(env_cfg, text, max_steps)
                rows.append((text, run_episode(envs[text], policy, text, table, seed + k)))
            sr = SplitResult(episodes=len(rows))
            if rows:
                sr.success_rate = float(np.mean([r["success"] for _, r in rows]))
                sr.return_mean = float(np.mean([r["return"] for _, r in rows]))
                sr.length_mean = float(np.mean([r["length"] for _, r in rows]))
                for text in dict.fromkeys(t for t, _ in rows):
                    mine = [r for t, r in rows if t == text]
                    sr.per_text[text] = {"episodes": float(len(mine)),
                                         "success_rate": float(np.mean([r["success"] for r in mine])),
                                         "return": float(np.mean([r["return"] for r in mine]))}
            result.splits[split] = sr
    finally:
        for env in envs.values():
            env.close()
    return result


def rl_module_policy(module: Any) -> Policy:
    """Deterministic actions of an RLlib RLModule (IQL/SAC: the squashed Gaussian's mean) on numpy inputs."""
    import torch
    from ray.rllib.core.columns import Columns

    dist_cls = module.get_inference_action_dist_cls()

    @torch.no_grad()
    def act(x: np.ndarray) -> np.ndarray:
        out = module.forward_inference({Columns.OBS: torch.as_tensor(x, dtype=torch.float32)})
        dist = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS]).to_deterministic()
        return dist.sample().cpu().numpy()

    return act
