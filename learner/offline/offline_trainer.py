"""The offline training job of ``vlmrl offline``: convert, embed task texts, train IQL, evaluate, log.

:class:`OfflineTrainer` converts ``offline.dataset`` into transitions with the configured reward
(:mod:`vlmrl.learner.offline.offline_conversion`, under ``<run dir>/data``), embeds every task text of the data
and of the evaluation splits (:mod:`vlmrl.learner.offline.task_embedding_connector`), builds RLlib's IQL with AWR
extraction (:mod:`vlmrl.learner.offline.iql_builder`) and runs ``offline.iterations`` iterations. Each prints one
progress line and writes TensorBoard scalars under ``<run dir>/tb`` (same layout as ``vlmrl train``):

    losses/   value_loss (expectile), qf_loss, qf_twin_loss, policy_loss (AWR actor)
    values/   value_mean, q_target_mean, advantage_mean, awr_weight_mean, awr_weight_clipped_fraction
    charts/   updates_per_s, transitions_per_s, iteration_s, setup_s, transitions_trained, learner_updates
    eval/     <split>_success_rate, <split>_return, <split>_episode_len, generalisation_drop_*_pct

Checkpoints (``algo.save_to_path``) go to ``<run dir>/checkpoints/iter_NNNNNN`` with ``latest.json``
(``vlmrl train``'s layout, plus the ``transitions`` and learner ``updates`` counts). ``offline.resume=true``
restores the newest one (weights, optimizer state, RLlib's metrics and iteration) and continues with the next
iteration up to ``offline.iterations`` in total; TensorBoard steps (iterations) and counters continue in the
same run dir. The evaluation (:mod:`vlmrl.learner.offline.offline_eval`) runs every
``offline.eval_every`` iterations and after the last one; the final one is saved as ``eval.json``.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np
from omegaconf import DictConfig

from vlmrl.learner.run_files import CHECKPOINT_DIR, LATEST, TB_DIR, latest_checkpoint, prune_checkpoints

log = logging.getLogger(__name__)

DATA_DIR = "data"
EVAL_FILE = "eval.json"
_LOSSES = ("value_loss", "qf_loss", "qf_twin_loss", "policy_loss")
_VALUES = ("value_mean", "q_target_mean", "advantage_mean", "awr_weight_mean", "awr_weight_clipped_fraction")


def scalars_from_iql_result(result: Mapping[str, Any]) -> Dict[str, float]:
    """The prefixed scalars of one IQL ``algo.train()`` result (``losses/`` and ``values/``)."""
    module = (result.get("learners", {}) or {}).get("default_policy", {}) or {}
    out: Dict[str, float] = {}
    for prefix, names in (("losses", _LOSSES), ("values", _VALUES)):
        for name in names:
            try:
                v = float(module[name])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(v):
                out[f"{prefix}/{name}"] = v
    if "num_module_steps_trained" in module:
        out["charts/transitions_this_iter"] = float(module["num_module_steps_trained"])
    updates = ((result.get("learners", {}) or {}).get("__all_modules__", {}) or {}).get("dataset_num_iters_trained")
    if updates is not None:
        out["charts/updates_this_iter"] = float(updates)
    return out


class OfflineTrainer:
    """One ``vlmrl offline`` job (see module doc). ``print_fn`` receives the progress lines."""

    def __init__(self, cfg: DictConfig, run_dir: Path, print_fn=print) -> None:
        from vlmrl.learner.offline.iql_builder import check_offline_config

        check_offline_config(cfg.offline)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume_from = self._resume_checkpoint() if cfg.offline.resume else None
        self.print = print_fn
        self.algo = None
        self.writer = None
        self.summary = None
        self.table: Dict[str, np.ndarray] = {}
        self.iteration = 0
        self.transitions = 0
        self.updates = 0
        self.timings: Dict[str, float] = {}
        self.last_eval = None

    # ------------------------------------------------------------------ setup
    def prepare_data(self) -> None:
        """Convert the dataset and build the task-text embedding table (no Ray needed)."""
        from vlmrl.learner.offline.offline_conversion import RewardSpec, convert_offline_dataset
        from vlmrl.learner.offline.offline_eval import task_texts
        from vlmrl.learner.offline.task_embedding_connector import build_embedding_table

        oc = self.cfg.offline
        t0 = time.perf_counter()
        spec = RewardSpec(reward=oc.reward, vlm_weight=oc.vlm_weight, sparse_weight=oc.sparse_weight,
                          success_reward=oc.success_reward, terminal_on_success=oc.terminal_on_success,
                          action_clip=oc.action_clip)
        self.summary = convert_offline_dataset(oc.dataset, self.run_dir / DATA_DIR, spec,
                                               source_format=oc.dataset_format, max_episodes=oc.max_episodes)
        s = self.summary
        self.print(f"data: {s.num_rows} transitions from {s.num_episodes} episodes ({s.source_format}, {s.env_ids}), "
                   f"reward={s.reward} (mean {s.reward_mean:.3f}), {len(s.task_texts)} task texts, "
                   f"terminal {100 * s.terminal_fraction:.1f}%")
        self.timings["convert_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        texts = set(s.task_texts)
        for split in oc.eval_splits:
            texts.update(task_texts(str(self.cfg.env.task), split))
        self.table = build_embedding_table(texts, oc.text_embedding)
        self.timings["embed_s"] = time.perf_counter() - t0

    def build(self) -> None:
        import torch

        from vlmrl.learner.offline.iql_builder import build_iql_config
        from vlmrl.reward_workers.pool import ensure_ray

        torch.set_num_threads(max(1, int(self.cfg.offline.num_threads)))
        t0 = time.perf_counter()
        ensure_ray(self.cfg.pool)
        self.timings["ray_init_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.algo = build_iql_config(self.cfg.offline, self.summary, self.table, seed=int(self.cfg.seed)).build_algo()
        self.timings["build_algo_s"] = time.perf_counter() - t0

    # ------------------------------------------------------------------ main
    def run(self) -> int:
        from torch.utils.tensorboard import SummaryWriter

        oc = self.cfg.offline
        total = int(oc.iterations)
        if self.resume_from is not None and int(self.resume_from["iteration"]) >= total:
            self.print(f"already at iteration {self.resume_from['iteration']} of {total}; nothing to do")
            return 0
        try:
            self.prepare_data()
            self.build()
            if self.resume_from is not None:
                self._restore()
            self.writer = SummaryWriter(str(self.run_dir / TB_DIR))
            setup_s = sum(self.timings.values())
            self.print(f"setup {setup_s:.1f}s (" + ", ".join(f"{k} {v:.1f}" for k, v in self.timings.items()) + ")")
            self.writer.add_scalar("charts/setup_s", setup_s, self.iteration)
            first = self.iteration + 1
            while self.iteration < total:
                t0 = time.perf_counter()
                result = self.algo.train()
                wall = time.perf_counter() - t0
                self.iteration += 1
                s = scalars_from_iql_result(result)
                n = s.pop("charts/transitions_this_iter", 0.0)
                self.transitions += int(n)
                u = int(s.pop("charts/updates_this_iter", oc.updates_per_iteration))
                self.updates += u
                s["charts/iteration_s"] = wall
                s["charts/updates_per_s"] = u / max(wall, 1e-9)
                s["charts/transitions_per_s"] = n / max(wall, 1e-9)
                s["charts/transitions_trained"] = float(self.transitions)
                s["charts/learner_updates"] = float(self.updates)
                if self.iteration == first:
                    self.timings["first_iteration_s"] = wall
                every = int(oc.eval_every)
                if self.iteration == total or (every > 0 and self.iteration % every == 0):
                    self.last_eval = self.evaluate()
                    s.update(self.last_eval.scalars())
                for k, v in sorted(s.items()):
                    self.writer.add_scalar(k, v, self.iteration)
                self.print(self._line(total, s))
                ck = int(oc.checkpoint_every)
                if self.iteration == total or (ck > 0 and self.iteration % ck == 0):
                    self._save()
                self.writer.flush()
            if self.last_eval is not None:
                out = self.last_eval.to_dict() | {"iteration": self.iteration, "reward": oc.reward,
                                                  "timings": self.timings}
                (self.run_dir / EVAL_FILE).write_text(json.dumps(out, indent=1))
                self.print(self._eval_lines(self.last_eval))
            return 0
        finally:
            self.close()

    def evaluate(self):
        from vlmrl.learner.offline.offline_eval import evaluate_policy, rl_module_policy

        oc = self.cfg.offline
        t0 = time.perf_counter()
        res = evaluate_policy(rl_module_policy(self.trained_module()), self.cfg.env, self.table,
                              list(oc.eval_splits), int(oc.eval_episodes), int(oc.eval_seed), oc.eval_max_steps)
        self.timings["last_eval_s"] = time.perf_counter() - t0
        return res

    def trained_module(self) -> Any:
        """The learner's RLModule (IQL runs without env runners, so ``algo.get_module()`` has none to ask).
        Local learner: the live module; remote learners: a copy built from the first learner's weights."""
        from ray.rllib.core import DEFAULT_MODULE_ID

        group = self.algo.learner_group
        if group.is_local:
            return next(iter(group.foreach_learner(lambda learner: learner.module[DEFAULT_MODULE_ID]))).get()
        state = next(iter(group.foreach_learner(lambda learner: learner.module[DEFAULT_MODULE_ID].get_state()))).get()
        module = self.algo.config.get_rl_module_spec(
            spaces=self.algo.offline_data.spaces, inference_only=False).build()
        module.set_state(state)
        return module

    # ------------------------------------------------------------------ output
    def _line(self, total_iters: int, s: Mapping[str, float]) -> str:
        def g(key: str, fmt: str) -> str:
            return format(s[key], fmt) if key in s else "-"

        parts = [f"iter {self.iteration}/{total_iters}"]
        parts += [f"V loss {g('losses/value_loss', '.4f')}", f"Q loss {g('losses/qf_loss', '.4f')}",
                  f"actor {g('losses/policy_loss', '.3f')}", f"V {g('values/value_mean', '.3f')}",
                  f"adv {g('values/advantage_mean', '+.3f')}", f"w {g('values/awr_weight_mean', '.2f')}",
                  f"{g('charts/updates_per_s', '.1f')} upd/s"]
        if "eval/seen_success_rate" in s or "eval/unseen_success_rate" in s:
            parts.append(f"eval success seen {g('eval/seen_success_rate', '.2f')} unseen "
                         f"{g('eval/unseen_success_rate', '.2f')}")
        return " | ".join(parts)

    def _eval_lines(self, res) -> str:
        lines = [f"evaluation on {res.task} (held-out seeds from {self.cfg.offline.eval_seed}):"]
        for name, sp in res.splits.items():
            lines.append(f"  {name:7s} success {sp.success_rate:.2f}  return {sp.return_mean:.2f}  "
                         f"len {sp.length_mean:.1f}  ({sp.episodes} episodes)")
        d = res.drop("success_rate")
        if d is not None:
            lines.append(f"  generalisation drop seen -> unseen: success {d:.1f}%, return {res.drop('return_mean'):.1f}%")
        return "\n".join(lines)

    def _save(self) -> Path:
        root = self.run_dir / CHECKPOINT_DIR
        path = root / f"iter_{self.iteration:06d}"
        self.algo.save_to_path(str(path.resolve()))
        (root / LATEST).write_text(json.dumps({"iteration": self.iteration, "path": str(path.resolve()),
                                               "transitions": self.transitions, "updates": self.updates}))
        prune_checkpoints(self.run_dir, int(self.cfg.offline.keep_checkpoints))
        self.print(f"checkpoint: {path}")
        return path

    def _resume_checkpoint(self) -> Dict[str, Any]:
        """``latest.json`` of the run dir with ``path`` checked (checked before any setup: a clear error)."""
        latest = latest_checkpoint(self.run_dir)
        where = self.run_dir / CHECKPOINT_DIR
        if latest is None:
            raise ValueError(f"offline.resume=true but {where / LATEST} does not exist (no checkpoint saved in this "
                             f"run dir yet; the run dir is <output_dir>/<run_name>)")
        path = Path(latest["path"])
        if not path.is_dir() and (where / path.name).is_dir():  # run dir moved since: the same checkpoint here
            path = where / path.name
        if not path.is_dir():
            raise ValueError(f"offline.resume=true but the checkpoint {latest['path']} named by {where / LATEST} "
                             f"does not exist")
        return dict(latest, path=str(path.resolve()))

    def _restore(self) -> None:
        latest = self.resume_from
        self.algo.restore_from_path(latest["path"])
        self.iteration = int(latest["iteration"])
        self.transitions = int(latest.get("transitions", 0))
        self.updates = int(latest.get("updates", self.iteration * int(self.cfg.offline.updates_per_iteration)))
        self.print(f"resumed from {latest['path']} (iteration {self.iteration}, {self.updates} learner updates, "
                   f"{self.transitions} transitions)")

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.algo is not None:
            # Close Ray Data's iterators while Ray is up (else their generators end after ray.shutdown and print
            # "Ray is not initialized" tracebacks): the offline data's and the local learner's own.
            if getattr(self.algo, "offline_data", None) is not None:
                self.algo.offline_data.batch_iterators = None
            local_learner = getattr(getattr(self.algo, "learner_group", None), "_learner", None)
            if local_learner is not None:
                local_learner.iterator = None
            gc.collect()
            self.algo.stop()
            self.algo = None
