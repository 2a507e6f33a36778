"""The online training job of ``vlmrl train``: Ray, the reward worker pool, PPO, logging, checkpoints.

:class:`OnlineTrainer` connects to Ray (a local instance, or a cluster with ``pool.ray_address=auto``),
starts the reward worker pool as part of the job (``train.start_pool``; or uses a running pool /
``reward.addresses``), builds the PPO algorithm of :mod:`vlmrl.learner.online.ppo_builder`, and trains for
``train.iterations`` iterations. Each iteration prints one progress line and writes TensorBoard
scalars (``charts/ losses/ reward/ workers/``, see :mod:`vlmrl.learner.online.train_metrics`) under
``<run dir>/tb``; every ``train.image_every`` iterations an episode's frames with its reward curve.
Checkpoints (``algo.save_to_path``) go to ``<run dir>/checkpoints/iter_NNNNNN`` with
``latest.json`` naming the newest; ``train.resume=true`` restores it (weights, optimizer, RLlib's
metrics incl. the lifetime env step count) and continues with the next iteration.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, Optional

from omegaconf import DictConfig

from vlmrl.learner.run_files import CHECKPOINT_DIR, LATEST, TB_DIR, latest_checkpoint, prune_checkpoints
from vlmrl.learner.online.training_mode import TrainingMode

log = logging.getLogger(__name__)


class OnlineTrainer:
    """One ``vlmrl train`` job (see module doc). ``print_fn`` receives the progress lines."""

    def __init__(self, cfg: DictConfig, run_dir: Path, print_fn=print) -> None:
        from vlmrl.learner.online.ppo_builder import check_train_config

        check_train_config(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.print = print_fn
        self.pool = None
        self._own_pool = False
        self.algo = None
        self.writer = None
        self.iteration = 0
        self.mode_hook = self._mode_hook()

    def _mode_hook(self) -> TrainingMode:
        """Per-mode work around PPO iterations: ``preference`` -> PreferenceMode, ``lrm`` -> LrmRefineMode,
        ``reward_refresh.every`` > 0 -> RewardRefreshMode (``vlm-score`` only: it checks), any other the do-nothing
        :class:`TrainingMode`."""
        if int(self.cfg.reward_refresh.every) > 0:
            from vlmrl.learner.online.reward_refresh import RewardRefreshMode

            return RewardRefreshMode(self.cfg, self.run_dir, self.print)  # refuses any mode but vlm-score
        if self.cfg.train.mode == "preference":
            from vlmrl.learner.preference.mode import PreferenceMode

            return PreferenceMode(self.cfg, self.run_dir, self.print)
        if self.cfg.train.mode == "lrm":
            from vlmrl.learner.online.lrm_refine import LrmRefineMode

            return LrmRefineMode(self.cfg, self.run_dir, self.print)
        return TrainingMode()

    # ------------------------------------------------------------------ setup
    def _start_reward_service(self) -> str:
        """Start/attach the pool; returns the item kind the actors send."""
        from vlmrl.reward_workers.pool import RewardWorkerPool

        cfg = self.cfg
        kind = str(cfg.reward.item_kind)
        if cfg.reward.addresses:
            if kind == "auto":
                raise ValueError("reward.item_kind=auto needs the pool's workers; with reward.addresses set it "
                                 "explicitly (frame, pair or window)")
            return kind
        if cfg.train.start_pool:
            self.pool = RewardWorkerPool(cfg)
            self._own_pool = True
            t0 = time.perf_counter()
            addrs = self.pool.start()
            self.print(f"reward worker pool: {len(addrs)} x {cfg.scorer.name} up in {time.perf_counter() - t0:.1f}s "
                       f"({', '.join(sorted(addrs.values()))})")
        else:
            self.pool = RewardWorkerPool.attach(cfg)
        if kind == "auto":
            rows = [r for r in self.pool.status() if "item_kind" in r]
            if not rows:
                raise ValueError("reward.item_kind=auto but no reward worker answered Info; set it explicitly")
            kind = str(rows[0]["item_kind"])
        return kind

    def _worker_scalars(self) -> Dict[str, float]:
        from vlmrl.learner.online.train_metrics import pool_scalars, scalars_from_worker_status

        if self.pool is None:
            return {}
        try:
            out = scalars_from_worker_status(self.pool.status(timeout_s=5.0))
            out.update(pool_scalars(self.pool.health(timeout_s=5.0)))
            return out
        except Exception as e:  # noqa: BLE001 - worker stats are informative; training goes on
            log.warning("reward worker status failed: %s", e)
            return {}

    # ------------------------------------------------------------------ main
    def run(self) -> int:
        from torch.utils.tensorboard import SummaryWriter

        from vlmrl.learner.online.ppo_builder import build_ppo_config, uses_reward_pool
        from vlmrl.learner.online.train_metrics import console_line, scalars_from_result
        from vlmrl.reward_workers.pool import ensure_ray

        cfg = self.cfg
        ensure_ray(cfg.pool)
        try:
            item_kind = self._start_reward_service() if uses_reward_pool(cfg) else None
            self.mode_hook.start(self.pool)
            extra = self.mode_hook.extra_callbacks()
            self.algo = build_ppo_config(cfg, item_kind=item_kind, extra_callbacks=extra).build_algo()
            self.mode_hook.on_algo_built(self.algo)  # lrm: clone the base policy into PPO's module
            if cfg.train.resume:
                self._restore()
            self.writer = SummaryWriter(str(self.run_dir / TB_DIR))
            if not cfg.train.resume:
                self.mode_hook.before_training(self.algo)  # preference: optional reward-model warm-up
            total = int(cfg.train.iterations)
            if self.iteration >= total:
                self.print(f"already at iteration {self.iteration} of {total}; nothing to do")
            last_steps = None
            while self.iteration < total:
                t0 = time.perf_counter()
                try:
                    result = self.algo.train()
                except Exception as e:
                    self._stop_on_reward_outage(e, last_steps)
                    raise
                wall = time.perf_counter() - t0
                self.iteration += 1
                s = scalars_from_result(result)
                steps = s.get("charts/env_steps", 0.0)
                prev = last_steps if last_steps is not None else steps - float(
                    result.get("env_runners", {}).get("num_env_steps_sampled", 0) or 0)
                s["charts/env_steps_per_s"] = (steps - prev) / max(wall, 1e-9)
                s["charts/iteration_s"] = wall
                last_steps = steps
                s.update(self._worker_scalars())
                s.update(self.mode_hook.after_iteration(self.algo, self.iteration))
                for k, v in sorted(s.items()):
                    self.writer.add_scalar(k, v, int(steps))
                for tag, img in self.mode_hook.pop_images():
                    self.writer.add_image(tag, img, int(steps), dataformats="HWC")  # preference: a labelled pair
                self._maybe_log_timeline(int(steps))
                self.print(console_line(self.iteration, total, s))
                if self.mode_hook.last_console_line:
                    self.print(self.mode_hook.last_console_line)
                every = int(cfg.train.checkpoint_every)
                if self.iteration == total or (every > 0 and self.iteration % every == 0):
                    self._save(int(steps))
                self.writer.flush()
            return 0
        finally:
            self.close()

    def _stop_on_reward_outage(self, error: Exception, env_steps: Optional[float]) -> None:
        """An iteration failed because rewards could not be obtained (no reward worker within
        ``client.no_worker_wait_s``, or a reward refused): save a resumable checkpoint of the last finished
        iteration (the failed one changed no weights) and say why the run stops. Other errors pass untouched."""
        text = f"{type(error).__name__}: {error}"
        if "RewardPathError" not in text and "RewardUnavailableError" not in text:
            return
        reason = next((line.strip() for line in text.splitlines() if "RewardUnavailableError" in line
                       or "RewardPathError" in line), text.splitlines()[0])[:600]
        self.print(f"run stopped at iteration {self.iteration + 1}: no rewards from the reward service ({reason})")
        if self.algo is None or self.iteration == 0:
            self.print("no iteration finished yet: nothing to checkpoint")
            return
        try:
            path = self._save(int(env_steps or 0))
            self.print(f"resumable checkpoint of iteration {self.iteration}: {path} (rerun with train.resume=true)")
        except Exception as e:  # noqa: BLE001 - the original error is what the user must see
            self.print(f"saving a checkpoint after the reward outage failed: {type(e).__name__}: {e}")

    # ------------------------------------------------------------------ images
    def _maybe_log_timeline(self, step: int) -> None:
        from vlmrl.learner.online.ppo_builder import uses_reward_pool

        every = int(self.cfg.train.image_every)
        if not uses_reward_pool(self.cfg) or every <= 0 or self.iteration % every:
            return
        from vlmrl.actors.reward_callback import callbacks_of
        from vlmrl.actors.timeline import render_timeline

        found = self.algo.env_runner_group.foreach_env_runner(
            lambda er: [cb.pop_timeline() for cb in callbacks_of(er)])
        timelines = [tl for per_runner in found for tl in per_runner if tl is not None]
        if timelines:
            img = render_timeline(timelines[0], title=f"iteration {self.iteration}")
            self.writer.add_image("reward/episode_timeline", img, step, dataformats="HWC")

    # ------------------------------------------------------------------ checkpoints
    def _save(self, env_steps: int) -> Path:
        ckpt_root = self.run_dir / CHECKPOINT_DIR
        path = ckpt_root / f"iter_{self.iteration:06d}"
        self.algo.save_to_path(str(path.resolve()))
        self.mode_hook.on_checkpoint_saved(path)  # preference: the reward model's state, before latest.json
        (ckpt_root / LATEST).write_text(json.dumps(
            {"iteration": self.iteration, "path": str(path.resolve()), "env_steps": env_steps}))
        prune_checkpoints(self.run_dir, int(self.cfg.train.keep_checkpoints))
        self.print(f"checkpoint: {path}")
        return path

    def _restore(self) -> None:
        latest = latest_checkpoint(self.run_dir)
        if latest is None:
            raise FileNotFoundError(f"train.resume=true but {self.run_dir / CHECKPOINT_DIR / LATEST} does not exist "
                                    f"(no checkpoint saved in this run dir yet)")
        self.algo.restore_from_path(latest["path"])
        self.iteration = int(latest["iteration"])
        self.print(f"resumed from {latest['path']} (iteration {self.iteration}, {latest['env_steps']} env steps)")
        self.mode_hook.on_restored(Path(latest["path"]))  # preference: reward model back into the workers

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.algo is not None:
            from vlmrl.actors.reward_callback import close_reward_clients

            try:
                close_reward_clients(self.algo)
            except Exception as e:  # noqa: BLE001 - teardown goes on
                log.warning("closing reward clients failed: %s", e)
            self.algo.stop()
            self.algo = None
        self.mode_hook.close()
        if self.pool is not None and self._own_pool:
            self.pool.shutdown()
        self.pool = None
