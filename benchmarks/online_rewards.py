"""Actor throughput with remote compact-LRM rewards vs the env reward only, measured in one run:

    .venv/bin/python -m benchmarks.online_rewards [--envs toy,maniskill] [--workers 2] [--steps 400]

For each env, the SAME RLlib env runner (PPO's, new API stack, sampling in the driver) steps the env and
renders a frame every ``--stride`` steps in BOTH configurations (the frames are part of the actors' cost;
the env-only run renders them too and drops them):

- ``env reward``: ``train.mode=env``, no reward workers;
- ``remote LRM``: ``train.mode=vlm-score`` with the reward callback (async scoring of (previous, current)
  frame pairs via RewardClient while the episode goes on, rewards written at sample end) and a pool of
  ``--workers`` compact-LRM reward workers (Ray actors with gRPC servers, dynamic batching).

Env steps/s = steps / wall time of ``env_runner.sample(num_timesteps=--steps)`` (incl. waiting for the last
rewards), median of ``--repeats`` calls after one warm-up call. Goal: remote / env-only >= 0.8.
On the toy env the PushCube LRM's rewards mean nothing (only its cost is measured).
The ManiSkill env is PushCube-v1 (CPU sim, lavapipe rendering); the reward workers share this machine's
CPU cores with the actor, so on a 2-core machine the LRM's compute competes with the simulator.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Dict, List

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.record import add_record_args, record_from_args, val  # noqa: E402


def _cfg(env: str, mode: str, args) -> "object":
    from vlmrl.system.config import load_config

    common = [f"train.mode={mode}", "train.num_env_runners=0", f"train.rollout_fragment_length={args.steps}",
              f"train.train_batch_size={args.steps}", f"train.minibatch_size={min(128, args.steps)}",
              f"env.frame_stride={args.stride}", "env.capture_frames=true", f"pool.num_workers={args.workers}",
              "pool.num_cpus_per_worker=0.5", "pool.namespace=vlmrl-bench-online", "pool.registry_name=bench-online"]
    if env == "toy":
        over = ["env.task=ToyReach-v0", "env.frame_size=64", "env.max_episode_steps=50"]
    else:
        over = ["env.task=PushCube-v1", f"env.frame_size={args.frame_size}"]
    over += ["env.reward_mode=dense"] if mode == "env" else [
        "env.reward_mode=none", "scorer.name=compact_lrm", f"scorer.params.weights_dir={args.weights_dir}",
        "scorer.params.num_threads=1", "reward.item_kind=pair", "reward.components={progress: 1.0, completion: 0.5}",
        "reward.potential_components=[progress]", "server.max_batch=32", "server.max_wait_ms=5.0"]
    return load_config("demo", common + over)  # demo.yaml: compact_lrm scorer params, PushCube reward setup


def measure(cfg, steps: int, repeats: int) -> Dict[str, float]:
    """Median env steps/s of ``repeats`` sample calls of ``steps`` env steps (after one warm-up call)."""
    from vlmrl.learner.online.ppo_builder import build_ppo_config

    algo = build_ppo_config(cfg, item_kind="pair" if cfg.train.mode != "env" else None).build_algo()
    try:
        runner = algo.env_runner
        runner.sample(num_timesteps=steps)  # warm-up: renderer start-up, first gRPC channel, first scores
        rates: List[float] = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            eps = runner.sample(num_timesteps=steps)
            wall = time.perf_counter() - t0
            rates.append(sum(len(e) for e in eps) / wall)
        return {"steps_per_s": statistics.median(rates), "min": min(rates), "max": max(rates)}
    finally:
        from vlmrl.actors.reward_callback import close_reward_clients

        close_reward_clients(algo)
        algo.stop()


def run_env(env: str, args) -> Dict[str, Dict[str, float]]:
    from vlmrl.reward_workers.pool import RewardWorkerPool

    out = {"env reward": measure(_cfg(env, "env", args), args.steps, args.repeats)}
    print(f"[{env}] env reward only: {out['env reward']['steps_per_s']:.1f} env steps/s", flush=True)
    cfg = _cfg(env, "vlm-score", args)
    pool = RewardWorkerPool(cfg)
    try:
        pool.start()
        out["remote LRM"] = measure(cfg, args.steps, args.repeats)
        rows = pool.status()
    finally:
        pool.shutdown()
    out["remote LRM"]["mean_batch"] = statistics.mean(float(r.get("mean_batch_size", 0.0)) for r in rows)
    out["ratio"] = {"remote_over_env": out["remote LRM"]["steps_per_s"] / out["env reward"]["steps_per_s"]}
    print(f"[{env}] remote compact LRM ({args.workers} workers): {out['remote LRM']['steps_per_s']:.1f} env steps/s, "
          f"mean worker batch {out['remote LRM']['mean_batch']:.1f}; ratio {out['ratio']['remote_over_env']:.2f} "
          f"(goal >= 0.8)", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", default="toy,maniskill")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=400, help="env steps per sample call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--stride", type=int, default=4, help="frame every this many steps (both configurations)")
    p.add_argument("--frame-size", type=int, default=64)
    p.add_argument("--weights-dir", default="runs/demo/lrm", help="compact LRM weights (vlmrl lrm-train / make demo)")
    p.add_argument("--json", default=None, help="also write the results here")
    add_record_args(p)
    args = p.parse_args(argv)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, namespace="vlmrl-bench-online", log_to_driver=False)
    results = {}
    try:
        for env in [e.strip() for e in args.envs.split(",") if e.strip()]:
            if env not in ("toy", "maniskill"):
                raise SystemExit(f"--envs: unknown env {env!r} (toy, maniskill)")
            results[env] = run_env(env, args)
    finally:
        ray.shutdown()
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    values = {}
    for env, r in results.items():
        values[f"{env}_remote_over_env_ratio"] = val(r["ratio"]["remote_over_env"], goal=">= 0.8", unit="ratio")
        values[f"{env}_env_reward_steps_per_s"] = val(r["env reward"]["steps_per_s"], unit="env steps/s")
        values[f"{env}_remote_lrm_steps_per_s"] = val(r["remote LRM"]["steps_per_s"], unit="env steps/s",
                                                      note=f"{args.workers} compact-LRM workers")
    record_from_args(args, "online_rewards", values,
                     notes=f"frame every {args.stride} steps at {args.frame_size} px in both configurations; median "
                           f"of {args.repeats} x {args.steps} steps; weights {args.weights_dir}", argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
