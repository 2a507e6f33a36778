"""``vlmrl audit-reward [CONFIG] [key=value ...]``: does the configured reward pay for behaviours that make no progress?

Rolls out the scripted behaviour library (``vlmrl.envs.behaviours``: successes, arm-only motions, occlusions,
wrong-direction and overshooting pushes, idle, jitter, near misses) of each task in ``audit.tasks`` on held-out
seeds, scores every episode with ``scorer`` (in-process, or through reward workers: ``audit.workers``), prints per
behaviour the true success rate, last-frame progress / completion, exploit margin and share called complete, and
writes ``audit.json`` + ``progress_over_time.png`` into ``audit.out_dir``. Exit code 1 when a non-progress behaviour
exceeds ``audit.max_margin`` / ``audit.max_complete_share`` (a gate for RL runs), 2 on bad input.

``audit.policy_runs``: also roll out the policies of these ``vlmrl train`` runs (their own sampled actions, in their
env) and score their episodes as behaviour ``policy_<run>``: the states an RL run on the reward really reached,
next to the library's, in the order check against the env's dense reward (``dense_order`` in audit.json).

``--record-negatives``: record the non-progress behaviours on TRAINING seeds (``audit.negatives_seed``) into
``audit.negatives_dir`` instead, with ground truth, as hard negatives for ``lrm_train.dataset_dirs`` (any
behaviours with ``audit.negatives_behaviours``, ``audit.negatives_per_behaviour`` episodes each, or as many as
``audit.negatives_counts`` names for a recorded behaviour, and ``audit.policy_episodes`` of each run of
``audit.policy_runs``: hard negatives mined from an RL policy's own rollouts; recorded on held-out seeds they serve as
``audit.episodes_dirs``: identical episodes for every scorer, rendering paid once).

``--mine-negatives``: hard-negative mining with the trained scorer: roll out ``audit.mine_per_behaviour`` episodes of
every behaviour on TRAINING seeds (``audit.mine_seed``), score them, and write the non-progress ones the scorer
over-pays -- those the gate would count against it, judged by ground truth as well -- into ``audit.mined_dir``, for a
second ``vlmrl lrm-train`` with that folder added to ``lrm_train.dataset_dirs`` (``vlmrl demo`` does both when
``audit.mine_per_behaviour`` > 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, List, Sequence

from vlmrl.system.commands.config_args import add_config_arguments, config_from_args
from vlmrl.system.config import save_resolved

PROG = "vlmrl audit-reward"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--record-negatives", action="store_true",
                        help="record the non-progress behaviours on training seeds into audit.negatives_dir")
    parser.add_argument("--mine-negatives", action="store_true",
                        help="score every behaviour on training seeds (audit.mine_seed) with the scorer and write the "
                             "non-progress episodes it over-pays into audit.mined_dir")


class AuditInputError(ValueError):
    """Bad input: the message is the one line printed."""


def _tasks(cfg) -> List[str]:
    from vlmrl.envs.behaviours import behaviours_for
    from vlmrl.envs.tasks import get_task

    tasks = list(cfg.audit.tasks) or [cfg.env.task]
    for t in tasks:
        try:
            env_id = get_task(t).env_id
        except KeyError as e:
            raise AuditInputError(f"{e.args[0]}; set audit.tasks=[...] or env.task") from None
        try:
            behaviours_for(env_id, list(cfg.audit.behaviours))
        except ValueError as e:
            raise AuditInputError(f"{t}: {e}") from None
    return tasks


def _dataset_seeds(items: Sequence[Any]) -> set:
    """Env seeds of the project-format datasets among ``items`` (other formats carry none)."""
    from vlmrl.envs.dataset import read_index

    seeds = set()
    for item in items:
        path = item if isinstance(item, str) else (item.get("path") if item.get("format", "episodes") == "episodes"
                                                    else None)
        if path and (Path(path) / "index.jsonl").exists():
            seeds |= {int(e.get("seed", -1)) for e in read_index(path)}
    return seeds


def _check_held_out(cfg, seeds: set) -> None:
    a = cfg.audit
    used = _dataset_seeds(list(cfg.lrm_train.dataset_dirs) + [a.negatives_dir, a.mined_dir])
    clash = sorted(used & seeds)
    if clash:
        fix = ("record audit.episodes_dirs on other seeds" if a.episodes_dirs else
               "set audit.seed to a range no dataset used")
        raise AuditInputError(f"audit seeds {clash[0]}.. were used by the reward model's training data; {fix}")


def _behaviour_of(entry: dict) -> str:
    """The library behaviour an index entry of a training dataset is an instance of ('' if none)."""
    meta = entry.get("meta", {})
    if meta.get("behaviour"):
        return meta["behaviour"]
    if entry.get("source") == "near_miss" and meta.get("near_miss"):  # vlmrl record-demos' near misses
        return f"near_miss_{meta['near_miss']}"
    return {"retreat": "solve_retreat", "demo": "solve"}.get(entry.get("source", ""), "")


def _item_kind_problem(cfg, scorer_kind: str) -> str:
    want = str(cfg.reward.item_kind)
    if want not in ("auto", scorer_kind):
        return (f"reward.item_kind={want} but scorer {cfg.scorer.name!r} takes {scorer_kind} items; "
                f"set reward.item_kind={scorer_kind} (or auto)")
    return ""


@contextlib.contextmanager
def _scorer(cfg) -> Iterator[Any]:
    """The configured scorer, in-process or as a client over reward workers (``audit.workers``)."""
    from omegaconf import OmegaConf

    from vlmrl.reward_workers.scorers.base import ScorerError, build_scorer

    if cfg.audit.workers == "inprocess":
        try:
            scorer = build_scorer(cfg.scorer.name, OmegaConf.to_container(cfg.scorer.params, resolve=True))
        except ScorerError as e:
            hint = ("; train one with `vlmrl lrm-train <config>` or set scorer.params.weights_dir"
                    if "weights_dir" in str(e) else "")
            raise AuditInputError(f"{e}{hint}") from None
        try:
            problem = _item_kind_problem(cfg, scorer.item_kind.value)
            if problem:
                raise AuditInputError(problem)
            yield scorer
        finally:
            scorer.close()
        return
    from vlmrl.learner.labels.label_workers import WORKER_SOURCES, open_label_workers
    from vlmrl.learner.reward_training.reward_audit import ClientScorer

    if cfg.audit.workers not in WORKER_SOURCES:
        raise AuditInputError(f"audit.workers must be inprocess or one of {list(WORKER_SOURCES)}, "
                              f"got {cfg.audit.workers!r}")
    lcfg = cfg.copy()
    lcfg.label.workers, lcfg.label.addresses = cfg.audit.workers, list(cfg.audit.addresses)
    if cfg.audit.workers == "pool":
        from vlmrl.reward_workers.pool import ensure_ray

        ensure_ray(cfg.pool, num_cpus=max(2, int(cfg.pool.num_workers)), log_to_driver=False)
    with open_label_workers(lcfg) as workers:
        problem = _item_kind_problem(cfg, workers.item_kind)
        if problem:
            raise AuditInputError(problem)
        yield ClientScorer(workers.client, workers.item_kind, int(cfg.reward.window_size))


class _LabelWatch:
    """Passes a scorer through; refuses one whose results are categorical labels (a pairwise labeller)."""

    def __init__(self, scorer: Any, name: str) -> None:
        self.scorer, self.name = scorer, name
        self.item_kind, self.frames_per_item = scorer.item_kind, scorer.frames_per_item

    def score_batch(self, tasks, items):
        res = self.scorer.score_batch(tasks, items)
        if any(r.label and "progress" not in r.components for r in res):
            raise AuditInputError(f"scorer {self.name!r} labels pairs (first / second / none) instead of valuing "
                                  "frames; audit a per-frame reward (bt_reward, compact_lrm, lrm, window, clip)")
        return res


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:
        tasks = _tasks(cfg)
        if args.record_negatives and args.mine_negatives:
            raise AuditInputError("give one of --record-negatives and --mine-negatives")
        if args.record_negatives:
            return _record_negatives(cfg, tasks)
        if args.mine_negatives:
            return _mine_negatives(cfg, tasks)
        return _audit(cfg, tasks)
    except AuditInputError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2


def _record_negatives(cfg, tasks: List[str]) -> int:
    from vlmrl.envs.behaviours import BEHAVIOURS, behaviours_for, record_behaviours
    from vlmrl.envs.tasks import get_task

    a = cfg.audit
    policy_runs = _policy_runs(cfg, tasks)  # bad runs are refused before anything is recorded
    names = list(a.negatives_behaviours) or [n for n, b in BEHAVIOURS.items() if b.category == "non_progress"]
    counts = {str(n): int(c) for n, c in dict(a.negatives_counts or {}).items()}
    bad = {n: c for n, c in counts.items() if c < 0}
    if bad or int(a.negatives_per_behaviour) < 0:
        raise AuditInputError(f"episode counts must be >= 0: audit.negatives_per_behaviour="
                              f"{a.negatives_per_behaviour}, audit.negatives_counts {bad or {}}")
    for k, task in enumerate(tasks):
        try:  # unknown names are refused; push-only ones drop out on a lift task
            runs = {b.name for b in behaviours_for(get_task(task).env_id, [*names, *counts])}
        except ValueError as e:
            raise AuditInputError(f"{task}: {e} (audit.negatives_behaviours / audit.negatives_counts)") from None
        groups = [([n for n in names if n in runs and n not in counts], int(a.negatives_per_behaviour)),
                  *(([n], counts[n]) for n in names if n in runs and n in counts)]
        seed = int(a.negatives_seed) + 10_000 * k
        for group, per in groups:
            if group and per:
                record_behaviours(cfg.env, task, a.negatives_dir, group, per, seed, int(a.negatives_frame_stride))
                seed += len(group) * per
    _record_policy_episodes(cfg, policy_runs)
    return 0


def _policy_runs(cfg, tasks: List[str]) -> List[tuple]:
    """(index, path, env id) of each of ``audit.policy_runs``; bad folders and runs of a task outside ``tasks`` are
    refused with the fix."""
    from omegaconf import OmegaConf

    from vlmrl.envs.tasks import get_task
    from vlmrl.learner.reward_training.policy_episodes import RUN_SEEDS
    from vlmrl.learner.run_files import latest_checkpoint, run_and_checkpoint

    a, out = cfg.audit, []
    if a.policy_runs and not 1 <= int(a.policy_episodes) <= RUN_SEEDS:
        raise AuditInputError(f"audit.policy_episodes={a.policy_episodes}: give how many episodes per run, 1-{RUN_SEEDS}")
    ids = {get_task(t).env_id for t in tasks}
    for k, path in enumerate(a.policy_runs):
        run, ckpt = run_and_checkpoint(path)
        if not (run / "config.yaml").exists():
            raise AuditInputError(f"audit.policy_runs: {path} is not a `vlmrl train` run folder (no config.yaml)")
        task = OmegaConf.load(run / "config.yaml").env.task
        env_id = get_task(task).env_id
        if env_id not in ids:
            raise AuditInputError(f"audit.policy_runs: {path} is a {task} run; the audit covers {sorted(ids)} "
                                  f"(set audit.tasks=[{task}] or drop it)")
        if ckpt is None and latest_checkpoint(run) is None:
            raise AuditInputError(f"audit.policy_runs: no checkpoint in {path}; give a run that saved one "
                                  f"(train.checkpoint_every > 0, or its end)")
        out.append((k, str(path), env_id))
    return out


def _record_policy_episodes(cfg, runs: List[tuple]) -> None:
    from vlmrl.envs.dataset import EpisodeWriter
    from vlmrl.learner.reward_training.policy_episodes import iter_policy_episodes

    a = cfg.audit
    for k, path, _ in runs:
        writer, n, wins = EpisodeWriter(a.negatives_dir), 0, 0
        for ep in _policy_iter(iter_policy_episodes, path, int(a.policy_episodes), int(a.negatives_seed), k,
                               int(a.negatives_frame_stride)):
            writer.write(ep)
            n, wins = n + 1, wins + int(bool(ep.success[-1]))
        print(f"policy episodes: {n} of {path} ({wins} end in success) -> {a.negatives_dir}", flush=True)


def _policy_iter(fn, *args) -> Iterator[Any]:
    """``fn(*args)``'s episodes, a run folder without a checkpoint turned into the one-line input error."""
    try:
        yield from fn(*args)
    except FileNotFoundError as e:
        raise AuditInputError(f"audit.policy_runs: {e}; give a run that saved a checkpoint "
                              f"(train.checkpoint_every > 0, or its end)") from None


