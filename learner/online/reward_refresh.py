"""Re-anchoring a compact-LRM reward on the policy's own states during a run (``reward_refresh``, issue 23).

Role in the reward path: a reward model is right where its data was; PPO from scratch drifts to states it never saw
and finds the ones it over-pays (measured on PushCube: an AI-labelled run's late policy rested the arm beside the goal,
states the LRM ranked above reaching the cube). Offline the fix is a round of ``vlmrl audit-reward --record-negatives
audit.policy_runs=[run]`` + ``vlmrl lrm-train``; :class:`RewardRefreshMode` runs that round inside ``vlmrl train``
(``train.mode=vlm-score``, ``scorer.name=compact_lrm``), every ``reward_refresh.every`` PPO iterations:

1. the current policy (PPO's RLModule, its Gaussian sampled as in training) plays ``reward_refresh.episodes``
   episodes on training seeds, recorded with the simulator's states, dense reward and success into
   ``<run>/reward_refresh/iter_NNNNNN/episodes`` -- ground truth, so the LRM learns their real targets;
2. the served LRM is fine-tuned (``lrm_train.init_from``) on the data it learned from plus every round's episodes so
   far, in a spawned process (torch's thread settings stay out of PPO's), into ``.../iter_NNNNNN/lrm``;
3. the reward workers hot-swap to it (:meth:`RewardWorkerPool.update_weights`, version ``refresh-iter_NNNNNN``);
   every (previous, current) pair is scored by one version, so a progress potential still telescopes per pair.

Rounds are folders of the run, named by the PPO iteration they followed: on ``train.resume=true`` the newest round at
or before the restored iteration is swapped in again (later ones, of a crashed run, are neither served nor used as
data; reaching their iteration again overwrites them). PPO waits during a round (recording + fine-tuning: ~2-4 min on
a 2-core CPU with the defaults). TensorBoard: ``reward_refresh/`` (round, policy success in the recorded episodes,
the fine-tuned model's held-out progress accuracy and Spearman, seconds).
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from vlmrl.learner.online.training_mode import TrainingMode

ROUNDS_DIR = "reward_refresh"
SCORER = "compact_lrm"
ROUND_SEEDS = 1_000


def check_reward_refresh_config(cfg: DictConfig) -> DictConfig:
    """ValueError with the fix when ``reward_refresh`` (every > 0) cannot run with this config; else its
    :func:`recipe`."""
    r = cfg.reward_refresh
    if str(cfg.train.mode) != "vlm-score":
        raise ValueError(f"reward_refresh.every={r.every} re-anchors the scorer PPO trains on: it needs "
                         f"train.mode=vlm-score, got {cfg.train.mode!r}")
    if str(cfg.scorer.name) != SCORER or not cfg.scorer.params.get("weights_dir"):
        raise ValueError(f"reward_refresh fine-tunes a compact LRM: set scorer.name={SCORER} and "
                         f"scorer.params.weights_dir (got scorer.name={cfg.scorer.name!r})")
    if cfg.scorer.params.get("ensemble_dirs"):
        raise ValueError("reward_refresh fine-tunes one compact LRM; drop scorer.params.ensemble_dirs")
    if cfg.reward.addresses:
        raise ValueError("reward_refresh hot-swaps weights into the pool the run starts; unset reward.addresses")
    if not 1 <= int(r.episodes) <= ROUND_SEEDS:
        raise ValueError(f"reward_refresh.episodes={r.episodes}: give 1-{ROUND_SEEDS} episodes per round")
    for name in ("every", "epochs", "frame_stride"):
        if int(r[name]) < 1:
            raise ValueError(f"reward_refresh.{name} must be >= 1, got {r[name]}")
    if not float(r.lr) > 0:
        raise ValueError(f"reward_refresh.lr must be > 0, got {r.lr}")
    from vlmrl.reward_workers.models.compact_lrm import CompactLRM

    try:  # the rounds fine-tune from it here, wherever the workers run
        CompactLRM.check_folder(str(cfg.scorer.params.weights_dir))
    except FileNotFoundError as e:
        raise ValueError(f"scorer.params.weights_dir: {e}") from e
    return recipe(cfg)  # the data the LRM learned from must be known


def recipe(cfg: DictConfig) -> DictConfig:
    """The ``lrm_train`` section a round fine-tunes with: the served LRM folder's own (its config.yaml, written by
    ``vlmrl lrm-train``), else this config's; ``reward_refresh.dataset_dirs`` when given replaces its data."""
    from vlmrl.learner.config import LrmTrainConfig
    from vlmrl.learner.reward_training.lrm_data import dataset_config_problem

    saved = Path(str(cfg.scorer.params.weights_dir)) / "config.yaml"
    sec = OmegaConf.load(saved).lrm_train if saved.exists() else cfg.lrm_train
    sec = OmegaConf.merge(OmegaConf.structured(LrmTrainConfig), OmegaConf.to_container(sec, resolve=True))
    if cfg.reward_refresh.dataset_dirs:
        sec.dataset_dirs = OmegaConf.to_container(cfg.reward_refresh.dataset_dirs, resolve=True)
    if not sec.dataset_dirs:
        raise ValueError(f"reward_refresh: no data to keep the LRM on ({saved} has no lrm_train.dataset_dirs); set "
                         "reward_refresh.dataset_dirs to the folders it was trained on")
    problem = dataset_config_problem(sec.dataset_dirs, "reward_refresh.dataset_dirs")
    if problem:
        raise ValueError(problem)
    return sec


def round_iteration(path: Path) -> Optional[int]:
    m = re.fullmatch(r"iter_(\d+)", Path(path).name)
    return int(m.group(1)) if m else None


