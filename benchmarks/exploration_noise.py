"""How much of a policy's success survives PPO's exploration noise? One saved policy, Gaussian action noise:

    .venv/bin/python -m benchmarks.exploration_noise RUN_DIR [--module PATH] [--std 0,0.03,0.08] [--episodes 20]

``RUN_DIR``: a ``vlmrl train`` run; its ``config.yaml`` gives the env (without frames, episodes to the time limit
as the run had them), its last checkpoint the policy, or ``--module`` a saved RLModule instead (e.g. the run's
``bc_module_refine_init``, the BC base as PPO starts from it). Episode i starts from seed ``lrm_refine.eval_seed +
i`` (the benchmarks' greedy evaluation); each action is the policy's mean plus ``std * N(0, 1)`` per dimension,
clipped to the action space: what PPO's training episodes do with a diagonal Gaussian of that std.

Printed per std: success at the end of the episode, the share of episodes in success at some step (reached the goal;
the gap to the first column is episodes that got there and did not stay), steps in ground-truth success per episode,
and the return of the env's normalized dense reward. On PickCube-v1 success needs the arm static (joint speed < 0.2)
with the cube at the goal, which noise of the refinement's std rarely allows: the reason PPO on the env's dense
reward pulls a good BC base off the task at std 0.08 (RESULTS.md, session 9). Greedy (std 0), "at some step" vs "at
the end" shows a refined policy that reaches the goal and does not stay (session 10). ``--per-episode`` adds a
line per std of each episode's success at the end (``1`` / ``.``): which start placements a policy solves, to set
a refined policy beside its base (session 13). ``--by-start-x -0.04`` splits each std's success by where the task's
object starts (its x, in bins cut at the given edges; ManiSkill tasks with a scripted controller): a PushCube BC base
from 8 demos fails mostly on cubes that start near the robot, where 1 of its 8 demos starts (session 14).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from benchmarks.record import add_record_args, record_from_args, topic_part, val

os.environ.setdefault("OMP_NUM_THREADS", "1")


def noisy_episode(module, env, seed: int, std: float, rng: np.random.Generator):
    """(success at the end, steps in success, dense return) of one episode with the mean action + std noise."""
    from vlmrl.envs import info_keys as K
    from vlmrl.learner.online.lrm_refine import greedy_episode

    _, *steps = greedy_episode(module, env, seed, noise_std=std, rng=rng)
    return (bool(steps[-1][K.SUCCESS]), sum(int(bool(i[K.SUCCESS])) for i in steps),
            sum(float(i[K.ENV_REWARD]) for i in steps))


def object_start_x(env, task: str, seed: int) -> float:
    """x of the task's object after ``env.reset(seed=seed)`` (the start placement an episode from that seed has)."""
    from vlmrl.envs.scripted import scripted_controller
    from vlmrl.envs.tasks import get_task

    env.reset(seed=int(seed))
    return float(scripted_controller(get_task(task).env_id, env).object_and_goal()[0][0])


