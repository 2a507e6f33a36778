"""The preference mode (RL-VLM-F) on PushCube from scratch vs PPO on the env's dense reward, same env steps:

    .venv/bin/python -m benchmarks.preference_learning --conditions oracle,oracle_eps0.1,ai,env_dense --seeds 3,4,5 \
        [--env-steps 100000] [--lrm-dir DIR] [--out runs/bench_preference] [--summarize-only]

Each run is ``vlmrl train train_pushcube_preference`` (configs/train_pushcube_preference.yaml: the env, camera and PPO
settings of ``benchmarks/online_learning.py --env pushcube --run-on-success``, whose session-15 env-dense runs are the
baseline for seeds 3-6) with one condition's overrides:

* ``oracle``: the ground-truth oracle labeller (success first, then the env's normalised dense reward carried with
  the frames), label-error rate 0; ``oracle_eps0.1``: 10% of its labels flipped (any ``oracle_epsN``);
* ``ai``: the compact LRM's pair answer (``compact_lrm`` scorer, ``label`` from its contrastive output) served by a
  labeller pool (``--lrm-dir``: a ``vlmrl lrm-train`` folder, e.g. online_learning's ``<out>/lrm``);
* ``env_dense``: PPO on the env's dense reward with the same settings (no frames, no reward workers).

Per run, after training: greedy ground-truth success on ``lrm_refine.eval_episodes`` fixed-seed episodes
(online_learning's evaluation), success of the training episodes (last 2 iterations, and per 20k-step block),
labels asked and kept, BT held-out accuracy, the labels' agreement with the oracle, the correlation of the
served reward with the dense reward over training (``reward/pearson_frame_score_vs_dense``), wall time. Each run
writes ``<out>/<condition>_s<seed>/bench_result.json``; the summary (``<out>/results.json`` and a markdown table)
covers every run found there, so conditions and seeds can run in separate processes.
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
from typing import Dict, List, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.online_learning import cli, evaluate_checkpoint, train_success  # noqa: E402

CONFIG = "train_pushcube_preference"
BATCH = 2000
BLOCK_STEPS = 20_000
RESULT = "bench_result.json"


def condition_overrides(name: str, lrm_dir: Optional[str]) -> List[str]:
    """Config overrides of one condition (see module doc)."""
    if name == "env_dense":
        return ["train.mode=env", "env.reward_mode=dense", "env.capture_frames=false"]
    if name == "oracle" or name.startswith("oracle_eps"):
        eps = float(name[len("oracle_eps"):]) if name != "oracle" else 0.0
        return ["preference.labeller=oracle", f"preference.oracle_epsilon={eps}"]
    if name == "ai":
        if not lrm_dir:
            raise SystemExit("--conditions ai needs --lrm-dir (a trained compact LRM folder)")
        return ["preference.labeller=pool", "preference.labeller_scorer.name=compact_lrm",
                f"preference.labeller_scorer.params.weights_dir={Path(lrm_dir).resolve()}"]
    raise SystemExit(f"unknown condition {name!r}: oracle, oracle_eps<E>, ai, env_dense")


def series(scalars: Dict[str, list], tag: str) -> List[float]:
    return [v for _, v in scalars.get(tag, [])]


def run_metrics(run_dir: Path) -> Dict[str, object]:
    """What a finished run's TensorBoard scalars say (training success, labels, BT accuracy, correlations)."""
    from vlmrl.learner.train_metrics import read_scalars

    sc = read_scalars(run_dir)
    succ = sc.get("charts/gt_success_rate", [])
    blocks: Dict[int, List[float]] = {}
    for step, v in succ:
        blocks.setdefault(max(0, (int(step) - 1)) // BLOCK_STEPS, []).append(v)
    out: Dict[str, object] = {"train_success_last2": train_success(run_dir),
                              "train_success_by_20k_block": [statistics.mean(blocks[k]) for k in sorted(blocks)]}
    last = {tag: vals[-1] for tag in sc if (vals := series(sc, tag))}
    for key, tag in (("labels_asked", "preference/labels_asked_total"), ("labels_kept", "preference/labels_total"),
                     ("label_failures", "preference/label_failures_total"),
                     ("bt_heldout_acc", "preference/bt_heldout_acc"),
                     ("heldout_pearson_reward_vs_dense", "preference/heldout_pearson_reward_vs_dense"),
                     ("label_agreement_oracle", "preference/label_agreement_oracle_total"),
                     ("reward_model_updates", "preference/reward_model_updates"),
                     ("all_none_batches", "preference/all_none_batches")):
        if tag in last:
            out[key] = last[tag]
    corr = series(sc, "reward/pearson_frame_score_vs_dense")
    if corr:
        out["pearson_reward_vs_dense_by_iteration"] = corr
        out["pearson_reward_vs_dense_mean"] = statistics.mean(corr)
        out["pearson_reward_vs_dense_last10"] = statistics.mean(corr[-10:])
    acc = series(sc, "preference/bt_heldout_acc")
    if acc:
        out["bt_heldout_acc_by_update"] = acc
    return out


def run_one(name: str, seed: int, iterations: int, out: Path, lrm_dir: Optional[str], extra: List[str]) -> Dict:
    run_name = f"{name}_s{seed}"
    run_dir = out / run_name
    over = [f"output_dir={out}", f"run_name={run_name}", f"seed={seed}", f"train.iterations={iterations}",
            *condition_overrides(name, lrm_dir), *extra]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    wall = cli(["train", CONFIG, *over])
    episodes = None
    from vlmrl.system.config import load_config

    episodes = int(load_config(CONFIG, over).lrm_refine.eval_episodes)
    res = {"condition": name, "seed": seed, "env_steps": iterations * BATCH, "iterations": iterations,
           "overrides": over, "wall_s": wall, "eval_episodes": episodes,
           "greedy_success": evaluate_checkpoint(over, run_dir, episodes, config=CONFIG), **run_metrics(run_dir)}
    (run_dir / RESULT).write_text(json.dumps(res, indent=1))
    print(f"[bench] {run_name}: greedy success {res['greedy_success']:.3f}, training (last 2 it.) "
          f"{res['train_success_last2']:.3f}, labels asked {res.get('labels_asked', '-')}, BT held-out acc "
          f"{res.get('bt_heldout_acc', '-')}, {wall:.0f}s", flush=True)
    return res


def summarize(out: Path) -> Dict:
    rows = [json.loads(f.read_text()) for f in sorted(out.glob(f"*/{RESULT}"))]
    by_cond: Dict[str, List[dict]] = {}
    for r in rows:
        by_cond.setdefault(r["condition"], []).append(r)
    keys = ("greedy_success", "train_success_last2", "labels_asked", "bt_heldout_acc", "label_agreement_oracle",
            "pearson_reward_vs_dense_mean", "wall_s")
    summary = {}
    for cond, rs in sorted(by_cond.items()):
        m = {"seeds": sorted(r["seed"] for r in rs)}
        for k in keys:
            vals = [float(r[k]) for r in rs if k in r and r[k] is not None and not math.isnan(float(r[k]))]
            if vals:
                m[k] = statistics.mean(vals)
        m["last_block"] = statistics.mean(r["train_success_by_20k_block"][-1] for r in rs)
        summary[cond] = m
    result = {"runs": rows, "mean": summary}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    print("| condition | seeds | greedy | training, last 2 it. | last 20k block | labels asked | BT held-out acc | "
          "agreement w/ oracle | corr(r, dense) | wall s |")
    for cond, m in summary.items():
        def f(k, fmt=".3f"):
            return format(m[k], fmt) if k in m else "-"
        print(f"| {cond} | {','.join(map(str, m['seeds']))} | {f('greedy_success')} | {f('train_success_last2')} | "
              f"{f('last_block')} | {f('labels_asked', '.0f')} | {f('bt_heldout_acc')} | "
              f"{f('label_agreement_oracle')} | {f('pearson_reward_vs_dense_mean', '.2f')} | {f('wall_s', '.0f')} |")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conditions", default="oracle,oracle_eps0.1,ai,env_dense")
    p.add_argument("--seeds", default="3,4,5")
    p.add_argument("--env-steps", type=int, default=100_000, help="per run, rounded up to whole 2000-step iterations")
    p.add_argument("--lrm-dir", default=None, help="compact LRM folder for the ai condition")
    p.add_argument("--out", default="runs/bench_preference")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="extra overrides for every run")
    p.add_argument("--summarize-only", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.summarize_only:
        iterations = max(1, math.ceil(args.env_steps / BATCH))
        for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
            for cond in [c.strip() for c in args.conditions.split(",") if c.strip()]:
                run_one(cond, seed, iterations, out, args.lrm_dir, args.set)
    summarize(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
