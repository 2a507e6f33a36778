"""Learning outcomes after the SAME number of env steps, in one command:

    .venv/bin/python -m benchmarks.online_learning [--env toy|pushcube|pickcube] [--env-steps N] [--seeds 0,1] [--quick]
        [--runs env_dense,lrm_reward,lrm_refine,env_refine]

(a) PPO from scratch on the compact-LRM reward from the reward-worker pool (``train.mode=vlm-score``, scorer
    ``compact_lrm``, (previous, current) frame pairs, progress as a potential + completion) vs PPO from scratch
    on the env's dense reward (``train.mode=env``, ``env.reward_mode=dense``): greedy ground-truth success of each
    and the ratio LRM / env (goal >= 0.9);
(b) the BC base policy vs the LRM-refined policy (``train.mode=lrm``: BC from the demos, then PPO on the same
    compact-LRM pool rewards for the same env steps), and vs the same BC base refined by PPO on the env's dense
    reward (``lrm_refine.reward=env``: the ground-truth control of the refinement; ratio LRM / env, goal >= 0.9).

Stages, each the project's own entry point on ``configs/demo.yaml`` plus overrides (``vlmrl.system.cli.main``):

1. demos: ``vlmrl record-demos`` (PushCube, PickCube; ``--record num_near_miss=16 num_retreat=8`` adds hard
   negatives and off-pose successes to demo.yaml's counts). ToyReach has no ``record-demos`` (that command drives ManiSkill) and
   ``envs/toy_reach_dataset.py`` keeps no frames, so for ToyReach this script records the same three sources
   (scripted demo / noisy demo / random, same policies as ``toy_reach_dataset``) with frames from
   ``ToyReachEnv`` itself (``frame_stride=1``) into the project's episode format;
2. ``vlmrl lrm-train``: the compact LRM on those episodes (``--lrm-train KEY=VALUE`` overrides its training, e.g.
   ``failed_progress_scale=0``);
3. per seed: ``vlmrl train`` once per run of ``--runs`` (env / vlm-score / lrm / lrm with env reward), each ``iterations x train_batch_size`` env steps
   (OnlineTrainer; the reward pool is started by the job), final checkpoint saved;
4. evaluation: ``learner/online/lrm_refine.py``'s greedy evaluation (``greedy_success_rate`` on ``make_eval_env``,
   episode i uses ``eval_seed + i``, the same seeds for every policy) of each run's final RLModule; the BC base
   policy's number is the lrm run's ``base_eval.json`` (same function, same seeds, same episode count).

Everything goes under ``--out`` (default ``runs/bench_online_learning/<env>``); results in ``results.json`` there.
On ToyReach the LRM is trained on toy frames (a test env: the number says whether the pipeline *learns*, not
what a VLM reward achieves on a real task). PushCube (~30-40 env steps/s with rendering on this CPU) needs a
long or GPU run: from-scratch PPO there needs far more env steps than fit in minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.record import add_record_args, record_from_args, val  # noqa: E402

TOY_SOURCES = {"demo": 24, "noisy_demo": 12, "random": 8}

PRESETS = {
    # env-specific overrides of configs/demo.yaml (shared by every stage)
    "toy": dict(
        env=["env.task=ToyReach-v0", "env.frame_size=32", "env.frame_stride=2", "env.max_episode_steps=50"],
        lrm=["lrm_train.image_size=32", "lrm_train.widths=[16,32]", "lrm_train.embed_dim=64", "lrm_train.epochs=15",
             "lrm_train.max_minutes=2.0", "lrm_train.augment_shift_px=2"],
        train=["train.train_batch_size=1000", "train.rollout_fragment_length=250", "train.minibatch_size=250",
               "train.num_epochs=6", "train.gamma=0.95", "train.hidden=[64,64]"],
        # a deliberately weak BC base (8 demos, 40 epochs): 24 demos x 200 epochs already solve ToyReach (1.00),
        # which would leave refinement nothing to show
        bc=["lrm_refine.max_demo_episodes=8", "lrm_refine.bc_epochs=40"],
        env_steps=20000, quick_steps=2000, eval_episodes=30,
        runs=["env_dense", "lrm_reward", "lrm_refine", "env_refine"],
    ),
    "pushcube": dict(
        env=["env.task=PushCube-v1", "env.frame_size=64", "env.frame_stride=4"],
        lrm=[],  # demo.yaml's compact LRM (64 px)
        train=["train.train_batch_size=2000", "train.rollout_fragment_length=500", "train.minibatch_size=250",
               "train.num_epochs=8", "train.gamma=0.8", "train.hidden=[128,128]"],
        # a weak BC base (4 of the 16 demos): demo.yaml's 16 demos x 200 epochs already give ~0.9 greedy success
        bc=["lrm_refine.max_demo_episodes=4"],
        env_steps=200_000, quick_steps=1600, eval_episodes=20,
        runs=["env_dense", "lrm_reward", "lrm_refine", "env_refine"],
    ),
}


# PickCube-v1: the PushCube settings on another task (its own demos and compact LRM). BC needs more demos here:
# greedy success of BC from 16 / 32 / 50 / 100 scripted demos 0.00 / 0.15 / 0.75 / 1.00 (RESULTS.md, session 8), so
# 50 demos are recorded (the LRM sees all) and the weak base clones 32.
# PickCube's success needs the arm static with the cube at the goal, which exploration noise of demo.yaml's std 0.08
# rarely allows (a 0.75 BC base: 0.05 success with that noise, 0.50 with std 0.03; benchmarks/exploration_noise.py), so
# the refinements explore with std 0.03 (refine_log_std=-3.5; at 0.08 PPO on the dense reward lost that base: 0.00).
# demo.yaml's frame camera (chosen for PushCube) shows the lifted cube at the frame's top edge, so PickCube's frames
# come from a view of the cube and goal above the table (RESULTS.md, sessions 10-11; runs before session 11 used
# demo.yaml's view: to reuse their data with --skip-data, add --env-set 'env.camera_look_at=[0.6,0,0.35,0.05,0,0]').
PRESETS["pickcube"] = dict(PRESETS["pushcube"], env=["env.task=PickCube-v1", "env.frame_size=64", "env.frame_stride=4",
                                                     "env.camera_look_at=[0.6,0,0.45,0.0,0,0.12]", "env.camera_fov=1.0"],
                           record=["num_demo=50"], bc=["lrm_refine.max_demo_episodes=32"],
                           run=["lrm_refine.refine_log_std=-3.5"])


def cli(argv: List[str]) -> float:
    """Run ``vlmrl <argv>`` in-process (the project's CLI); raises on a non-zero exit code; returns seconds."""
    from vlmrl.system.cli import main

    print(f"[bench] vlmrl {' '.join(argv)}", flush=True)
    t0 = time.monotonic()
    rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"vlmrl {argv[0]} exited with {rc}")
    return time.monotonic() - t0


