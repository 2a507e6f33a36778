"""Why do greedy and training success differ? A run's final policy, acted greedily and stochastically:

    .venv/bin/python -m benchmarks.policy_actions RUN_DIR [RUN_DIR ...] [--episodes 20]
    .venv/bin/python -m benchmarks.policy_actions RUN_DIR/checkpoints/iter_000030 ...   # an earlier policy

``RUN_DIR``: a ``vlmrl train`` run (its ``config.yaml`` gives the env; its last checkpoint the policy), or one of
its checkpoint folders (that checkpoint's policy; the run keeps its newest ``train.keep_checkpoints``). On the
benchmarks' fixed eval seeds (``lrm_refine.eval_seed + i``) each policy runs once with its mean action (what the
benchmarks call greedy success) and once sampling its own diagonal Gaussian (what its training episodes do).
Printed per mode: success at the last step and at any step, the final normalised dense env reward, and over all
steps the mean |mean action| and std per action dimension and the share of mean components outside the action
box (a saturated mean acts differently from the clipped samples PPO trained on).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict

import numpy as np

from vlmrl.learner.run_files import run_and_checkpoint


def act(module, obs: np.ndarray, rng: np.random.Generator, stochastic: bool):
    """(action, mean, std) of a PPO RLModule's diagonal Gaussian at one observation."""
    from vlmrl.learner.online.lrm_refine import gaussian_actions

    a, mean, std = gaussian_actions(module, np.asarray(obs)[None], rng if stochastic else None)
    return a[0], mean[0], std[0]


def load(path: Path):
    """(run config, policy) of a RUN_DIR argument; exits naming the folder when it holds no checkpoint."""
    from vlmrl.learner.online.lrm_refine import final_policy
    from vlmrl.system.config import load_config

    run_dir, checkpoint = run_and_checkpoint(path)
    try:
        return load_config(str(run_dir / "config.yaml"), []), final_policy(run_dir, checkpoint)
    except FileNotFoundError as e:
        raise SystemExit(f"policy_actions: {e}") from None


def measure(cfg, module, episodes: int, stochastic: bool) -> Dict[str, object]:
    """One acting mode of ``module`` on the run's env (``cfg``) over the fixed eval seeds (module doc)."""
    from vlmrl.envs import info_keys as K
    from vlmrl.learner.online.lrm_refine import make_eval_env

    env = make_eval_env(cfg)
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng(0)
    last, ever, dense, means, stds, outside = [], [], [], [], [], []
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=int(cfg.lrm_refine.eval_seed) + i)
            done, hit = False, False
            while not done:
                a, mean, std = act(module, obs, rng, stochastic)
                means.append(np.abs(mean))
                stds.append(std)
                outside.append(np.mean((mean < low) | (mean > high)))
                obs, _, term, trunc, info = env.step(np.clip(a, low, high))
                hit |= bool(info[K.SUCCESS])
                done = bool(term or trunc)
            last.append(bool(info[K.SUCCESS]))
            ever.append(hit)
            dense.append(float(info.get(K.ENV_REWARD, np.nan)))
    finally:
        env.close()
    return {"success_last_step": float(np.mean(last)), "success_any_step": float(np.mean(ever)),
            "final_dense": float(np.nanmean(dense)), "abs_mean_action": [round(float(v), 2) for v in np.mean(means, 0)],
            "std": [round(float(v), 2) for v in np.mean(stds, 0)], "mean_outside_box": float(np.mean(outside))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--episodes", type=int, default=20)
    args = p.parse_args(argv)
    for path in map(Path, args.run_dirs):
        run_dir, checkpoint = run_and_checkpoint(path)
        name = run_dir.name + (f"/{checkpoint.name}" if checkpoint else "")
        cfg, module = load(path)
        for stochastic in (False, True):
            m = measure(cfg, module, args.episodes, stochastic)
            print(f"{name} {'stochastic' if stochastic else 'greedy'}: success {m['success_last_step']:.2f} "
                  f"(any step {m['success_any_step']:.2f}), final dense {m['final_dense']:.3f}, |mean action| "
                  f"{m['abs_mean_action']}, std {m['std']}, mean outside the box {m['mean_outside_box']:.3f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