class RewardRefreshMode(TrainingMode):
    """Every ``reward_refresh.every`` PPO iterations: the policy's episodes with ground truth -> the served compact
    LRM fine-tuned on them -> hot-swapped into the reward workers (see module doc)."""

    def __init__(self, cfg: DictConfig, run_dir: Path, print_fn=print) -> None:
        self.recipe = check_reward_refresh_config(cfg)
        self.cfg = cfg
        self.r = cfg.reward_refresh
        self.run_dir = Path(run_dir)
        self.rounds_dir = self.run_dir / ROUNDS_DIR
        self.print = print_fn
        self.pool = None
        self.served = Path(str(cfg.scorer.params.weights_dir))
        self.last_console_line = ""

    def start(self, reward_pool: Any) -> None:
        self.pool = reward_pool

    def rounds(self, up_to: int) -> List[Path]:
        """This run's finished rounds (a fine-tuned model saved) after iterations <= ``up_to``, oldest first."""
        if not self.rounds_dir.is_dir():
            return []
        done = [(it, d) for d in self.rounds_dir.iterdir() if (it := round_iteration(d)) is not None
                and it <= up_to and (d / "lrm" / "model.safetensors").exists()]
        return [d for _, d in sorted(done)]

    def after_iteration(self, algo: Any, iteration: int) -> Dict[str, float]:
        self.last_console_line = ""
        if iteration % int(self.r.every) != 0 or iteration >= int(self.cfg.train.iterations):
            return {}
        return self.refresh(algo.get_module(), iteration)

    def refresh(self, module: Any, iteration: int) -> Dict[str, float]:
        """One round after PPO iteration ``iteration`` with policy ``module``; returns its TensorBoard scalars."""
        from vlmrl.envs.dataset import EpisodeWriter
        from vlmrl.learner.reward_training.lrm_train import train_in_processes
        from vlmrl.learner.reward_training.policy_episodes import iter_module_episodes

        t0 = time.perf_counter()
        k = iteration // int(self.r.every)
        out = self.rounds_dir / f"iter_{iteration:06d}"
        first = int(self.r.seed) + ROUND_SEEDS * k
        seeds = range(first, first + int(self.r.episodes))
        writer, wins = EpisodeWriter(out / "episodes"), 0
        for ep in iter_module_episodes(module, self.cfg.env, seeds, int(self.r.frame_stride),
                                       f"policy_{self.run_dir.name}_iter_{iteration:06d}", str(self.run_dir)):
            writer.write(ep)
            wins += int(bool(ep.success[-1]))
        t_rec = time.perf_counter() - t0
        earlier = self.rounds(iteration - 1)
        sub = copy.deepcopy(self.recipe)
        sub.dataset_dirs = [*sub.dataset_dirs, *(str(d / "episodes") for d in earlier), str(out / "episodes")]
        sub.init_from, sub.out_dir = str(self.served), str(out / "lrm")
        sub.epochs, sub.lr = int(self.r.epochs), float(self.r.lr)
        sub.restarts = sub.parallel_restarts = sub.num_threads = 1
        sub.max_minutes = 0.0
        (result,) = train_in_processes([sub], 1)  # its own process: torch's thread setting stays out of PPO's
        OmegaConf.save(OmegaConf.create({"lrm_train": sub}), out / "lrm" / "config.yaml")  # self-describing, as lrm-train's
        version = f"refresh-{out.name}"
        self._serve(out / "lrm", version)
        (out / "round.json").write_text(json.dumps({"iteration": iteration, "version": version, "seeds": list(seeds),
                                                    "episodes_ending_in_success": wins, "init_from": str(self.served),
                                                    "dataset_dirs": list(sub.dataset_dirs), "val": _plain_val(result)},
                                                   indent=1))
        self.served = out / "lrm"
        val = result.get("val") or {}
        acc = (val.get("progress_acc") or {}).get(0.2)
        secs = time.perf_counter() - t0
        self.last_console_line = (f"  reward refresh {out.name}: {len(seeds)} policy episodes ({wins} end in success, "
                                  f"{t_rec:.0f}s), LRM fine-tuned on {len(sub.dataset_dirs)} datasets "
                                  f"(val progress acc@0.2 {_fmt(acc)}), serving {version} ({secs:.0f}s)")
        s = {"reward_refresh/round": float(k), "reward_refresh/policy_success": wins / len(seeds),
             "reward_refresh/seconds": secs}
        if acc is not None:
            s["reward_refresh/val_progress_acc"] = float(acc)
        if val.get("spearman_progress") is not None:
            s["reward_refresh/val_spearman"] = float(val["spearman_progress"])
        return s

    def _serve(self, lrm_dir: Path, version: str) -> None:
        if self.pool is None:
            raise RuntimeError("reward_refresh: no reward pool to hot-swap into")
        self.pool.update_weights(version, (Path(lrm_dir) / "model.safetensors").read_bytes())

    def on_restored(self, path: Path) -> None:
        """Serve the newest round at or before the restored iteration again (the workers start from the config's)."""
        it = round_iteration(Path(path))
        done = self.rounds(it if it is not None else -1)
        if done:
            self.served = done[-1] / "lrm"
            self._serve(self.served, f"refresh-{done[-1].name}")
            self.print(f"reward refresh: serving {self.served} again (round after iteration {round_iteration(done[-1])})")


def _plain_val(result: Dict[str, Any]) -> Dict[str, Any]:
    val = dict(result.get("val") or {})
    if isinstance(val.get("progress_acc"), dict):
        val["progress_acc"] = {str(k): v for k, v in val["progress_acc"].items()}
    return json.loads(json.dumps(val, default=float))


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