def record_toy_demos(root: Path, frame_size: int, max_steps: int) -> None:
    """ToyReach episodes WITH frames (every step) from the sources of envs/toy_reach_dataset.py."""
    import numpy as np

    from vlmrl.envs import info_keys as K
    from vlmrl.envs.dataset import Episode, EpisodeWriter
    from vlmrl.envs.toy_reach_dataset import TOY_TEXTS
    from vlmrl.envs.toy_reach_dataset import _action as toy_action
    from vlmrl.envs.toy_reach_env import TOY_TASK, ToyReachEnv

    writer = EpisodeWriter(root)
    seen = TOY_TEXTS["seen"]
    i = 0
    for source, n in TOY_SOURCES.items():
        for _ in range(n):
            seed, text = 1000 + i, seen[i % len(seen)]
            i += 1
            env = ToyReachEnv({"task_text": text, "capture_frames": True, "frame_size": frame_size, "frame_stride": 1,
                               "max_episode_steps": max_steps, "reward_mode": "dense"})
            rng = np.random.default_rng(seed + 7)
            obs, info = env.reset(seed=seed)
            states, actions, rewards, success = [obs], [], [], [bool(info[K.SUCCESS])]
            frames, fsteps = [info[K.FRAME]], [0]
            done = False
            while not done:
                a = toy_action(source, obs, rng, 0.8)
                obs, r, term, trunc, info = env.step(a)
                states.append(obs)
                actions.append(a)
                rewards.append(r)
                success.append(bool(info[K.SUCCESS]))
                if info[K.HAS_FRAME]:
                    frames.append(info[K.FRAME])
                    fsteps.append(int(info[K.FRAME_STEP]))
                done = term or trunc
            writer.write(Episode(task=text, env_id=TOY_TASK, frames=np.stack(frames), frame_steps=np.asarray(fsteps, np.int32),
                                 states=np.asarray(states, np.float32), actions=np.asarray(actions, np.float32),
                                 rewards=np.asarray(rewards, np.float32), success=np.asarray(success), source=source,
                                 seed=seed).validate())


