"""Offline reward comparison (RG-VLM table): sparse env reward vs VLM window rewards vs CLIP vs compact LRM.

One command runs the whole offline pipeline of the project for every reward variant on one dataset:

* labelling = :mod:`vlmrl.learner.labels.labelling` (what ``vlmrl label`` runs), workers from
  :func:`vlmrl.learner.labels.label_workers.open_label_workers` (``label.workers=local``: in-process reward servers),
  scorers ``window`` / ``clip`` / ``compact_lrm`` configured through the ``scorer`` section;
* IQL = :class:`vlmrl.learner.offline.offline_trainer.OfflineTrainer` (what ``vlmrl offline`` runs) with its
  seen/unseen task-text evaluation (``eval.json``).

Rows: ``sparse`` (env success reward only, ``offline.reward=env_sparse``); ``vlm_w4/8/16`` (window reward,
two-stage prompt, + sparse); ``vlm_w8_single`` (single-stage prompt ablation); ``clip`` (CLIP frame
reward + sparse; its raw cosines mapped to [0, 1] by ``label.vlm_reward_min/max`` = their 5th..95th
percentiles on the dataset's first shard, ``calibrate_score_range``); ``compact_lrm`` (compact LRM progress
head on pairs + sparse); ``compact_lrm_progress`` (the same labels as potential differences,
``offline.reward=vlm_progress+sparse``). Columns: seen / unseen
success and return (means over seeds), generalisation drop (seen - unseen) / seen of success and return,
and the return ratio vs the CLIP row (seen texts).

Models: ``--vlm`` / ``--clip`` / ``--compact-lrm`` paths; without them the TINY RANDOM Qwen2.5-VL and CLIP
of :mod:`vlmrl.reward_workers.backends.tiny_models` and a randomly initialised compact LRM are written
here: their rewards carry NO task meaning and the table then only checks the pipeline.

Default dataset: ToyReach episodes (``envs/toy_reach_dataset.write_toy_dataset``) with 64x64 frames added
by replaying each episode's actions in the env (the writer itself keeps no frames; labelling needs them).
Usage::

    .venv/bin/python -m benchmarks.offline_comparison [--quick] [--dataset DIR --env PushCube-v1 --config offline_pushcube]
        [--vlm PATH] [--clip PATH] [--compact-lrm PATH] [--device cpu|cuda] [--iterations N] [--seeds 0 1 2]
        [--rows sparse vlm_w8 ...] [--out DIR] [key=value ...   extra offline.* overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from benchmarks.record import add_record_args, record_from_args, topic_part, val

ROWS = ("sparse", "vlm_w4", "vlm_w8", "vlm_w16", "vlm_w8_single", "clip", "compact_lrm", "compact_lrm_progress")
ROW_TITLES = {
    "sparse": "sparse env reward only",
    "vlm_w4": "VLM window w=4 (two-stage) + sparse",
    "vlm_w8": "VLM window w=8 (two-stage) + sparse",
    "vlm_w16": "VLM window w=16 (two-stage) + sparse",
    "vlm_w8_single": "VLM window w=8 (single-stage) + sparse",
    "clip": "CLIP baseline + sparse",
    "compact_lrm": "compact LRM progress + sparse",
    "compact_lrm_progress": "compact LRM progress differences + sparse",
}
LABELS_OF = {"compact_lrm_progress": "compact_lrm"}
"""Rows that train on another row's labels (with another ``offline.reward``)."""
REWARD_OF = {"sparse": "env_sparse", "compact_lrm_progress": "vlm_progress+sparse"}
"""``offline.reward`` of each row; the rest: ``vlm+sparse``."""


# ---------------------------------------------------------------------------------------------- data / models


def write_toy_frames_dataset(root: Path, num_episodes: int, frame_size: int = 64, max_steps: int = 30) -> Path:
    """ToyReach episodes as ``write_toy_dataset`` writes them, plus the rendered frame of every state."""
    from dataclasses import replace

    from vlmrl.envs.dataset import EpisodeWriter
    from vlmrl.envs.toy_reach_dataset import record_toy_episode, toy_episode_source_and_text
    from vlmrl.envs.toy_reach_env import ToyReachEnv

    writer = EpisodeWriter(root)
    for i in range(num_episodes):  # same seeds / sources / texts as write_toy_dataset(root, num_episodes)
        source, text = toy_episode_source_and_text(i)
        ep = record_toy_episode(seed=i, source=source, task_text=text, max_steps=max_steps)
        env = ToyReachEnv({"capture_frames": False, "frame_size": frame_size, "max_episode_steps": max_steps})
        obs, _ = env.reset(seed=ep.seed)
        frames, states = [env.render()], [obs]
        for a in ep.actions:
            obs, *_ = env.step(a)
            frames.append(env.render())
            states.append(obs)
        if not np.allclose(np.asarray(states, np.float32), ep.states, atol=1e-5):
            raise RuntimeError(f"replay of toy episode {i} diverged from its recording")
        writer.write(replace(ep, frames=np.asarray(frames, np.uint8),
                             frame_steps=np.arange(len(frames), dtype=np.int32)).validate())
    return root


