"""Training of the compact LRM on episode datasets (the ``vlmrl lrm-train`` logic for ``model=compact``).

Losses (binary cross-entropy each, soft targets for progress): progress and completion on both
frames of every training pair, contrastive on the pairs whose order means progress (see
:mod:`vlmrl.learner.reward_training.lrm_data`). Each epoch ends with validation on the held-out episodes
(:mod:`vlmrl.learner.reward_training.reward_eval` metrics); the model is saved to ``out_dir`` after every epoch.
With ``restarts`` > 1, :func:`train_best_of_restarts` trains one model per seed and keeps the best validated.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch
import torch.nn.functional as F

from vlmrl.envs.dataset import Episode
from vlmrl.reward_workers.models.compact_lrm import CompactLRM, CompactLRMConfig, frames_to_input
from vlmrl.learner.reward_training.lrm_data import (ShuffleBufferBatches, TargetRule, TrainBatch, dataset_sources,
                                    iter_split_episodes, repeat_entries, sources_label, split_entries)
from vlmrl.learner.reward_training.reward_eval import EpisodePredictions, Predictor, evaluate_predictors


def model_predictor(model: CompactLRM, batch_size: int = 256) -> Predictor:
    """Evaluate a compact LRM directly (no scorer): per frame from (previous, current) pairs, like the scorer."""

    def predict(ep: Episode, a: np.ndarray, b: np.ndarray) -> EpisodePredictions:
        n = len(ep.frames)
        prev = np.maximum(np.arange(n) - 1, 0)
        out: Dict[str, list] = {"progress": [], "completion": [], "contrastive": []}
        for s in range(0, n, batch_size):
            p = model.predict([ep.task] * len(prev[s:s + batch_size]), ep.frames[prev[s:s + batch_size]],
                              ep.frames[s:s + batch_size])
            out["progress"].append(p["progress"])
            out["completion"].append(p["completion"])
        cont = None
        if len(a):
            cont = np.concatenate([model.predict([ep.task] * len(a[s:s + batch_size]), ep.frames[a[s:s + batch_size]],
                                                 ep.frames[b[s:s + batch_size]])["contrastive"]
                                   for s in range(0, len(a), batch_size)])
        prog, comp = np.concatenate(out["progress"]), np.concatenate(out["completion"])
        return EpisodePredictions(reward=prog + comp, progress=prog, completion=comp, contrastive=cont)

    return predict


def random_shift(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """DrQ-style augmentation: replicate-pad by ``pad`` px and crop back at a random offset per image."""
    if pad <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    off = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen)
    return torch.stack([padded[i, :, oy:oy + h, ox:ox + w] for i, (oy, ox) in enumerate(off.tolist())])


def compute_losses(model: CompactLRM, batch: TrainBatch, image_size: int, shift_px: int = 0,
                   gen: torch.Generator | None = None) -> Dict[str, torch.Tensor]:
    dev = model.film.weight.device
    xa = frames_to_input(batch.frames_a, image_size).to(dev)
    xb = frames_to_input(batch.frames_b, image_size).to(dev)
    if shift_px and gen is not None:
        xa, xb = random_shift(xa, shift_px, gen), random_shift(xb, shift_px, gen)
    out = model(xa, xb, model.embed_text(batch.tasks))
    bce = F.binary_cross_entropy_with_logits
    prog_t = torch.cat([batch.progress_a, batch.progress_b]).to(dev)
    comp_t = torch.cat([batch.completion_a, batch.completion_b]).to(dev)
    losses = {
        "progress": bce(torch.cat([out["progress_prev"], out["progress"]]), prog_t),
        "completion": bce(torch.cat([out["completion_prev"], out["completion"]]), comp_t),
    }
    valid = batch.pair_valid.to(dev)
    per_pair = bce(out["contrastive"], batch.b_later.to(dev), reduction="none")
    losses["contrastive"] = (per_pair * valid).sum() / valid.sum().clamp(min=1)
    return losses


def build_model(cfg) -> CompactLRM:
    """The configured architecture: random weights, or those of ``cfg.init_from`` (fine-tuning; same architecture)."""
    arch = CompactLRMConfig(image_size=cfg.image_size, widths=list(cfg.widths), embed_dim=cfg.embed_dim,
                            text_encoder=cfg.text_encoder, hash_buckets=cfg.hash_buckets)
    init_from = str(getattr(cfg, "init_from", "") or "")
    if not init_from:
        return CompactLRM(arch)
    try:
        model = CompactLRM.from_pretrained(init_from)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"lrm_train.init_from: {e}") from None
    wrong = [f"{f.name}: {getattr(model.config, f.name)!r} there, {getattr(arch, f.name)!r} here"
             for f in fields(CompactLRMConfig)
             if f.name != "hash_buckets" or arch.text_encoder == "hashed"
             if _plain(getattr(model.config, f.name)) != _plain(getattr(arch, f.name))]
    if wrong:
        raise ValueError(f"lrm_train.init_from={init_from} has another architecture ({'; '.join(wrong)}); set "
                         f"lrm_train's fields to its config.json or leave init_from empty")
    return model


def _plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def validate(model: CompactLRM, cfg, rule: TargetRule, sources=None) -> Dict[str, object]:
    model.eval()
    sources = sources if sources is not None else dataset_sources(list(cfg.dataset_dirs))
    eps = iter_split_episodes(sources, "val", cfg.val_fraction, cfg.split_seed, cfg.max_val_episodes)
    res = evaluate_predictors(eps, {"compact_lrm": model_predictor(model)}, rule=rule, seed=cfg.seed)["compact_lrm"]
    model.train()
    return res


def train_compact_lrm(cfg, log: Callable[[str], None] = print, writer=None) -> Dict[str, object]:
    """Train per ``cfg`` (an ``LrmTrainConfig``); returns the last validation metrics. Saves to ``cfg.out_dir``."""
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    rule = TargetRule.from_config(cfg)
    sources = dataset_sources(list(cfg.dataset_dirs))
    train_entries = split_entries(sources, "train", cfg.val_fraction, cfg.split_seed)
    val_entries = split_entries(sources, "val", cfg.val_fraction, cfg.split_seed)
    if not val_entries:
        raise ValueError(f"no held-out episodes with val_fraction={cfg.val_fraction} "
                         f"({len(train_entries)} episodes in all); raise val_fraction or add episodes")
    per_source = {s.name: [sum(src == s for src, _ in train_entries), sum(src == s for src, _ in val_entries)]
                  for s in sources}
    log(f"lrm-train: {len(train_entries)} train / {len(val_entries)} val episodes from {sources_label(sources)}"
        + (" (" + ", ".join(f"{k}: {a}/{b}" for k, a, b in ((k, *v) for k, v in per_source.items())) + ")"
           if len(sources) > 1 else "")
        + "".join(f"; {s.name} x{s.repeat} per epoch" for s in sources if s.repeat > 1))
    model = build_model(cfg)
    log(f"lrm-train: compact LRM, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, "
        f"text encoder {cfg.text_encoder}, {cfg.image_size}px")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1), eta_min=cfg.lr * 0.05)
    batches = ShuffleBufferBatches(repeat_entries(train_entries), cfg.image_size, cfg.batch_size, rule,
                                   cfg.buffer_episodes, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    w = {"progress": cfg.loss_weights.progress, "completion": cfg.loss_weights.completion,
         "contrastive": cfg.loss_weights.contrastive}
    out_dir = Path(cfg.out_dir)
    t0, step, val = time.time(), 0, {}
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        sums = {k: 0.0 for k in w}
        n = 0
        for batch in batches.epoch():
            losses = compute_losses(model, batch, cfg.image_size, cfg.augment_shift_px, gen)
            total = sum(w[k] * losses[k] for k in w)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            step += 1
            n += 1
            for k in w:
                sums[k] += float(losses[k].detach())
            if writer is not None:
                writer.add_scalar("lrm/train/loss", float(total.detach()), step)
            if cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes:
                break
        sched.step()
        means = {k: v / max(n, 1) for k, v in sums.items()}
        val = validate(model, cfg, rule, sources)
        model.save_pretrained(out_dir)
        acc = val["progress_acc"] or {}
        history.append({"epoch": epoch, "loss": means, "val": val})
        log(f"epoch {epoch}/{cfg.epochs} step {step} ({time.time() - t0:.0f}s) loss "
            + " ".join(f"{k}={v:.4f}" for k, v in means.items())
            + f" | val progress_acc@0.2={acc.get(0.2, float('nan')):.3f} completion_f1={val['completion_f1']:.3f} "
            f"contrastive_acc={_num(val['contrastive_acc'])} spearman={_num(val['spearman_progress'])}")
        if writer is not None:
            log_epoch(writer, history[-1])
        if cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes:
            log(f"lrm-train: stopping after epoch {epoch}: max_minutes={cfg.max_minutes} reached")
            break
    return {"val": val, "history": history, "out_dir": str(out_dir), "steps": step,
            "episodes_per_source": {k: {"train": a, "val": b} for k, (a, b) in per_source.items()}}


def log_epoch(writer, entry: Dict[str, object]) -> None:
    """One epoch of the training history (``{"epoch", "loss", "val"}``) as TensorBoard scalars."""
    epoch, val = entry["epoch"], entry["val"]
    for k, v in entry["loss"].items():
        writer.add_scalar(f"lrm/train/{k}_loss", v, epoch)
    for k in ("progress_mae", "completion_f1", "contrastive_acc", "preference_acc", "spearman_progress"):
        if val.get(k) is not None:
            writer.add_scalar(f"lrm/val/{k}", val[k], epoch)
    for d, a in (val.get("progress_acc") or {}).items():
        writer.add_scalar(f"lrm/val/progress_acc@{d:g}", a, epoch)
    writer.flush()


def selection_score(val: Dict[str, object]) -> float:
    """How a restart is chosen: mean of held-out progress acc@0.2 and completion F1 (both in [0, 1])."""
    acc = (val.get("progress_acc") or {}).get(0.2)
    f1 = val.get("completion_f1")
    return float(np.mean([0.0 if acc is None else acc, 0.0 if f1 is None else f1]))


def train_best_of_restarts(cfg, log: Callable[[str], None] = print, writer=None) -> Dict[str, object]:
    """``cfg.restarts`` trainings with seeds ``cfg.seed`` + k, each in ``out_dir/restarts/seed_<s>``; the one with the
    best :func:`selection_score` is copied into ``out_dir`` (TensorBoard: the chosen one's curves, logged again), the
    rest stay for inspection; ``out_dir/restarts.json`` lists every restart's score. One restart = plain training."""
    n = int(cfg.restarts)
    if n < 1:
        raise ValueError(f"lrm_train.restarts must be >= 1, got {n}")
    if n == 1:
        return train_compact_lrm(cfg, log, writer)
    if getattr(cfg, "init_from", ""):
        build_model(cfg)  # a missing folder or another architecture: one error here, before any restart starts
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):  # a section of the whole config: resolve its ${...} before copying it out
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    out_dir = Path(cfg.out_dir)
    subs = []
    for k in range(n):
        sub = copy.deepcopy(cfg)
        sub.seed = int(cfg.seed) + k
        sub.out_dir = str(out_dir / "restarts" / f"seed_{sub.seed}")
        subs.append(sub)
    at_once = min(int(getattr(cfg, "parallel_restarts", 1)), n)
    if at_once < 1:
        raise ValueError(f"lrm_train.parallel_restarts must be >= 1, got {at_once}")
    if at_once == 1:
        runs = []
        for k, sub in enumerate(subs):
            log(f"lrm-train: restart {k + 1}/{n} (seed {sub.seed}) -> {sub.out_dir}")
            runs.append(train_compact_lrm(sub, lambda m, s=sub.seed: log(f"[seed {s}] {m}")))
    else:
        log(f"lrm-train: {n} restarts (seeds {', '.join(str(s.seed) for s in subs)}), {at_once} at once in "
            f"their own processes -> {out_dir / 'restarts'}")
        runs = train_in_processes(subs, at_once)
    results = [(sub.seed, selection_score(res["val"]), res) for sub, res in zip(subs, runs)]
    seed, _, best = max(results, key=lambda r: r[1])
    for f in Path(best["out_dir"]).iterdir():
        if f.is_file():
            shutil.copy2(f, out_dir / f.name)
    if writer is not None:
        for entry in best["history"]:
            log_epoch(writer, entry)
        writer.add_scalar("lrm/restarts/chosen_seed", seed, 0)
        writer.flush()
    summary = [{"seed": s, "score": round(sc, 4), "chosen": s == seed,
                "progress_acc@0.2": (r["val"].get("progress_acc") or {}).get(0.2),
                "completion_f1": r["val"].get("completion_f1")} for s, sc, r in results]
    (out_dir / "restarts.json").write_text(json.dumps(summary, indent=1))
    log("lrm-train: restarts (score = mean of val progress acc@0.2 and completion F1): "
        + ", ".join(f"seed {r['seed']} {r['score']:.3f}" for r in summary) + f"; kept seed {seed}")
    return {**best, "out_dir": str(out_dir), "chosen_seed": seed, "restarts": summary}


def _train_in_child(sub) -> Dict[str, object]:
    """One training in a worker process; its log lines go to the process's stdout, tagged with its seed."""
    return train_compact_lrm(sub, lambda m, s=sub.seed: print(f"[seed {s}] {m}", flush=True))


def train_in_processes(subs, at_once: int) -> list:
    """``train_compact_lrm`` of each of ``subs`` (restarts, a reward-refresh round) in ``at_once`` spawned processes
    (torch is not fork-safe; each process keeps its own thread setting); results in ``subs``' order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=at_once, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_train_in_child, subs))


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