def evaluate_checkpoint(cfg_overrides: List[str], run_dir: Path, episodes: int, config: str = "demo") -> float:
    """Greedy ground-truth success of a run's final RLModule (lrm_refine's evaluation, lrm_refine.eval_seed...);
    the run's config is ``config`` (a configs/ name) + ``cfg_overrides``."""
    from vlmrl.learner.online.lrm_refine import final_policy, greedy_success_rate, make_eval_env
    from vlmrl.system.config import load_config

    cfg = load_config(config, cfg_overrides)
    module = final_policy(run_dir)
    env = make_eval_env(cfg)
    try:
        return greedy_success_rate(module, env, episodes, int(cfg.lrm_refine.eval_seed))
    finally:
        env.close()


def train_success(run_dir: Path, last: int = 2) -> float:
    """Mean ground-truth success of the (stochastic) training episodes over the run's last ``last`` iterations."""
    from vlmrl.learner.online.train_metrics import read_scalars

    values = read_scalars(run_dir).get("charts/gt_success_rate", [])
    return statistics.mean(v for _, v in values[-last:]) if values else float("nan")


BLOCK_STEPS = 20_000
"""The learning curves are summarised per block of this many env steps (5 blocks in a 100k-step run)."""


def by_block(scalars: Dict[str, list], tag: str, block_steps: int = BLOCK_STEPS) -> List[float]:
    """Mean of a TensorBoard scalar per ``block_steps`` env steps (a value logged at step s belongs to block
    (s - 1) // block_steps), in block order; [] when the run never logged ``tag``."""
    blocks: Dict[int, List[float]] = {}
    for step, v in scalars.get(tag, []):
        blocks.setdefault(max(0, int(step) - 1) // block_steps, []).append(float(v))
    return [statistics.mean(blocks[k]) for k in sorted(blocks)]


def curve_summary(run_dir: Path) -> Dict[str, object]:
    """A finished run's curves by 20k-step block: ground-truth success of the training episodes and, for runs on
    a served reward, corr(served score, env dense) of the iteration's frames (``min`` = its worst iteration):
    the numbers RESULTS.md reports beside greedy success."""
    from vlmrl.learner.online.train_metrics import read_scalars

    sc = read_scalars(run_dir)
    out: Dict[str, object] = {"train_success_by_20k_block": by_block(sc, "charts/gt_success_rate")}
    corr = [v for _, v in sc.get("reward/pearson_frame_score_vs_dense", [])]
    if corr:
        out["pearson_score_vs_dense_by_20k_block"] = by_block(sc, "reward/pearson_frame_score_vs_dense")
        out["pearson_score_vs_dense_min"] = min(corr)
    return out


TRAIN_EPISODES = "_train_episodes"
COLUMN_TITLES = {"env_dense": "PPO on env dense reward", "lrm_reward": "PPO on compact-LRM reward",
                 "bc_base": "BC base", "lrm_refine": "BC + PPO on LRM reward", "env_refine": "BC + PPO on env dense reward"}


def ratio(mean: Dict[str, float], a: str, b: str) -> float:
    return mean[a] / mean[b] if mean[b] > 0 else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", choices=sorted(PRESETS), default="toy")
    p.add_argument("--env-steps", type=int, default=None, help="env steps per PPO run (rounded up to whole iterations)")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--quick", action="store_true", help="a tiny budget: plumbing check, not a result")
    p.add_argument("--workers", type=int, default=1, help="compact-LRM reward workers")
    p.add_argument("--eval-episodes", type=int, default=None)
    p.add_argument("--runs", default=None,
                   help="comma-separated subset of env_dense,lrm_reward,lrm_refine,env_refine (default: the preset's)")
    p.add_argument("--bc-demos", type=int, default=None,
                   help="demos the BC base clones (lrm_refine.max_demo_episodes; default: the preset's; 0 = all)")
    p.add_argument("--record", nargs="+", default=[], metavar="KEY=N",
                   help="ManiSkill presets: episode counts of the LRM's data (default: demo.yaml's demo / noisy / random, "
                        "then the preset's own (PickCube: 50 demos), no retreat or near-miss episodes), as record_demos "
                        "keys, e.g. --record num_noisy=8 num_random=24 num_near_miss=16 num_retreat=8, and "
                        "stop_after_success_steps=N (steps a demo goes on after success; BC still cuts at success)")
    p.add_argument("--lrm-train", nargs="+", default=[], metavar="KEY=VALUE",
                   help="lrm_train overrides for the compact LRM this benchmark trains, on top of the preset's, e.g. "
                        "--lrm-train failed_progress_scale=0")
    p.add_argument("--env-set", nargs="+", default=[], metavar="env.KEY=VALUE",
                   help="env overrides for every stage (demos, LRM, runs, evaluation), e.g. --env-set "
                        "'env.camera_look_at=[0.25,0,0.55,0.08,0,0]' env.camera_fov=1.0; give the same with --skip-data")
    p.add_argument("--run-set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides for every PPO run and its evaluation (not the demos or the LRM), after the "
                        "preset's (PickCube: lrm_refine.refine_log_std=-3.5), e.g. --run-set lrm_refine.refine_log_std=-2.5 "
                        "lrm_refine.critic_warmup_iters=2")
    p.add_argument("--run-on-success", action="store_true",
                   help="env.end_on_success=false for every run: episodes run to the time limit after success (training "
                        "and evaluation; success is then judged at the last step)")
    p.add_argument("--out", default=None)
    p.add_argument("--skip-data", action="store_true", help="reuse <out>/demos and <out>/lrm from a previous run")
    p.add_argument("--summarize-only", action="store_true",
                   help="no data, LRM or PPO runs: evaluate the runs already in <out> (same seeds/budget flags)")
    add_record_args(p, "result file name (default: online_<env>_<scratch|refine|all>[_bc<N>][_quick], from --runs "
                       "and --bc-demos)")
    args = p.parse_args(argv)
    if args.record and args.env == "toy":
        p.error("--record is for the ManiSkill presets (ToyReach records its fixed TOY_SOURCES mix)")
    record_keys = ("num_demo", "num_noisy", "num_random", "num_retreat", "num_near_miss", "stop_after_success_steps")
    for item in args.record:
        key, _, value = item.partition("=")
        if key not in record_keys or not value.isdigit():
            p.error(f"--record wants KEY=N with KEY one of {record_keys}; got {item!r}")
    if any("=" not in item for item in args.lrm_train):
        p.error(f"--lrm-train wants KEY=VALUE items (lrm_train keys); got {args.lrm_train}")
    if any(not item.startswith("env.") or "=" not in item for item in args.env_set):
        p.error(f"--env-set wants env.KEY=VALUE items; got {args.env_set}")
    if any("=" not in item or item.split("=")[0].split(".")[0] in ("record_demos", "lrm_train") for item in args.run_set):
        p.error(f"--run-set wants KEY=VALUE items for the PPO runs (demos: --record, LRM: --lrm-train); got {args.run_set}")
    if (args.lrm_train or args.record) and (args.skip_data or args.summarize_only):
        p.error("--lrm-train / --record shape the data and LRM that --skip-data / --summarize-only reuse")
    pre = PRESETS[args.env]
    steps = args.env_steps or (pre["quick_steps"] if args.quick else pre["env_steps"])
    episodes = args.eval_episodes or (5 if args.quick else pre["eval_episodes"])
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out = Path(args.out or f"runs/bench_online_learning/{args.env}").resolve()
    demos, lrm_dir = out / "demos", out / "lrm"
    batch = int(next(o for o in pre["train"] if o.startswith("train.train_batch_size=")).split("=")[1])
    iterations = max(1, math.ceil(steps / batch))
    common = [f"output_dir={out}", *pre["env"], "train.num_env_runners=0", "train.checkpoint_every=0",
              "train.image_every=0", f"pool.num_workers={args.workers}", "pool.num_cpus_per_worker=0.5",
              f"lrm_refine.demos={demos}", f"lrm_refine.eval_episodes={episodes}",
              f"env.end_on_success={str(not args.run_on_success).lower()}",  # explicit: demo.yaml runs on
              *args.env_set]
    timings: Dict[str, float] = {}
    t_all = time.monotonic()

    if not (args.skip_data or args.summarize_only):
        for d in (demos, lrm_dir):
            if d.exists():
                shutil.rmtree(d)
        t0 = time.monotonic()
        if args.env == "toy":
            record_toy_demos(demos, frame_size=32, max_steps=50)
            print(f"[bench] recorded {sum(TOY_SOURCES.values())} ToyReach episodes with frames in {demos}", flush=True)
        else:
            n = ["record_demos.num_demo=4", "record_demos.num_noisy=2", "record_demos.num_random=1"] if args.quick else []
            n += ["record_demos.num_retreat=0", "record_demos.num_near_miss=0"]  # demo.yaml's are for PushCube
            n += [f"record_demos.{item}" for item in [*pre.get("record", []), *args.record]]  # --record wins
            cli(["record-demos", "demo", *common, f"record_demos.output_dir={demos}", *n])
        timings["demos"] = time.monotonic() - t0
        quick_lrm = ["lrm_train.epochs=2", "lrm_train.max_minutes=0.5"] if args.quick else []
        timings["lrm_train"] = cli(["lrm-train", "demo", *common, f"lrm_train.dataset_dirs=[{demos}]",
                                    f"lrm_train.out_dir={lrm_dir}", *pre["lrm"], *quick_lrm,
                                    *[f"lrm_train.{item}" for item in args.lrm_train]])

    lrm_reward = ["scorer.name=compact_lrm", f"scorer.params.weights_dir={lrm_dir}"]  # demo.yaml: pair, progress+completion
    bc = pre["bc"] if args.bc_demos is None else [*pre["bc"], f"lrm_refine.max_demo_episodes={args.bc_demos}"]
    no_frames = ["env.capture_frames=false"]  # env-reward runs need no frames: they step at state-only speed
    all_modes = {
        "env_dense": ["train.mode=env", "env.reward_mode=dense", "train.lr=0.0003", *no_frames],
        "lrm_reward": ["train.mode=vlm-score", "env.reward_mode=none", "train.lr=0.0003", *lrm_reward],
        # demo.yaml: lr 1e-4, free log std; the same BC base (same demos, epochs, seed) for both refinements
        "lrm_refine": ["train.mode=lrm", "env.reward_mode=none", *lrm_reward, *bc],
        "env_refine": ["train.mode=lrm", "lrm_refine.reward=env", "env.reward_mode=dense", *no_frames, *bc],
    }
    runs = [r.strip() for r in (args.runs or ",".join(pre["runs"])).split(",") if r.strip()]
    unknown = sorted(set(runs) - set(all_modes))
    if unknown:
        p.error(f"--runs: unknown {unknown}; choose from {sorted(all_modes)}")
    modes = {k: v for k, v in all_modes.items() if k in runs}
    per_seed: Dict[int, Dict[str, float]] = {}
    curves: Dict[int, Dict[str, Dict[str, object]]] = {}
    for seed in seeds:
        row: Dict[str, float] = {}
        for name, mode_over in modes.items():
            run_name = f"{name}_s{seed}"
            run_dir = out / run_name
            over = [*common, *pre["train"], f"train.iterations={iterations}", f"seed={seed}", f"run_name={run_name}",
                    *mode_over, *pre.get("run", []), *args.run_set]
            if not args.summarize_only:
                if run_dir.exists():
                    shutil.rmtree(run_dir)
                timings[run_name] = cli(["train", "demo", *over])
            row[name] = evaluate_checkpoint(over, run_dir, episodes)
            row[name + TRAIN_EPISODES] = train_success(run_dir)
            if name.endswith("_refine"):
                row["bc_base"] = float(json.loads((run_dir / "base_eval.json").read_text())["success_base"])
            curve = curves.setdefault(seed, {})[name] = curve_summary(run_dir)
            corr = curve.get("pearson_score_vs_dense_by_20k_block")
            print(f"[bench] seed {seed} {name}: greedy success {row[name]:.3f}, training episodes (stochastic, last 2 "
                  f"iterations) {row[name + TRAIN_EPISODES]:.3f}, by 20k-step block "
                  f"{' / '.join(f'{x:.3f}' for x in curve['train_success_by_20k_block'])}"
                  + (f"; corr(score, dense) by block {' / '.join(f'{x:.2f}' for x in corr)} "
                     f"(min {curve['pearson_score_vs_dense_min']:.2f})" if corr else "")
                  + (f" ({timings[run_name]:.0f}s)" if run_name in timings else ""), flush=True)
        per_seed[seed] = row

    columns = [c for c in ("env_dense", "lrm_reward", "bc_base", "lrm_refine", "env_refine") if c in per_seed[seeds[0]]]
    keys = [k for k in per_seed[seeds[0]]]
    mean = {k: statistics.mean(r[k] for r in per_seed.values()) for k in keys}
    ratios = {f"{a}/{b}": ratio(mean, a, b) for a, b in (("lrm_reward", "env_dense"), ("lrm_refine", "env_refine"))
              if a in mean and b in mean}
    ratios.update({f"{a}/{b}{TRAIN_EPISODES}": ratio(mean, a + TRAIN_EPISODES, b + TRAIN_EPISODES)
                   for a, b in (("lrm_reward", "env_dense"), ("lrm_refine", "env_refine")) if a in mean and b in mean})
    result = {"env": args.env, "env_steps_per_run": iterations * batch, "iterations": iterations, "train_batch": batch,
              "eval_episodes": episodes, "seeds": seeds, "quick": args.quick, "runs": runs, "per_seed": per_seed,
              "mean": mean, "ratios": ratios, "curves": curves, "timings_s": timings, "total_s": time.monotonic() - t_all}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    print(f"\n[bench] {args.env}: {iterations} iterations x {batch} = {iterations * batch} env steps per run, greedy "
          f"success over {episodes} fixed-seed episodes (in brackets: stochastic training episodes, last 2 iterations)")
    print("| seed | " + " | ".join(COLUMN_TITLES[c] for c in columns) + " |")
    for s_, r in [*per_seed.items(), ("mean", mean)]:
        cells = [f"{r[c]:.3f}" + (f" ({r[c + TRAIN_EPISODES]:.2f})" if c + TRAIN_EPISODES in r else "") for c in columns]
        print(f"| {s_} | " + " | ".join(cells) + " |")
    print(f"[bench] success ratios (goal >= 0.9): " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
          + (f"; BC base {mean['bc_base']:.3f}" if "bc_base" in mean else "")
          + f"; total {result['total_s']:.0f}s; {out / 'results.json'}", flush=True)
    record_online(args, result, argv)
    return 0


def record_online(args, result: dict, argv) -> None:
    """The headline numbers (mean greedy / training-episode success per run kind, the ratios) as a result file."""
    kinds = set(result["runs"])
    kind = ("scratch" if kinds <= {"env_dense", "lrm_reward"} else
            "refine" if kinds <= {"lrm_refine", "env_refine"} else "all")
    values = {}
    for k, v in result["mean"].items():
        base = k[:-len(TRAIN_EPISODES)] if k.endswith(TRAIN_EPISODES) else k
        what = "stochastic training episodes, last 2 iterations" if k != base else "greedy, fixed eval seeds"
        values[f"{k}_success"] = val(v, unit="success rate", note=f"{COLUMN_TITLES.get(base, base)}; {what}; "
                                                                  f"mean over seeds")
    for k, v in result["ratios"].items():
        values[f"ratio_{k.replace('/', '_over_')}"] = val(v, goal=">= 0.9", unit="ratio")
    bc = f"_bc{args.bc_demos}" if kind != "scratch" and args.bc_demos else ""  # the base's demo count names the row
    record_from_args(args, f"online_{args.env}_{kind}{bc}" + ("_quick" if args.quick else ""), values,
                     seeds=result["seeds"],
                     notes=f"{result['env_steps_per_run']} env steps per run, {result['eval_episodes']} greedy eval "
                           f"episodes per policy; one episode = {1 / result['eval_episodes']:.3f}; runs {result['runs']}",
                     argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