def random_compact_lrm(out: Path) -> Path:
    import torch

    from vlmrl.reward_workers.models.compact_lrm import CompactLRM, CompactLRMConfig

    torch.manual_seed(0)
    return CompactLRM(CompactLRMConfig(image_size=64, widths=[8, 16, 32], embed_dim=32, text_encoder="hashed",
                                       hash_buckets=256)).save_pretrained(out)


# ---------------------------------------------------------------------------------------------- pipeline


def scorer_overrides(row: str, a: argparse.Namespace, quick: bool) -> List[str]:
    if row.startswith("vlm_"):
        w = int(row.split("_")[1][1:])
        prompt = "single_stage" if row.endswith("single") else "two_stage"
        return ["scorer.name=window", f"scorer.params.model={a.vlm}", f"scorer.params.window_size={w}",
                f"scorer.params.prompt={prompt}", f"scorer.params.device={a.device}",
                f"scorer.params.max_new_tokens={a.max_new_tokens or (8 if quick else 64)}",
                "scorer.params.on_overflow=downscale", f"label.window_size={w}", "label.item_kind=window"]
    if row == "clip":
        return ["scorer.name=clip", f"scorer.params.model={a.clip}", f"scorer.params.device={a.device}",
                "label.item_kind=frame", f"label.vlm_reward_min={a.clip_range[0]}", f"label.vlm_reward_max={a.clip_range[1]}"]
    if row == "compact_lrm":
        return ["scorer.name=compact_lrm", f"scorer.params.weights_dir={a.compact_lrm}",
                f"scorer.params.device={a.device}",
                "scorer.params.weights={progress: 1.0, completion: 0.0, contrastive: 0.0}", "label.item_kind=pair"]
    raise ValueError(row)


def calibrate_clip(dataset: str, a: argparse.Namespace) -> List[float]:
    """Raw CLIP cosines live in a narrow band: map their 5th..95th percentiles on the first shard to [0, 1]."""
    from vlmrl.envs.offline_readers import open_reader
    from vlmrl.learner.labels.labelling import calibrate_score_range
    from vlmrl.reward_workers.scorers import build_scorer

    scorer = build_scorer("clip", {"model": a.clip, "device": a.device})
    try:
        with open_reader(dataset) as reader:
            lo, hi = calibrate_score_range(reader, scorer)
    finally:
        scorer.close()
    print(f"[clip] label.vlm_reward_min/max calibrated on the first shard: [{lo:.4f}, {hi:.4f}] (5th..95th percentile)",
          flush=True)
    return [lo, hi]


def label(row: str, dataset: str, out: Path, a: argparse.Namespace, quick: bool) -> Dict[str, Any]:
    """What ``vlmrl label label.workers=local ...`` does (system/commands/label.py), in this process."""
    from vlmrl.envs.offline_readers import open_reader
    from vlmrl.learner.labels.label_workers import open_label_workers
    from vlmrl.learner.labels.labelling import label_dataset, settings_from_config
    from vlmrl.system.config import load_config, save_resolved

    cfg = load_config(None, [f"label.input.path={dataset}", f"label.output_dir={out}", "label.workers=local",
                             "pool.num_workers=1", "label.overwrite=true", f"label.max_episodes={a.max_episodes}",
                             f"output_dir={out.parent}", f"run_name=label_{row}", *scorer_overrides(row, a, quick)])
    lc = cfg.label
    reader = open_reader(lc.input.path, lc.input.format, task_text=lc.input.task_text, keys=dict(lc.input.hdf5),
                         source=lc.input.source)
    with reader, open_label_workers(cfg) as workers:
        settings = settings_from_config(lc, cfg.scorer, workers.scorer, workers.item_kind)
        rep = label_dataset(reader, workers.client, settings, lc.output_dir, overwrite=lc.overwrite,
                            max_items_in_flight=lc.max_items_in_flight, prefetch_shards=lc.prefetch_shards,
                            request_items=int(cfg.client.max_items_per_request))
    save_resolved(cfg, lc.output_dir)
    print(f"[{row}] labelled {rep.steps} frames of {rep.episodes} episodes with {settings.scorer} "
          f"({settings.item_kind}, {settings.frames_per_item} frames/item) in {rep.seconds:.1f}s "
          f"({rep.frames_per_s:.1f} frames/s)", flush=True)
    return {"frames": rep.steps, "seconds": rep.seconds, "frames_per_s": rep.frames_per_s,
            "scorer": settings.scorer, "item_kind": settings.item_kind, "window": settings.frames_per_item}


