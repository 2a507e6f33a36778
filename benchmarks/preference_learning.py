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

from benchmarks.online_learning import BLOCK_STEPS, by_block, cli, evaluate_checkpoint, train_success  # noqa: E402

CONFIG = "train_pushcube_preference"
BATCH = 2000
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
    from vlmrl.learner.online.train_metrics import read_scalars

    sc = read_scalars(run_dir)
    out: Dict[str, object] = {"train_success_last2": train_success(run_dir),
                              "train_success_by_20k_block": by_block(sc, "charts/gt_success_rate")}
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


def run_one(name: str, seed: int, iterations: int, out: Path, lrm_dir: Optional[str], extra: List[str],
            tag: str = "") -> Dict:
    """One condition x seed; ``tag`` names a variant of the condition (the ``--set`` overrides it was run with):
    its runs are ``<name>-<tag>_s<seed>`` and summarised as their own condition."""
    name_tag = f"{name}-{tag}" if tag else name
    run_name = f"{name_tag}_s{seed}"
    run_dir = out / run_name
    over = [f"output_dir={out}", f"run_name={run_name}", f"seed={seed}", f"train.iterations={iterations}",
            *condition_overrides(name, lrm_dir), *extra]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    wall = cli(["train", CONFIG, *over])
    episodes = None
    from vlmrl.system.config import load_config

    episodes = int(load_config(CONFIG, over).lrm_refine.eval_episodes)
    res = {"condition": name_tag, "seed": seed, "env_steps": iterations * BATCH, "iterations": iterations,
           "overrides": over, "wall_s": wall, "eval_episodes": episodes,
           "greedy_success": evaluate_checkpoint(over, run_dir, episodes, config=CONFIG), **run_metrics(run_dir)}
    (run_dir / RESULT).write_text(json.dumps(res, indent=1))
    print(f"[bench] {run_name}: greedy success {res['greedy_success']:.3f}, training (last 2 it.) "
          f"{res['train_success_last2']:.3f}, labels asked {res.get('labels_asked', '-')}, BT held-out acc "
          f"{res.get('bt_heldout_acc', '-')}, {wall:.0f}s", flush=True)
    return res


# PPO on the env's dense reward with exactly these env / PPO settings (online_learning.py --env pushcube
# --run-on-success --env-steps 100000 --runs env_dense), benchmarks/RESULTS.md "Online learning outcomes", session 15
# (commit 2fcbfd0): reused as the baseline for the same seeds instead of rerunning it (see the results md).
SESSION15_ENV_DENSE = {
    3: {"greedy_success": 0.05, "train_success_last2": 0.138, "last_block": 0.115, "wall_s": 476,
        "train_success_by_20k_block": [0.048, 0.088, 0.103, 0.128, 0.115]},
    4: {"greedy_success": 0.15, "train_success_last2": 0.125, "last_block": 0.128, "wall_s": 518,
        "train_success_by_20k_block": [0.078, 0.100, 0.103, 0.133, 0.128]},
    5: {"greedy_success": 0.35, "train_success_last2": 0.063, "last_block": 0.160, "wall_s": 391,
        "train_success_by_20k_block": [0.065, 0.130, 0.100, 0.135, 0.160]},
    6: {"greedy_success": 0.20, "train_success_last2": 0.175, "last_block": 0.143, "wall_s": 472,
        "train_success_by_20k_block": [0.050, 0.068, 0.100, 0.130, 0.143]},
}
GOALS = {"oracle": 0.9, "oracle_eps0.1": 0.8, "ai": 0.8}
"""Goal of each condition: success >= goal x PPO on env dense, same env steps (ai: with <= 4000 labels)."""


def baseline(seed: int, rows: Dict[int, dict]) -> Optional[dict]:
    """This benchmark's own env_dense run of ``seed`` if there is one, else session 15's."""
    return rows.get(seed) or SESSION15_ENV_DENSE.get(seed)