def _mine_negatives(cfg, tasks: List[str]) -> int:
    from vlmrl.envs.behaviours import iter_behaviour_episodes
    from vlmrl.envs.dataset import EpisodeWriter
    from vlmrl.learner.reward_training.reward_audit import over_paid, score_episode
    from vlmrl.learner.reward_training.reward_eval import scorer_predictor

    a = cfg.audit
    if int(a.mine_per_behaviour) < 1:
        raise AuditInputError(f"audit.mine_per_behaviour={a.mine_per_behaviour}: set how many candidate episodes per "
                              "behaviour to roll out, e.g. audit.mine_per_behaviour=6")
    if (Path(a.mined_dir) / "index.jsonl").exists():
        raise AuditInputError(f"audit.mined_dir {a.mined_dir} already holds a dataset; remove it or name another")
    share = None if a.real_progress_share is None else float(a.real_progress_share)
    writer = None
    with _scorer(cfg) as scorer:
        predict = scorer_predictor(_LabelWatch(scorer, cfg.scorer.name), int(a.batch_size), int(cfg.reward.window_size))
        for k, task in enumerate(tasks):
            t0 = time.monotonic()
            scored = []
            for ep in iter_behaviour_episodes(cfg.env, task, list(a.behaviours), int(a.mine_per_behaviour),
                                              int(a.mine_seed) + 10_000 * k, int(a.negatives_frame_stride)):
                scored.append((ep, score_episode(ep, predict)))
                if len(scored) % 10 == 0:
                    print(f"mine {task}: {len(scored)} candidate episodes scored", flush=True)
            if not any(r.category == "success" and r.success for _, r in scored):
                raise AuditInputError(f"{task}: no successful candidate episode to measure over-payment against; "
                                      "keep a success behaviour (solve) in audit.behaviours")
            bad = {id(r) for r in over_paid([r for _, r in scored], float(a.max_margin), float(a.complete_threshold),
                                            share)}
            kept = [(ep, r) for ep, r in scored if id(r) in bad]
            for ep, _ in kept:
                writer = writer or EpisodeWriter(a.mined_dir)
                writer.write(ep)
            counts = Counter(r.behaviour for _, r in kept)
            print(f"{PROG}: {task}: {len(kept)} of {len(scored)} candidate episodes over-paid (training seeds from "
                  f"{int(a.mine_seed) + 10_000 * k}, {time.monotonic() - t0:.0f}s)"
                  + (": " + ", ".join(f"{n} {c}" for n, c in counts.items()) + f" -> {a.mined_dir}" if kept else ""),
                  flush=True)
    if writer is None:
        print(f"{PROG}: nothing to mine: the scorer over-pays none of the candidates")
    return 0