def split_by_edges(values: np.ndarray, success: np.ndarray, edges: list) -> str:
    """``x < e0: k/n, e0 <= x < e1: ..., x >= e_last: ...``: success counts of episodes binned by ``values``."""
    bins = np.digitize(values, edges)
    names = ([f"x < {edges[0]:g}"] + [f"{a:g} <= x < {b:g}" for a, b in zip(edges, edges[1:])]
             + [f"x >= {edges[-1]:g}"])
    return ", ".join(f"{name}: {int(success[bins == i].sum())}/{int((bins == i).sum())}" for i, name in enumerate(names))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--module", default=None, help="a saved RLModule to use instead of the run's last checkpoint")
    p.add_argument("--std", default="0,0.03,0.08", help="comma-separated noise stds (0 = greedy)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--per-episode", action="store_true", help="also print each episode's success at the end")
    p.add_argument("--by-start-x", default=None, metavar="EDGES",
                   help="comma-separated x edges (m): also print success by the task object's start x in those bins")
    add_record_args(p, "result file name (default: exploration_noise_<run folder's parent>_<run folder>[_<module>])")
    args = p.parse_args(argv)
    try:
        stds = [float(s) for s in args.std.split(",") if s.strip()]
    except ValueError:
        p.error(f"--std wants comma-separated numbers, got {args.std!r}")
    if not stds or min(stds) < 0:
        p.error(f"--std wants stds >= 0, got {args.std!r}")
    try:
        edges = sorted(float(e) for e in args.by_start_x.split(",") if e.strip()) if args.by_start_x else []
    except ValueError:
        p.error(f"--by-start-x wants comma-separated numbers, got {args.by_start_x!r}")

    from omegaconf import OmegaConf
    from ray.rllib.core.rl_module.rl_module import RLModule

    from vlmrl.learner.online.lrm_refine import BC_COMPONENT, make_eval_env
    from vlmrl.learner.run_files import latest_checkpoint

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").exists():
        p.error(f"{run_dir} is not a vlmrl train run (no config.yaml)")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    if edges:  # before the env is built: the object's start pose comes from the task's scripted controller
        from vlmrl.envs.scripted import controller_class
        from vlmrl.envs.tasks import get_task

        try:
            controller_class(get_task(cfg.env.task).env_id)
        except (KeyError, ValueError) as e:
            p.error(f"--by-start-x needs a ManiSkill task with a scripted controller (its object's pose): {e.args[0]}")
    if args.module:
        path = Path(args.module)
    else:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            p.error(f"no checkpoint in {run_dir}; give --module PATH")
        path = Path(ckpt["path"]) / BC_COMPONENT
    module = RLModule.from_checkpoint(str(path.resolve()))
    env = make_eval_env(cfg)
    seed0 = int(cfg.lrm_refine.eval_seed)
    print(f"policy {path}; env {cfg.env.task}, {args.episodes} episodes from seed {seed0}", flush=True)
    print("| noise std | success at the end | success at some step | steps in success per episode | dense return |")
    print("| --- | --- | --- | --- | --- |")
    values = {}
    try:
        start_x = (np.asarray([object_start_x(env, cfg.env.task, seed0 + i) for i in range(args.episodes)])
                   if edges else None)
        for std in stds:
            rng = np.random.default_rng(args.noise_seed)
            rows = np.asarray([noisy_episode(module, env, seed0 + i, std, rng) for i in range(args.episodes)], float)
            print(f"| {std:g} | {rows[:, 0].mean():.2f} | {(rows[:, 1] > 0).mean():.2f} | {rows[:, 1].mean():.1f} | "
                  f"{rows[:, 2].mean():.1f} |", flush=True)
            values[f"success_at_end_std{std:g}"] = val(rows[:, 0].mean(), unit="success rate")
            values[f"success_at_some_step_std{std:g}"] = val((rows[:, 1] > 0).mean(), unit="success rate")
            values[f"steps_in_success_std{std:g}"] = val(rows[:, 1].mean(), unit="steps per episode")
            values[f"dense_return_std{std:g}"] = val(rows[:, 2].mean(), unit="normalized dense return")
            if args.per_episode:
                print(f"per episode, std {std:g}: " + "".join("1" if ok else "." for ok in rows[:, 0] > 0), flush=True)
            if edges:
                print(f"by object start, std {std:g}: {split_by_edges(start_x, rows[:, 0], edges)}", flush=True)
    finally:
        env.close()
    topic = f"exploration_noise_{topic_part(run_dir.resolve().parent.name)}_{topic_part(run_dir.resolve().name)}"
    record_from_args(args, topic + (f"_{topic_part(path.name)}" if args.module else ""), values, seeds=[args.noise_seed],
                     notes=f"policy {path}; env {cfg.env.task}; {args.episodes} episodes from env seed {seed0}; "
                           f"seeds = the noise seed", argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
