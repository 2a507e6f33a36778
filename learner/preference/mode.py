"""The preference mode (RL-VLM-F) of ``vlmrl train``: labels -> Bradley-Terry reward model -> PPO on it.

:class:`PreferenceMode` is the hook :class:`~vlmrl.learner.online.online_trainer.OnlineTrainer` calls when
``train.mode=preference``. The reward pool runs the ``bt_reward`` scorer and the usual reward
callback turns its r(s) into PPO rewards (``reward.components``). Around every training iteration:

1. the env runners' :class:`~.frame_collector.PreferenceFrameCollector` s are drained into a bounded
   :class:`~.frame_buffer.FrameBuffer`;
2. the label budget (:class:`~.budget.LabelBudget`: ``pairs_per_iteration`` every ``label_every`` iterations up
   to ``max_labels``, checked at start) says how many pairs to draw (``pair_sampling``: uniform, or the ones the
   reward model's ensemble disagrees on most) and label: ``preference.labeller=pool`` sends them to the
   *labeller pool* (a second :class:`RewardWorkerPool`, ``preference.labeller_*``: the VLM ``preference`` scorer,
   the compact LRM's pair answer, ...) through :class:`~.labeller.PairLabeller`; ``preference.labeller=oracle``
   labels them in the driver from the simulator state carried with the frames
   (:class:`~.oracle.GroundTruthLabeller`). Either way ``none`` answers are dropped, failures and malformed
   labels counted and reported (``max_label_failure_fraction``), a round with no first/second answer is reported
   and trains nothing, and the answers' agreement with the ground-truth oracle is measured
   (``preference/label_agreement_oracle``);
3. labelled pairs go to the :class:`~.reward_model_trainer.RewardModelTrainer` Ray actor (a
   ``heldout_fraction`` share held out), which trains every ``train_every`` iterations;
4. its new weights (standardised over the training frames with ``normalize_reward``) are hot-swapped into the
   running reward workers (:meth:`RewardWorkerPool.update_weights`); the next iteration's rewards come from them.

An optional warm-up (``warmup_labels``, :meth:`PreferenceMode.before_training`) labels pairs of frames sampled
before the first PPO iteration and trains on them first. Scalars go to TensorBoard under ``preference/`` (labels by
outcome, BT loss / accuracy, reward model updates, agreement with the oracle), every ``image_every`` labelling
rounds a labelled pair as ``preference/pair`` (green bar under the preferred frame), and a second console line
per iteration.

Checkpoints and ``train.resume=true``: when the trainer writes ``checkpoints/iter_NNNNNN`` it calls
:meth:`PreferenceMode.on_checkpoint_saved`, which adds ``preference_state.pt``
(:mod:`~.checkpoint`) before ``latest.json`` names the checkpoint. It holds the reward model as
served (the exact weights bytes incl. every ensemble member, and its version string), the update
counter, the trainer's Adam state and minibatch RNG, its labelled training and held-out pairs (frames
included: labels are the expensive part; at most ``max_pairs`` + ``max_pairs // 4`` pairs of two
frames, so mind the size with large frames), the driver's frame buffer, the pair-sampling RNG and the
label totals. On resume, :meth:`PreferenceMode.on_restored` loads it into the (fresh) trainer actor
and hot-swaps the restored weights into the reward workers under the same version before the first
resumed iteration samples, so PPO keeps training on the reward it had, and the version counter,
label buffers and ``preference/`` totals continue. Not restored: frames the env runners had collected
after the last iteration's drain (none at a checkpoint; a crashed partial iteration is lost anyway),
the labeller pool (started afresh from config), the reward workers' caches (keyed by version; they
refill), and torch's global RNG in the trainer actor (training draws its minibatches from the
restored numpy RNG). A checkpoint without the file (an older run's) is refused:
the run stops with :class:`~.checkpoint.PreferenceStateMissingError` (a ``ValueError``: ``vlmrl train``
exits 2 with the message, before any worker starts) rather than silently switching PPO to an untrained
reward model; start a new run dir instead.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import ray
from omegaconf import DictConfig, OmegaConf

from vlmrl.learner.preference import checkpoint as ckpt
from vlmrl.learner.preference.budget import LabelBudget
from vlmrl.learner.preference.frame_buffer import FrameBuffer, FrameRecord
from vlmrl.learner.preference.frame_collector import drain_frames, frame_collector_factory
from vlmrl.learner.preference.labeller import LabelBatch, PairLabeller
from vlmrl.learner.preference.oracle import GroundTruthLabeller, oracle_label
from vlmrl.learner.preference.reward_model_trainer import remote_trainer_class
from vlmrl.learner.online.training_mode import TrainingMode

log = logging.getLogger(__name__)

REWARD_SCORER = "bt_reward"
LABELLERS = ("pool", "oracle")
PAIR_SAMPLING = ("uniform", "disagreement")
TRAINER_CALL_TIMEOUT_S = 600.0
"""Bound on the reward-model trainer actor's bookkeeping calls (add pairs, sizes, weights, state): a guard against
a dead or hung actor, not a latency target -- on a loaded machine (Ray nices its worker processes) such a call took
over 60 s, and a busy machine must not end a run. Training itself is bounded by ``TRAIN_TIMEOUT_S``."""
TRAIN_TIMEOUT_S = 3600.0


def pair_image(lp, bar: int = 4) -> np.ndarray:
    """A labelled pair for TensorBoard: the two frames side by side, a green bar under the preferred one and a grey
    bar under the other (HWC uint8)."""
    a, b = (np.asarray(f[..., :3], np.uint8) for f in (lp.first.frame, lp.second.frame))
    h = max(a.shape[0], b.shape[0])
    tiles = []
    for f, preferred in ((a, lp.y == 0.0), (b, lp.y == 1.0)):
        tile = np.zeros((h + bar, f.shape[1], 3), np.uint8)
        tile[: f.shape[0]] = f
        tile[h:] = (40, 200, 40) if preferred else (110, 110, 110)
        tiles.append(tile)
    gap = np.full((h + bar, 2, 3), 255, np.uint8)
    return np.concatenate([tiles[0], gap, tiles[1]], axis=1)


class LabelFailureError(RuntimeError):
    """Too many pairs of an iteration could not be labelled (``preference.max_label_failure_fraction``)."""


def check_preference_config(cfg: DictConfig) -> None:
    """Raise ValueError with the reason when the config cannot run the preference mode."""
    p = cfg.preference
    if cfg.scorer.name != REWARD_SCORER:
        raise ValueError(f"train.mode=preference serves the learned reward with scorer.name={REWARD_SCORER}, "
                         f"got scorer.name={cfg.scorer.name!r} (the labeller is preference.labeller_scorer)")
    if not cfg.env.capture_frames:
        raise ValueError("train.mode=preference needs env.capture_frames=true (labels and rewards come from frames)")
    if cfg.reward.addresses:
        raise ValueError("train.mode=preference hot-swaps weights into the pool it starts; unset reward.addresses")
    if str(cfg.reward.item_kind) not in ("auto", "frame"):
        raise ValueError(f"train.mode=preference scores single frames; reward.item_kind must be auto or frame, "
                         f"got {cfg.reward.item_kind!r}")
    if p.labeller_registry_name == cfg.pool.registry_name:
        raise ValueError("preference.labeller_registry_name must differ from pool.registry_name (two pools)")
    for name in ("labeller_workers", "label_batch", "train_every", "train_steps", "batch_size",
                 "frames_per_runner", "max_pairs", "disagreement_candidates", "warmup_env_steps", "warmup_train_steps"):
        if int(p[name]) < 1:
            raise ValueError(f"preference.{name} must be >= 1, got {p[name]}")
    if int(p.frame_buffer_size) < 2:
        raise ValueError(f"preference.frame_buffer_size must be >= 2, got {p.frame_buffer_size}")
    if not 0.0 <= float(p.heldout_fraction) < 1.0:
        raise ValueError(f"preference.heldout_fraction must be in [0, 1), got {p.heldout_fraction}")
    if not 0.0 <= float(p.max_label_failure_fraction) <= 1.0:
        raise ValueError(f"preference.max_label_failure_fraction must be in [0, 1], got {p.max_label_failure_fraction}")
    if str(p.labeller) not in LABELLERS:
        raise ValueError(f"preference.labeller must be one of {list(LABELLERS)}, got {p.labeller!r}")
    if str(p.labeller) == "pool" and not cfg.pool.ray_address:  # its workers build this scorer on this machine
        from vlmrl.reward_workers.scorers.base import check_scorer_section

        check_scorer_section(p.labeller_scorer, "preference.labeller_scorer")
    if str(p.pair_sampling) not in PAIR_SAMPLING:
        raise ValueError(f"preference.pair_sampling must be one of {list(PAIR_SAMPLING)}, got {p.pair_sampling!r}")
    if str(p.pair_sampling) == "disagreement" and int(cfg.scorer.params.get("ensemble_size", 1)) < 2:
        raise ValueError("preference.pair_sampling=disagreement ranks pairs by the spread of the reward model's ensemble; "
                         "set scorer.params.ensemble_size >= 2")
    if int(p.image_every) < 0:
        raise ValueError(f"preference.image_every must be >= 0, got {p.image_every}")
    GroundTruthLabeller(float(p.oracle_tie_threshold), float(p.oracle_epsilon))  # range checks of the oracle's fields
    LabelBudget.from_config(p).check(int(cfg.train.iterations), float(p.heldout_fraction))


def check_resume_state(cfg: DictConfig, run_dir: Path) -> None:
    """On ``train.resume=true``: the checkpoint ``latest.json`` names must hold the preference state
    (:class:`~.checkpoint.PreferenceStateMissingError` otherwise, before anything starts). No checkpoint at
    all is left to the trainer's own error."""
    from vlmrl.learner.run_files import latest_checkpoint

    if not cfg.train.resume:
        return
    latest = latest_checkpoint(run_dir)
    if latest is not None:
        ckpt.require_state(latest["path"])