def _scored_policy_episodes(cfg, task: str, runs: List[tuple], predict) -> list:
    """The episodes of those ``runs`` (:func:`_policy_runs`) that ran ``task``'s env, on held-out seeds, scored."""
    from vlmrl.envs.tasks import get_task
    from vlmrl.learner.reward_training.policy_episodes import iter_policy_episodes
    from vlmrl.learner.reward_training.reward_audit import score_episode

    a, out = cfg.audit, []
    for k, path, env_id in runs:
        if env_id != get_task(task).env_id:
            continue
        for ep in _policy_iter(iter_policy_episodes, path, int(a.policy_episodes), int(a.seed), k, int(a.frame_stride)):
            out.append(score_episode(ep, predict))
        print(f"audit {task}: {len(out)} policy episodes scored ({path})", flush=True)
    return out


def _audit(cfg, tasks: List[str]) -> int:
    from vlmrl.envs.behaviours import behaviour_seeds, behaviours_for
    from vlmrl.envs.dataset import read_index
    from vlmrl.envs.tasks import get_task
    from vlmrl.learner.reward_training.reward_audit import (audit_task, format_summary, gate, plot_progress, recorded_episodes,
                                            score_episode, summarise)
    from vlmrl.learner.reward_training.reward_eval import scorer_predictor

    a = cfg.audit
    recorded, policy_runs = None, []
    if a.episodes_dirs:
        missing = [d for d in a.episodes_dirs if not (Path(d) / "index.jsonl").exists()]
        if missing:
            raise AuditInputError(f"audit.episodes_dirs {missing} hold no dataset; record one with "
                                  f"`vlmrl audit-reward --record-negatives` (audit.negatives_dir, held-out seeds)")
        recorded = recorded_episodes(list(a.episodes_dirs), list(a.behaviours))
        by_id = {get_task(t).env_id: t for t in tasks}
        recorded = {by_id.get(k, k): v for k, v in recorded.items()}
        tasks = list(recorded)
        if not tasks:
            raise AuditInputError(f"audit.episodes_dirs {list(a.episodes_dirs)} hold no behaviour episodes")
        _check_held_out(cfg, {ep.seed for eps in recorded.values() for ep in eps})
    else:
        from vlmrl.learner.reward_training.policy_episodes import policy_seeds

        n_beh = max(len(behaviours_for(get_task(t).env_id, list(a.behaviours))) for t in tasks)
        seeds = set(behaviour_seeds(n_beh, int(a.episodes_per_behaviour), int(a.seed)))
        policy_runs = _policy_runs(cfg, tasks)
        for k, _, _ in policy_runs:
            seeds |= set(policy_seeds(int(a.seed), k, int(a.policy_episodes)))
        _check_held_out(cfg, seeds)
    trained_on = set()
    for item in list(cfg.lrm_train.dataset_dirs):
        path = item if isinstance(item, str) else item.get("path")
        if path and (Path(path) / "index.jsonl").exists():
            trained_on |= {_behaviour_of(e) for e in read_index(path)}
    out = Path(a.out_dir)
    report = {"scorer": {"name": cfg.scorer.name, "workers": a.workers}, "seed": int(a.seed),
              "episodes_dirs": list(a.episodes_dirs),
              "thresholds": {"max_margin": float(a.max_margin), "max_complete_share": float(a.max_complete_share),
                             "complete_threshold": float(a.complete_threshold),
                             "real_progress_share": a.real_progress_share,
                             "min_dense_agreement": a.min_dense_agreement,
                             "dense_tie_threshold": float(a.dense_tie_threshold)}, "tasks": {}}
    records_by_task, failures = {}, []
    with _scorer(cfg) as scorer:
        predict = scorer_predictor(_LabelWatch(scorer, cfg.scorer.name), int(a.batch_size), int(cfg.reward.window_size))
        for task in tasks:
            t0 = time.monotonic()
            if recorded is not None:
                records = [score_episode(ep, predict) for ep in recorded[task]]
            else:
                records = audit_task(cfg.env, task, predict, list(a.behaviours), int(a.episodes_per_behaviour),
                                     int(a.seed), int(a.frame_stride), log=lambda m: print(m, flush=True))
                records += _scored_policy_episodes(cfg, task, policy_runs, predict)
            share = None if a.real_progress_share is None else float(a.real_progress_share)
            summary = summarise(records, float(a.complete_threshold), sorted(n for n in trained_on if n), share,
                                float(a.dense_tie_threshold))
            summary["seconds"] = round(time.monotonic() - t0, 1)
            bad = gate(summary, float(a.max_margin), float(a.max_complete_share),
                       None if a.min_dense_agreement is None else float(a.min_dense_agreement))
            summary["violations"] = bad
            report["tasks"][task] = summary
            records_by_task[task] = records
            failures += [f"{task} {b}" for b in bad]
            print(format_summary(task, summary) + f"\n({summary['seconds']:.0f}s)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out)
    report["passed"] = not failures
    (out / "audit.json").write_text(json.dumps(report, indent=2))
    plot_progress(records_by_task, out / "progress_over_time.png")
    print(f"audit-reward: wrote {out / 'audit.json'} and {out / 'progress_over_time.png'}")
    if failures:
        print(f"audit-reward: FAILED ({len(failures)}): " + "; ".join(failures))
        return 1
    print("audit-reward: passed: no non-progress behaviour exceeds the thresholds")
    return 0