def ratios(by_cond: Dict[str, List[dict]]) -> Dict[str, dict]:
    """Per condition: mean of each success measure over its seeds vs env dense over the SAME seeds, and the ratio."""
    own = {r["seed"]: dict(r, last_block=r["train_success_by_20k_block"][-1]) for r in by_cond.get("env_dense", [])}
    out = {}
    for cond, rs in by_cond.items():
        if cond == "env_dense":
            continue
        seeds = sorted(r["seed"] for r in rs if baseline(r["seed"], own) is not None)
        if not seeds:
            continue
        row = {"seeds": seeds, "baseline": "this benchmark" if all(s in own for s in seeds) else
               "session 15 env-dense runs (RESULTS.md) for seeds without an env_dense run here"}
        for k in ("greedy_success", "train_success_last2", "last_block"):
            mine = statistics.mean((r[k] if k != "last_block" else r["train_success_by_20k_block"][-1])
                                   for r in rs if r["seed"] in seeds)
            base = statistics.mean(baseline(s, own)[k] for s in seeds)
            row[k] = {"value": mine, "env_dense": base, "ratio": mine / base if base > 0 else float("nan")}
        if cond.split("-", 1)[0] in GOALS:
            row["goal_ratio"] = GOALS[cond.split("-", 1)[0]]
        out[cond] = row
    return out


def unfinished(out: Path) -> List[dict]:
    """Runs under ``out`` that have TensorBoard scalars but no result yet (still running, or stopped): what they
    reached, and their training success per COMPLETED 20k-step block vs session 15's env dense at the same steps."""
    from vlmrl.learner.online.train_metrics import read_scalars

    rows = []
    for tb in sorted(out.glob("*_s*/tb")):
        run_dir = tb.parent
        if (run_dir / RESULT).exists():
            continue
        cond, _, seed = run_dir.name.rpartition("_s")
        steps = [s for s, _ in read_scalars(run_dir).get("charts/gt_success_rate", [])]
        if not steps:
            continue
        m = run_metrics(run_dir)
        done = max(steps) // BLOCK_STEPS
        m["train_success_by_20k_block"] = m["train_success_by_20k_block"][:done]
        base = SESSION15_ENV_DENSE.get(int(seed), {}).get("train_success_by_20k_block", [])[:done]
        rows.append({"condition": cond, "seed": int(seed), "finished": False, "env_steps_reached": max(steps),
                     "env_dense_by_20k_block": base, **m})
    return rows


def summarize(out: Path) -> Dict:
    partial = unfinished(out)
    for r in partial:
        print(f"[bench] UNFINISHED {r['condition']} seed {r['seed']} at {r['env_steps_reached']} env steps: training "
              f"success by 20k block {[round(x, 3) for x in r['train_success_by_20k_block']]} vs env dense (session 15) "
              f"{r['env_dense_by_20k_block']}; labels asked {r.get('labels_asked')}, BT held-out acc "
              f"{r.get('bt_heldout_acc')}, corr(r, dense) mean {r.get('pearson_reward_vs_dense_mean')}")
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
    result = {"runs": rows, "unfinished": partial, "mean": summary, "vs_env_dense": ratios(by_cond)}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    print("| condition | seeds | greedy | training, last 2 it. | last 20k block | labels asked | BT held-out acc | "
          "agreement w/ oracle | corr(r, dense) | wall s |")
    for cond, m in summary.items():
        def f(k, fmt=".3f"):
            return format(m[k], fmt) if k in m else "-"
        print(f"| {cond} | {','.join(map(str, m['seeds']))} | {f('greedy_success')} | {f('train_success_last2')} | "
              f"{f('last_block')} | {f('labels_asked', '.0f')} | {f('bt_heldout_acc')} | "
              f"{f('label_agreement_oracle')} | {f('pearson_reward_vs_dense_mean', '.2f')} | {f('wall_s', '.0f')} |")
    for cond, r in result["vs_env_dense"].items():
        print(f"[bench] {cond} / env dense, seeds {r['seeds']}: " + ", ".join(
            f"{k} {v['value']:.3f} / {v['env_dense']:.3f} = {v['ratio']:.2f}" for k, v in r.items()
            if isinstance(v, dict)) + (f" (goal >= {r['goal_ratio']})" if "goal_ratio" in r else ""))
    return result


def frames_of_checkpoint(ckpt_dir: Path):
    """The FrameRecords (frame, task, dense reward, success) a preference run's checkpoint buffered."""
    from vlmrl.learner.preference import checkpoint as ckpt
    from vlmrl.learner.preference.frame_buffer import FrameRecord

    fr = ckpt.load_state(ckpt_dir)["mode"]["frames"]
    ok = fr.get("success", [-1] * len(fr["task"]))
    return [FrameRecord(f, str(t), float(r), str(e), int(st), None if int(k) < 0 else bool(k)) for f, t, r, e, st, k in
            zip(ckpt.unpack_frames(fr["frame"]), fr["task"], fr["env_reward"], fr["episode_id"], fr["step"], ok)]