def labeller_config(cfg: DictConfig) -> DictConfig:
    """The config of the labeller pool: the job's config with the labeller's scorer, registry and resources."""
    p = cfg.preference
    lcfg = copy.deepcopy(cfg)
    lcfg.scorer.name = str(p.labeller_scorer.name)
    lcfg.scorer.params = OmegaConf.to_container(p.labeller_scorer.params, resolve=True)  # replaces, not merges
    lcfg.pool.registry_name = p.labeller_registry_name
    lcfg.pool.num_workers = int(p.labeller_workers)
    lcfg.pool.num_cpus_per_worker = float(p.labeller_num_cpus_per_worker)
    lcfg.pool.num_gpus_per_worker = float(p.labeller_num_gpus_per_worker)
    return lcfg


class PreferenceMode(TrainingMode):
    """Labeller pool + BT trainer actor + weight hot swap around PPO iterations (see module doc).

    ``reward_pool`` is the job's :class:`RewardWorkerPool` running ``bt_reward`` (started by the trainer).
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, print_fn=print) -> None:
        check_preference_config(cfg)
        check_resume_state(cfg, Path(run_dir))
        self.cfg = cfg
        self.p = cfg.preference
        self.run_dir = Path(run_dir)
        self.print = print_fn
        self.rng = np.random.default_rng(int(cfg.seed))
        self.frames = FrameBuffer(int(self.p.frame_buffer_size))
        self.budget = LabelBudget.from_config(self.p)
        self.labeller_pool = None
        self.client = None
        self.labeller: Optional[PairLabeller | GroundTruthLabeller] = None
        self.agreement = {"agree": 0, "compared": 0}
        self.all_none_batches = 0
        self.label_rounds = 0
        self.images: List[tuple] = []
        self.pending: Dict[str, float] = {}
        self.trainer = None
        self.reward_pool = None
        self.version = ""
        self.updates = 0
        self.last_console_line = ""

    # ------------------------------------------------------------------ setup
    def extra_callbacks(self) -> List[Any]:
        return [frame_collector_factory(int(self.p.frames_per_runner))]

    def start(self, reward_pool) -> None:
        """Start the labeller pool and the trainer actor (Ray is up and the reward pool runs)."""
        from vlmrl.reward_workers.client import RewardClient
        from vlmrl.reward_workers.pool import RewardWorkerPool

        self.reward_pool = reward_pool
        if str(self.p.labeller) == "oracle":
            self.labeller = GroundTruthLabeller(float(self.p.oracle_tie_threshold), float(self.p.oracle_epsilon),
                                                int(self.cfg.seed))
            self.print(f"labeller: ground-truth oracle (success first, then the env's dense reward; tie "
                       f"{self.labeller.tie_threshold}, label-error rate {self.labeller.epsilon}); no labeller pool")
        else:
            lcfg = labeller_config(self.cfg)
            self.labeller_pool = RewardWorkerPool(lcfg)
            t0 = time.perf_counter()
            addrs = self.labeller_pool.start()
            kinds = {r.get("item_kind") for r in self.labeller_pool.status()}
            if kinds != {"pair"}:
                raise ValueError(f"preference.labeller_scorer {lcfg.scorer.name!r} takes {sorted(map(str, kinds))} "
                                 f"items; the labeller must take pairs (preference, compact_lrm, or toy_reach_oracle)")
            self.print(f"labeller pool: {len(addrs)} x {lcfg.scorer.name} up in {time.perf_counter() - t0:.1f}s")
            self.client = RewardClient(lcfg.client, registry=self.labeller_pool.registry_view(), scorer=lcfg.scorer.name)
            self.labeller = PairLabeller(self.client, int(self.p.label_batch), float(self.p.label_timeout_s))
        device = "cuda" if float(self.p.trainer_num_gpus) > 0 else "cpu"
        cls = remote_trainer_class(self.p.trainer_num_cpus, self.p.trainer_num_gpus)
        self.trainer = cls.remote(OmegaConf.to_container(self.cfg.scorer.params, resolve=True), float(self.p.lr),
                                  int(self.p.max_pairs), int(self.cfg.seed), device, 1, bool(self.p.normalize_reward))
        self.version = ray.get(self.trainer.weights.remote(), timeout=TRAINER_CALL_TIMEOUT_S)[0]

    # ------------------------------------------------------------------ per iteration
    @property
    def labels_asked(self) -> int:
        """Pairs sent to the labeller so far (every outcome counts against ``preference.max_labels``)."""
        return int(sum(self.labeller.totals.values()))

    def before_training(self, algo) -> None:
        """The optional warm-up (``preference.warmup_labels``): sample frames with the initial policy, label a batch
        of their pairs and train the reward model on it before the first PPO iteration (see the config field)."""
        n = self.budget.warmup_due(self.labels_asked)
        if n <= 0:
            return
        steps = int(self.p.warmup_env_steps)
        local = int(self.cfg.train.num_env_runners) == 0
        algo.env_runner_group.foreach_env_runner(lambda er: len(er.sample(num_timesteps=steps)),
                                                 local_env_runner=local)
        new_frames = drain_frames(algo)
        self.frames.extend(new_frames)
        batch = self._label_round(n, 0)
        s = self._add_labelled(batch)
        if ray.get(self.trainer.sizes.remote(), timeout=TRAINER_CALL_TIMEOUT_S)["train_pairs"] == 0:
            raise LabelFailureError(f"the warm-up labelled no usable pair ({batch.counts}; errors {batch.errors[-3:]}); "
                                    f"cannot train the reward model before PPO")
        s.update({f"preference/warmup_{k.split('/', 1)[1]}": v
                  for k, v in self._train_and_swap(int(self.p.warmup_train_steps)).items()})
        s["preference/warmup_frames"] = float(len(new_frames))
        self.pending.update(s)
        self.print(f"  preference warm-up: {len(new_frames)} frames from {steps} env steps, {n} pairs asked "
                   f"({batch.counts}), reward model {self.version}, held-out acc "
                   f"{s.get('preference/warmup_bt_heldout_acc', float('nan')):.2f}")

    def after_iteration(self, algo, iteration: int) -> Dict[str, float]:
        """Collect frames, label pairs, train + hot-swap when due; returns the ``preference/`` scalars."""
        p = self.p
        new_frames = drain_frames(algo)
        self.frames.extend(new_frames)
        n = self.budget.due(iteration, self.labels_asked)
        t0 = time.perf_counter()
        batch = self._label_round(n, iteration)
        label_s = time.perf_counter() - t0
        s: Dict[str, float] = dict(self.pending)
        self.pending.clear()
        s.update(self._add_labelled(batch))
        s.update({"preference/label_s": label_s, "preference/frames_collected": float(len(new_frames)),
                  "preference/buffer_frames": float(len(self.frames))})
        sizes = ray.get(self.trainer.sizes.remote(), timeout=TRAINER_CALL_TIMEOUT_S)
        if iteration % int(p.train_every) == 0 and sizes["train_pairs"] > 0 and (batch.pairs or self.updates == 0):
            s.update(self._train_and_swap(int(p.train_steps)))
        s["preference/reward_model_updates"] = float(self.updates)
        s["preference/train_pairs"] = float(sizes["train_pairs"])
        s["preference/heldout_pairs"] = float(sizes["heldout_pairs"])
        self.last_console_line = self.console_line(batch, s)
        return s

    def _label_round(self, n: int, iteration: int) -> LabelBatch:
        """Draw ``n`` pairs (``preference.pair_sampling``) and label them; raises LabelFailureError past
        ``max_label_failure_fraction``. ``n`` = 0 (budget spent or not due) asks nothing."""
        if n <= 0:
            return LabelBatch()
        if str(self.p.pair_sampling) == "disagreement" and self.updates > 0:
            pairs = self._disagreement_pairs(n)
        else:
            pairs = self.frames.sample_pairs(n, self.rng)
        batch = self.labeller.label(pairs)
        self.label_rounds += 1
        if batch.asked and batch.failures / batch.asked > float(self.p.max_label_failure_fraction):
            raise LabelFailureError(f"{batch.failures} of {batch.asked} preference labels failed at iteration "
                                    f"{iteration} (preference.max_label_failure_fraction="
                                    f"{self.p.max_label_failure_fraction}); errors: {batch.errors[-3:]}")
        every = int(self.p.image_every)
        if every > 0 and batch.pairs and self.label_rounds % every == 1 % every:
            self.images.append(("preference/pair", pair_image(batch.pairs[0])))
        return batch

    def _disagreement_pairs(self, n: int):
        """PEBBLE's query selection: of ``disagreement_candidates`` x ``n`` uniform pairs, the ``n`` on which the
        reward model's ensemble members disagree most."""
        cands = self.frames.sample_pairs(n * int(self.p.disagreement_candidates), self.rng)
        if len(cands) <= n:
            return cands
        std = ray.get(self.trainer.disagreement.remote([(a.frame, b.frame, a.task) for a, b in cands]),
                      timeout=TRAINER_CALL_TIMEOUT_S)
        return [cands[i] for i in np.argsort(-np.asarray(std), kind="stable")[:n]]

    def _add_labelled(self, batch: LabelBatch) -> Dict[str, float]:
        """Send a round's labelled pairs to the trainer (a ``heldout_fraction`` share held out) and account for it."""
        p = self.p
        train_rows, held_rows = [], []
        for lp in batch.pairs:
            row = (lp.first.frame, lp.second.frame, lp.first.task, lp.y, lp.first.env_reward, lp.second.env_reward)
            (held_rows if self.rng.random() < float(p.heldout_fraction) else train_rows).append(row)
        refs = []
        if train_rows:
            refs.append(self.trainer.add_pairs.remote(train_rows, False))
        if held_rows:
            refs.append(self.trainer.add_pairs.remote(held_rows, True))
        ray.get(refs, timeout=TRAINER_CALL_TIMEOUT_S)
        s: Dict[str, float] = {f"preference/labels_{k}": float(v) for k, v in batch.counts.items()}
        totals = self.labeller.totals
        s.update({"preference/labels_total": float(totals["first"] + totals["second"]),
                  "preference/labels_asked_total": float(self.labels_asked),
                  "preference/label_failures_total": float(totals["failed"] + totals["unknown"])})
        kept = batch.counts["first"] + batch.counts["second"]
        if kept:
            s["preference/label_second_fraction"] = batch.counts["second"] / kept
        elif batch.asked:
            self.all_none_batches += 1
            log.warning("preference labels: none of %d pairs got a first/second label (%s); the reward model is not "
                        "trained on this round", batch.asked, batch.counts)
        s["preference/all_none_batches"] = float(self.all_none_batches)
        agree = compared = 0
        for lp in batch.pairs:  # the labeller's answers vs the ground-truth oracle's (where the frames carry state)
            ref = oracle_label(lp.first, lp.second, float(p.oracle_tie_threshold))
            if ref in ("first", "second"):
                compared += 1
                agree += int((ref == "second") == (lp.y == 1.0))
        self.agreement["agree"] += agree
        self.agreement["compared"] += compared
        if compared:
            s["preference/label_agreement_oracle"] = agree / compared
        if self.agreement["compared"]:
            s["preference/label_agreement_oracle_total"] = self.agreement["agree"] / self.agreement["compared"]
        return s

    def pop_images(self) -> List[tuple]:
        """``(tag, HWC uint8 image)`` s written since the last call (the trainer puts them into TensorBoard)."""
        out, self.images = self.images, []
        return out

    def _train_and_swap(self, steps: int) -> Dict[str, float]:
        t0 = time.perf_counter()
        m = ray.get(self.trainer.train.remote(int(steps), int(self.p.batch_size)), timeout=TRAIN_TIMEOUT_S)
        train_s = time.perf_counter() - t0
        version, state = ray.get(self.trainer.weights.remote(), timeout=TRAINER_CALL_TIMEOUT_S)
        t1 = time.perf_counter()
        served = self.reward_pool.update_weights(version, state)
        swap_s = time.perf_counter() - t1
        if set(served.values()) != {version}:
            raise RuntimeError(f"reward workers serve {served} after the update to {version}")
        self.version, self.updates = version, int(m["updates"])
        if self.p.save_weights:
            out = self.run_dir / "reward_model"
            out.mkdir(parents=True, exist_ok=True)
            (out / "latest.pt").write_bytes(state)
            (out / "latest_version.txt").write_text(version + "\n")
        s = {f"preference/{k}": float(v) for k, v in m.items() if isinstance(v, (int, float)) and k != "updates"}
        s.update({"preference/train_s": train_s, "preference/swap_s": swap_s})
        return s

    def console_line(self, batch, s: Dict[str, float]) -> str:
        c = batch.counts

        def g(k, fmt):
            return format(s[k], fmt) if k in s else "-"

        return (f"  preference: labels +{c['first'] + c['second']} (first {c['first']}, second {c['second']}, "
                f"none {c['none']}, failed {c['failed'] + c['unknown']}), total {g('preference/labels_total', '.0f')} "
                f"of {g('preference/labels_asked_total', '.0f')} asked, agree w/ oracle "
                f"{g('preference/label_agreement_oracle', '.2f')}"
                f"{' (ALL none: not trained)' if batch.asked and not batch.pairs else ''} | "
                f"BT loss {g('preference/bt_loss', '.3f')}, held-out acc {g('preference/bt_heldout_acc', '.2f')} | "
                f"reward model {self.version} | corr(r, dense) {g('preference/heldout_pearson_reward_vs_dense', '.2f')}")

    # ------------------------------------------------------------------ checkpoints
    def on_checkpoint_saved(self, path: Path) -> Path:
        """Write the reward model's and this mode's state into checkpoint dir ``path`` (see module doc)."""
        trainer_state = ray.get(self.trainer.get_state.remote(), timeout=TRAINER_CALL_TIMEOUT_S)
        if trainer_state["version"] != self.version:
            raise RuntimeError(f"the reward model trainer holds version {trainer_state['version']} but the reward "
                               f"workers serve {self.version}; not checkpointing a model PPO never trained on")
        records = self.frames.records()
        frames = {"frame": ckpt.pack_frames([r.frame for r in records]), "task": [r.task for r in records],
                  "env_reward": [r.env_reward for r in records], "episode_id": [r.episode_id for r in records],
                  "step": [r.step for r in records], "success": [-1 if r.success is None else int(r.success) for r in records]}
        mode_state = {"version": self.version, "updates": self.updates, "rng": self.rng.bit_generator.state,
                      "label_totals": dict(self.labeller.totals), "frames_added": self.frames.added, "frames": frames,
                      "agreement": dict(self.agreement), "all_none_batches": self.all_none_batches,
                      "label_rounds": self.label_rounds}
        if isinstance(self.labeller, GroundTruthLabeller):
            mode_state["oracle_rng"] = self.labeller.rng.bit_generator.state
        return ckpt.save_state(path, {"trainer": trainer_state, "mode": mode_state})

    def on_restored(self, path: Path) -> None:
        """Load checkpoint dir ``path``'s state into the trainer actor and hot-swap its weights into the reward
        workers (same version as before the stop); raises PreferenceStateMissingError when it has none."""
        state = ckpt.load_state(path)
        version, updates = ray.get(self.trainer.load_state.remote(state["trainer"]), timeout=TRAINER_CALL_TIMEOUT_S)
        m = state["mode"]
        if version != m["version"]:
            raise RuntimeError(f"{ckpt.state_path(path)}: trainer version {version} != mode version {m['version']}")
        _, weights = ray.get(self.trainer.weights.remote(), timeout=TRAINER_CALL_TIMEOUT_S)
        served = self.reward_pool.update_weights(version, weights)
        if set(served.values()) != {version}:
            raise RuntimeError(f"reward workers serve {served} after restoring reward model {version}")
        self.version, self.updates = version, int(m["updates"])
        self.rng.bit_generator.state = m["rng"]
        self.labeller.totals.clear()
        self.labeller.totals.update(m["label_totals"])
        fr = m["frames"]
        self.frames = FrameBuffer(int(self.p.frame_buffer_size))
        success = fr.get("success", [-1] * len(fr["task"]))
        self.frames.extend(FrameRecord(f, str(t), float(r), str(e), int(st), None if int(ok) < 0 else bool(ok))
                           for f, t, r, e, st, ok in zip(ckpt.unpack_frames(fr["frame"]), fr["task"], fr["env_reward"],
                                                         fr["episode_id"], fr["step"], success))
        self.frames.added = int(m["frames_added"])
        self.agreement.update(m.get("agreement", {}))
        self.all_none_batches = int(m.get("all_none_batches", 0))
        self.label_rounds = int(m.get("label_rounds", 0))
        if isinstance(self.labeller, GroundTruthLabeller) and "oracle_rng" in m:
            self.labeller.rng.bit_generator.state = m["oracle_rng"]
        sizes = ray.get(self.trainer.sizes.remote(), timeout=TRAINER_CALL_TIMEOUT_S)
        self.print(f"preference: restored reward model {version} ({updates} updates, {sizes['train_pairs']} train / "
                   f"{sizes['heldout_pairs']} held-out pairs, {len(self.frames)} buffered frames) into "
                   f"{len(served)} reward worker(s)")

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.trainer is not None:
            ray.kill(self.trainer)
            self.trainer = None
        if self.labeller_pool is not None:
            try:
                self.labeller_pool.shutdown()
            except Exception as e:  # noqa: BLE001 - teardown goes on
                log.warning("labeller pool shutdown failed: %s", e)
            self.labeller_pool = None