def train_eval(row: str, dataset: str, reward: str, seed: int, out: Path, a: argparse.Namespace,
               quick: bool) -> Dict[str, Any]:
    """What ``vlmrl offline <config> offline.dataset=... offline.reward=...`` does, in this process."""
    from vlmrl.learner.offline.offline_trainer import EVAL_FILE, OfflineTrainer
    from vlmrl.system.config import load_config

    q = dict(iterations=3, updates=40, batch=128, hidden="[64,64]", eval_episodes=10) if quick else \
        dict(iterations=20, updates=50, batch=256, hidden="[256,256]", eval_episodes=20)
    cfg = load_config(a.config, [
        f"output_dir={out}", f"run_name={row}_s{seed}", f"seed={seed}", f"env.task={a.env}",
        f"offline.dataset={dataset}", f"offline.reward={reward}",
        f"offline.iterations={a.iterations or q['iterations']}", f"offline.updates_per_iteration={q['updates']}",
        f"offline.batch_size={q['batch']}", f"offline.hidden={q['hidden']}",
        f"offline.eval_episodes={a.eval_episodes or q['eval_episodes']}", "offline.eval_every=0",
        "offline.checkpoint_every=0", *a.overrides])
    run_dir = out / f"{row}_s{seed}"
    lines: List[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if a.verbose or line.startswith(("evaluation", "  ")):
            print(f"[{row} s{seed}] {line}", flush=True)

    t0 = time.perf_counter()
    rc = OfflineTrainer(cfg, run_dir, print_fn=on_line).run()
    if rc != 0 or not (run_dir / EVAL_FILE).exists():
        raise RuntimeError(f"{row} seed {seed}: offline run failed (rc {rc}):\n" + "\n".join(lines[-20:]))
    ev = json.loads((run_dir / EVAL_FILE).read_text())
    ev["wall_s"] = time.perf_counter() - t0
    return ev


# ---------------------------------------------------------------------------------------------- table


def _mean(xs: List[float]) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _drop(seen: Optional[float], unseen: Optional[float]) -> Optional[float]:
    return None if seen is None or unseen is None or seen <= 0 else 100.0 * (seen - unseen) / seen


def aggregate(evals: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    rows = []
    for row, runs in evals.items():
        r: Dict[str, Any] = {"row": row, "title": ROW_TITLES[row], "seeds": len(runs)}
        for split in ("seen", "unseen"):
            for m, key in (("success", "success_rate"), ("return", "return_mean")):
                vals = [e["splits"][split][key] for e in runs if split in e["splits"]]
                r[f"{split}_{m}"] = _mean(vals)
                r[f"{split}_{m}_std"] = float(np.std(vals)) if vals else None
        r["drop_success_pct"] = _drop(r["seen_success"], r["unseen_success"])
        r["drop_return_pct"] = _drop(r["seen_return"], r["unseen_return"])
        rows.append(r)
    clip = next((r for r in rows if r["row"] == "clip"), None)
    for r in rows:
        ok = clip is not None and clip["seen_return"] and r["seen_return"] is not None
        r["return_ratio_vs_clip"] = r["seen_return"] / clip["seen_return"] if ok else None
    return rows


def markdown(rows: List[Dict[str, Any]]) -> str:
    def f(x: Optional[float], fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    out = ["| reward | seen success / return | unseen success / return | drop success / return | return vs CLIP |",
           "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['title']} | {f(r['seen_success'], '.2f')} / {f(r['seen_return'], '.2f')} | "
                   f"{f(r['unseen_success'], '.2f')} / {f(r['unseen_return'], '.2f')} | "
                   f"{f(r['drop_success_pct'], '.1f')} % / {f(r['drop_return_pct'], '.1f')} % | "
                   f"{f(r['return_ratio_vs_clip'], '.2f')}x |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default=None, help="episode dataset with frames (default: generated ToyReach)")
    ap.add_argument("--env", default="ToyReach-v0", help="evaluation env (env.task), e.g. PushCube-v1")
    ap.add_argument("--config", default="offline_toy", help="offline config the runs start from")
    ap.add_argument("--vlm", default=None, help="Qwen2.5-VL path (default: tiny random model)")
    ap.add_argument("--clip", default=None, help="CLIP path (default: tiny random model)")
    ap.add_argument("--compact-lrm", default=None, help="trained compact LRM folder (default: random init)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--episodes", type=int, default=None, help="generated ToyReach episodes (default 150, quick 24)")
    ap.add_argument("--max-episodes", type=int, default=0, help="label / train on the first N episodes (0 = all)")
    ap.add_argument("--max-new-tokens", type=int, default=0, help="stage-1 description length (default 64, quick 8)")
    ap.add_argument("--iterations", type=int, default=0)
    ap.add_argument("--eval-episodes", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="IQL seeds (default 0 1 2, quick 0)")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    ap.add_argument("--quick", action="store_true", help="small dataset, 1 seed, short IQL: a pipeline check")
    ap.add_argument("--out", default=None, help="output dir (default runs/offline_comparison/<time>)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra config key=value for the IQL runs")
    add_record_args(ap, "result file name (default: offline_comparison_<env>[_pipeline_check][_quick]; "
                        "_pipeline_check when any reward comes from a tiny random model)")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    seeds = a.seeds or ([0] if a.quick else [0, 1, 2])
    out = Path(a.out or f"runs/offline_comparison/{time.strftime('%Y%m%d_%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    tiny: List[str] = []
    if a.vlm is None and any(r.startswith("vlm_") for r in a.rows):
        from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen_vl

        a.vlm, _ = str(build_tiny_qwen_vl(out / "models/tiny_qwen")), tiny.append("VLM (tiny random Qwen2.5-VL)")
    if a.clip is None and "clip" in a.rows:
        from vlmrl.reward_workers.backends.tiny_models import build_tiny_clip

        a.clip, _ = str(build_tiny_clip(out / "models/tiny_clip")), tiny.append("CLIP (tiny random)")
    if a.compact_lrm is None and any(r.startswith("compact_lrm") for r in a.rows):
        a.compact_lrm, _ = str(random_compact_lrm(out / "models/compact_lrm_random")), tiny.append(
            "compact LRM (random init)")
    if a.dataset is None:
        n = a.episodes or (24 if a.quick else 150)
        dataset = str(write_toy_frames_dataset(out / "dataset_toy", n))
        ds_note = f"generated ToyReach (TEST env), {n} episodes (demo / noisy_demo / random), 64x64 frames"
    else:
        dataset, ds_note = str(Path(a.dataset).resolve()), a.dataset

    header = [f"# Offline comparison (RG-VLM table) on {a.env}", f"dataset: {ds_note}",
              f"models: vlm={a.vlm} clip={a.clip} compact_lrm={a.compact_lrm} device={a.device}",
              f"seeds: {seeds}; quick={a.quick}"]
    if tiny:
        header.append("WARNING: rewards from " + ", ".join(tiny) + " carry NO task meaning: this table only checks "
                      "the pipeline (labelling -> IQL -> seen/unseen evaluation), it is NOT the RG-VLM comparison "
                      "(paper: 1.14x returns vs CLIP, drop 38.94% VLM vs 49.91% sparse).")
    print("\n".join(header), flush=True)

    labels: Dict[str, Dict[str, Any]] = {}
    evals: Dict[str, List[Dict[str, Any]]] = {}
    try:
        for row in a.rows:
            labelled = LABELS_OF.get(row, row)
            if row == "sparse":
                data = dataset
            else:
                if labelled not in labels:
                    if labelled == "clip":
                        a.clip_range = calibrate_clip(dataset, a)
                    labels[labelled] = label(labelled, dataset, out / "labelled" / labelled, a, a.quick)
                data = str(out / "labelled" / labelled)
            evals[row] = [train_eval(row, data, REWARD_OF.get(row, "vlm+sparse"), s, out / "iql", a, a.quick)
                          for s in seeds]
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    rows = aggregate(evals)
    for r in rows:
        r["labelling"] = labels.get(LABELS_OF.get(r["row"], r["row"]))
    table = markdown(rows)
    total = time.perf_counter() - t_start
    footer = [f"return = mean episode return of the evaluation env; drop = (seen - unseen) / seen; return vs CLIP = "
              f"seen-text return / CLIP row's; {len(seeds)} seed(s); total wall {total:.0f}s"]
    print("\n" + table + "\n" + footer[0], flush=True)
    (out / "table.md").write_text("\n".join(header) + "\n\n" + table + "\n\n" + footer[0] + "\n")
    (out / "table.json").write_text(json.dumps({"header": header, "rows": rows, "seeds": seeds, "dataset": dataset,
                                                "wall_s": total, "evals": evals}, indent=1))
    print(f"written: {out / 'table.md'}, {out / 'table.json'}", flush=True)
    values = {}
    for r in rows:
        for key, unit in (("seen_success", "success rate"), ("unseen_success", "success rate"),
                          ("drop_success_pct", "%"), ("seen_return", "return"), ("unseen_return", "return")):
            values[f"{r['row']}_{key}"] = val(r[key], unit=unit, note=r["title"])
    env = topic_part(a.env.split("-v")[0].lower())
    record_from_args(a, f"offline_comparison_{env}" + ("_pipeline_check" if tiny else "") + ("_quick" if a.quick else ""),
                     values, seeds=seeds, notes="; ".join(header[1:]) + "; " + footer[0]
                     + (f"; overrides {a.overrides}" if a.overrides else ""), argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