def frames_of_episodes(dirs: List[str], val_fraction: float = 0.2, split: str = "val"):
    """FrameRecords of the held-out split (lrm-train's val split) of recorded episodes: frame, task, the env's
    normalised dense reward at the frame's step and success (frames after the reset frame)."""
    from vlmrl.learner.reward_training.lrm_data import iter_split_episodes
    from vlmrl.learner.preference.frame_buffer import FrameRecord

    out = []
    for i, ep in enumerate(iter_split_episodes(dirs, split, val_fraction)):
        for f, st in zip(ep.frames, ep.frame_steps):
            if int(st) >= 1:
                out.append(FrameRecord(f, ep.task, float(ep.rewards[int(st) - 1]), f"ep{i}", int(st),
                                       bool(ep.success[int(st)])))
    return out


def labeller_agreement(records, lrm_dir: str, pairs: int, tie: float, margin: float, seed: int = 0,
                       label_from: str = "contrastive") -> Dict:
    """The compact LRM's pair answers (the AI labeller, in-process; ``label_from`` its head) vs the ground-truth oracle
    on ``pairs`` uniform pairs of ``records`` (same draw as the mode's FrameBuffer.sample_pairs), split by same / other
    episode."""
    import numpy as np

    from vlmrl.learner.preference.frame_buffer import FrameBuffer
    from vlmrl.learner.preference.oracle import oracle_label
    from vlmrl.reward_workers.scorers import build_scorer

    buf = FrameBuffer(max(2, len(records)))
    buf.extend(records)
    drawn = buf.sample_pairs(pairs, np.random.default_rng(seed))
    scorer = build_scorer("compact_lrm", {"weights_dir": lrm_dir, "label_margin": margin, "label_from": label_from})
    answers = []
    for i in range(0, len(drawn), 64):
        chunk = drawn[i:i + 64]
        answers += scorer.score_batch([a.task for a, _ in chunk], [np.stack([a.frame, b.frame]) for a, b in chunk])
    stats: Dict[str, Dict[str, int]] = {}
    for (a, b), r in zip(drawn, answers):
        ref = oracle_label(a, b, tie)
        for key in ("all", "same_episode" if a.episode_id == b.episode_id else "other_episode"):
            c = stats.setdefault(key, {"pairs": 0, "ai_none": 0, "oracle_none": 0, "compared": 0, "agree": 0})
            c["pairs"] += 1
            c["ai_none"] += r.label == "none"
            c["oracle_none"] += ref == "none"
            if ref in ("first", "second") and r.label in ("first", "second"):
                c["compared"] += 1
                c["agree"] += ref == r.label
    for c in stats.values():
        c["agreement"] = c["agree"] / c["compared"] if c["compared"] else float("nan")
    return stats


def records_of(src: str, split: str):
    """FrameRecords of ``src``: a preference run's checkpoint dir (its buffered frames of the policy's own episodes,
    all of them) or a recorded episodes folder (lrm-train's ``split``)."""
    path = Path(src)
    return frames_of_checkpoint(path) if (path / "preference_state.pt").exists() else frames_of_episodes([src], split=split)


def bt_offline(sources: List[str], variants: List[dict], train_pairs: int, heldout_pairs: int, steps: int,
               batch: int, tie: float, seed: int = 0, heldout: Optional[List[str]] = None,
               epsilon: float = 0.0) -> List[dict]:
    """Can the BT reward model learn the oracle's ordering from these frames? Oracle-labelled uniform pairs of the
    sources' frames (recorded episodes: their train split; run checkpoints: all buffered frames) for training;
    held-out pairs of ``heldout`` (other runs / episodes; default: the recorded episodes' val split); per
    ``scorer.params`` variant: held-out BT accuracy and Pearson(r, dense) every 100 steps. ``epsilon`` flips that
    share of the training labels (the ``oracle_eps`` condition's imperfect labeller); held-out labels stay clean."""
    import numpy as np

    from vlmrl.learner.preference.frame_buffer import FrameBuffer
    from vlmrl.learner.preference.oracle import GroundTruthLabeller
    from vlmrl.learner.preference.reward_model_trainer import RewardModelTrainer

    def rows(srcs: List[str], split: str, n: int, eps: float = 0.0):
        recs = [r for s in srcs for r in records_of(s, split)]
        buf = FrameBuffer(len(recs))
        buf.extend(recs)
        batch_ = GroundTruthLabeller(tie, eps, seed).label(buf.sample_pairs(n, np.random.default_rng(seed)))
        return [(p.first.frame, p.second.frame, p.first.task, p.y, p.first.env_reward, p.second.env_reward)
                for p in batch_.pairs]

    tr, ho = rows(sources, "train", train_pairs, epsilon), rows(heldout or sources, "val", heldout_pairs)
    out = []
    for params in variants:
        t = RewardModelTrainer(params, 3e-4, len(tr), seed=seed)
        t.add_pairs(tr, False)
        t.heldout_pairs = type(t.heldout_pairs)(maxlen=len(ho))
        t.add_pairs(ho, True)
        m0 = t.evaluate()  # before any label: a warm-started model (init_from_progress) is already ranked
        curve = [{"steps": 0, "bt_train_acc": None, "bt_heldout_acc": m0.get("bt_heldout_acc"),
                  "pearson": m0.get("heldout_pearson_reward_vs_dense")}]
        t0 = time.monotonic()
        for _ in range(max(1, steps // 100)):
            m = t.train(100, batch)
            curve.append({"steps": 100 * m["updates"], "bt_train_acc": m["bt_train_acc"],
                          "bt_heldout_acc": m.get("bt_heldout_acc"),
                          "pearson": m.get("heldout_pearson_reward_vs_dense")})
        row = {"params": params, "epsilon": epsilon, "sources": sources, "heldout": heldout or "val split",
               "train_pairs": len(tr), "heldout_pairs": len(ho), "curve": curve, "seconds": time.monotonic() - t0}
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def accuracy_by_terciles(reward, dense, success, pairs: int, tie: float, seed: int = 0) -> Dict[str, float]:
    """Pair accuracy of ``reward`` against the oracle's order (success first, then ``dense``) on ``pairs`` random pairs
    (dense ties within ``tie`` dropped): overall, and by tercile of the pair's |delta dense| and of its mean dense level."""
    import numpy as np

    reward, dense = np.asarray(reward, float), np.asarray(dense, float)
    key = dense + 10.0 * np.asarray(success, bool)
    i, j = np.random.default_rng(seed).integers(0, len(dense), (2, pairs))
    keep = np.abs(dense[i] - dense[j]) > tie
    i, j = i[keep], j[keep]
    correct = np.sign(reward[i] - reward[j]) == np.sign(key[i] - key[j])
    out = {"pairs": int(len(i)), "all": float(correct.mean())}
    for name, v in (("gap", np.abs(dense[i] - dense[j])), ("level", (dense[i] + dense[j]) / 2)):
        q1, q2 = np.quantile(v, [1 / 3, 2 / 3])
        for part, m in (("low", v < q1), ("mid", (v >= q1) & (v < q2)), ("high", v >= q2)):
            out[f"{name}_{part}"] = float(correct[m].mean()) if m.any() else float("nan")
    return out


def bt_accuracy_by_gap(run_dirs: List[str], pairs: int, tie: float) -> List[dict]:
    """Each run's final BT reward model (its config's ``scorer.params`` + ``reward_model/latest.pt``) on every run's
    final frame buffer: :func:`accuracy_by_terciles` -- which pairs of a policy's frames the learned reward orders."""
    from omegaconf import OmegaConf

    from vlmrl.reward_workers.scorers.base import build_scorer

    buffers = {d: frames_of_checkpoint(sorted((Path(d) / "checkpoints").glob("iter_*"))[-1]) for d in run_dirs}
    out = []
    for model_dir in run_dirs:
        params = OmegaConf.to_container(OmegaConf.load(Path(model_dir) / "config.yaml").scorer.params, resolve=True)
        scorer = build_scorer("bt_reward", {**params, "weights": str(Path(model_dir) / "reward_model" / "latest.pt")})
        for buf_dir, recs in buffers.items():
            rewards = [r.reward for k in range(0, len(recs), 64) for r in
                       scorer.score_batch([x.task for x in recs[k:k + 64]], [x.frame[None] for x in recs[k:k + 64]])]
            row = {"model": model_dir, "buffer": buf_dir, "frames": len(recs),
                   **accuracy_by_terciles(rewards, [x.env_reward for x in recs], [bool(x.success) for x in recs],
                                          pairs, tie)}
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def plot(out: Path, png: Path) -> None:
    """Per run under ``out``: training success per iteration (session 15's env-dense 20k-step block means dashed),
    corr(r, dense) of the training frames, BT held-out accuracy -- the curves a missed goal is read from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vlmrl.learner.online.train_metrics import read_scalars

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for tb in sorted(out.glob("*_s*/tb")):
        cond, _, seed = tb.parent.name.rpartition("_s")
        sc = read_scalars(tb.parent)
        for ax, tag in zip(axes, ("charts/gt_success_rate", "reward/pearson_frame_score_vs_dense",
                                  "preference/bt_heldout_acc")):
            pts = sc.get(tag, [])
            if len(pts) > 2:
                ax.plot([s_ for s_, _ in pts], [v for _, v in pts], label=f"{cond} s{seed}")
        base = SESSION15_ENV_DENSE.get(int(seed), {}).get("train_success_by_20k_block")
        if base and cond == "oracle":
            xs = [x for k in range(len(base)) for x in (k * BLOCK_STEPS, (k + 1) * BLOCK_STEPS)]
            axes[0].plot(xs, [v for v in base for _ in (0, 1)], "--", label=f"env dense s{seed} (session 15, block mean)")
    for ax, title in zip(axes, ("training-episode success", "corr(learned reward, env dense), training frames",
                                "BT held-out accuracy")):
        ax.set_title(title)
        ax.set_xlabel("env steps")
        ax.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    print(f"[bench] wrote {png}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conditions", default="oracle,oracle_eps0.1,ai,env_dense")
    p.add_argument("--seeds", default="3,4,5")
    p.add_argument("--env-steps", type=int, default=100_000, help="per run, rounded up to whole 2000-step iterations")
    p.add_argument("--lrm-dir", default=None, help="compact LRM folder for the ai condition")
    p.add_argument("--out", default="runs/bench_preference")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="extra overrides for every run")
    p.add_argument("--tag", default="", help="name of the --set variant: runs are <condition>-<tag>_s<seed>, "
                   "summarised as their own condition (e.g. --tag kp --set scorer.params.pooling=keypoints)")
    p.add_argument("--summarize-only", action="store_true")
    p.add_argument("--export", default=None, metavar="JSON",
                   help="also write the summary as benchmarks/results JSON (each number with goal, seeds, commit, ...); "
                        "numbers of an earlier export there that this summary does not produce again are kept")
    p.add_argument("--agreement", nargs="+", default=None, metavar="SRC",
                   help="only measure the AI labeller (--lrm-dir) against the oracle on frames of SRC: checkpoint dirs "
                        "of preference runs (their frame buffers) or recorded episode folders (held-out split)")
    p.add_argument("--agreement-pairs", type=int, default=2000)
    p.add_argument("--bt-offline", nargs="+", default=None, metavar="SRC",
                   help="only train BT reward models offline on oracle-labelled pairs of SRC (recorded episode folders: "
                        "their train split; preference-run checkpoint dirs: their buffered frames) for each of "
                        "--bt-variants (JSON list of scorer.params) and report held-out accuracy / correlation")
    p.add_argument("--bt-heldout", nargs="+", default=None, metavar="SRC",
                   help="held-out pairs for --bt-offline from these sources (default: the episodes' val split)")
    p.add_argument("--bt-variants", default='[{"image_size": 64, "channels": [16, 32, 64]}]')
    p.add_argument("--bt-steps", type=int, default=600)
    p.add_argument("--bt-epsilon", type=float, default=0.0,
                   help="share of --bt-offline's training labels flipped (held-out labels stay clean)")
    p.add_argument("--bt-train-pairs", type=int, default=3000,
                   help="oracle-labelled training pairs drawn for --bt-offline (labels a run would ask)")
    p.add_argument("--bt-gaps", nargs="+", default=None, metavar="RUN_DIR",
                   help="only score each run's final BT reward model on every given run's final frame buffer: pair "
                        "accuracy vs the oracle by tercile of |delta dense| and of dense level")
    p.add_argument("--plot", default=None, metavar="PNG", help="also plot the runs' curves (with --summarize-only)")
    args = p.parse_args(argv)
    if args.bt_offline:
        from vlmrl.system.config import load_config

        tie = float(load_config(CONFIG, []).preference.oracle_tie_threshold)
        bt_offline(args.bt_offline, json.loads(args.bt_variants), args.bt_train_pairs, 1000, args.bt_steps, 64, tie,
                   heldout=args.bt_heldout, epsilon=args.bt_epsilon)
        return 0
    if args.bt_gaps:
        from vlmrl.system.config import load_config

        bt_accuracy_by_gap(args.bt_gaps, 20000, float(load_config(CONFIG, []).preference.oracle_tie_threshold))
        return 0
    if args.agreement:
        from vlmrl.system.config import load_config

        cfg = load_config(CONFIG, args.set)
        params = cfg.preference.labeller_scorer.params
        label_from = params.get("label_from", "contrastive")
        for src in args.agreement:
            recs = records_of(src, "val")
            st = labeller_agreement(recs, args.lrm_dir, args.agreement_pairs, float(cfg.preference.oracle_tie_threshold),
                                    float(params.get("label_margin", 0.1)), label_from=label_from)
            print(json.dumps({"source": src, "frames": len(recs), "label_from": label_from, **st}))
        return 0
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.summarize_only:
        iterations = max(1, math.ceil(args.env_steps / BATCH))
        for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
            for cond in [c.strip() for c in args.conditions.split(",") if c.strip()]:
                run_one(cond, seed, iterations, out, args.lrm_dir, args.set, args.tag)
    result = summarize(out)
    if args.plot:
        plot(out, Path(args.plot))
    if args.export:
        export(result, Path(args.export))
    return 0


def export(result: Dict, path: Path) -> None:
    """The summary in the benchmarks/results format: every number with its goal, seeds, commit, command, machine."""
    import datetime
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    common = {"machine": "2-core CPU, no GPU (shared with other jobs)", "date": datetime.date.today().isoformat(),
              "summary_commit": commit}
    numbers = []
    for cond, r in result["vs_env_dense"].items():
        for k, v in r.items():
            if isinstance(v, dict):
                numbers.append({"name": f"{cond}/env_dense {k} ratio", "value": v["ratio"], "numerator": v["value"],
                                "env_dense": v["env_dense"], "goal": f">= {r['goal_ratio']}" if "goal_ratio" in r else None,
                                "seeds": r["seeds"], "baseline": r["baseline"]})
    for run in result["unfinished"]:
        numbers.append({"name": f"UNFINISHED {run['condition']} seed {run['seed']}", "seeds": [run["seed"]],
                        **{k: run.get(k) for k in ("env_steps_reached", "train_success_by_20k_block",
                                                   "env_dense_by_20k_block", "labels_asked", "labels_kept",
                                                   "bt_heldout_acc", "bt_heldout_acc_by_update", "label_agreement_oracle",
                                                   "pearson_reward_vs_dense_by_iteration",
                                                   "heldout_pearson_reward_vs_dense")},
                        "goal": "full 100k-step run; see the md for why it is unfinished"})
    for run in result["runs"]:
        numbers.append({"name": f"{run['condition']} seed {run['seed']}", "seeds": [run["seed"]],
                        **{k: run.get(k) for k in ("greedy_success", "train_success_last2", "train_success_by_20k_block",
                                                   "labels_asked", "labels_kept", "bt_heldout_acc",
                                                   "label_agreement_oracle", "pearson_reward_vs_dense_mean",
                                                   "pearson_reward_vs_dense_last10", "heldout_pearson_reward_vs_dense",
                                                   "wall_s", "env_steps", "overrides")},
                        "command": f"python -m benchmarks.preference_learning --conditions {run['condition']} "
                                   f"--seeds {run['seed']}" + (" --lrm-dir <out>/lrm" if run["condition"] == "ai" else "")})
    numbers += kept_numbers(path, {n["name"] for n in numbers})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**common, "numbers": numbers}, indent=1) + "\n")
    print(f"[bench] wrote {path}")


def kept_numbers(path: Path, replaced: set) -> List[Dict]:
    """The numbers of an earlier export at ``path`` that this summary does not produce again (runs whose folders
    another checkout or session holds), each marked with the summary commit and date they came from."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    return [{**n, "from_summary": n.get("from_summary") or f"{old.get('summary_commit')} ({old.get('date')})"}
            for n in old.get("numbers", []) if n.get("name") not in replaced]


if __name__ == "__main__":
    raise SystemExit(main())
