"""LoRA fine-tuning of a Qwen-VL-class VLM into the ``lrm`` scorer's reward model (``vlmrl lrm-train`` with ``model=vlm``).

The trained adapter is what the ``lrm`` scorer loads with ``params.adapter=<out_dir>``, with no glue:
training asks EXACTLY the scorer's questions (:func:`vlmrl.reward_workers.models.prompt_templates.lrm_requests`,
texts in the ``default`` template, ``reward_workers/models/templates/default.yaml``), encodes them with the hf backend's own prompt path
(:func:`vlmrl.reward_workers.backends.hf.encode_prompts`: stock processor + chat template) and teaches
the answer tokens the scorer reads (:func:`~vlmrl.reward_workers.backends.base.candidate_token_ids`, so
``"10"`` is trained as ``1 0 <|im_end|>`` exactly as it is scored).

Examples, from the frame pairs of :class:`vlmrl.learner.reward_training.lrm_data.ShuffleBufferBatches` (the compact
LRM's targets, split and shuffle buffer: one rule, one place). For a pair (current frame c, other frame o)
of one episode:

* progress:    answer ``round(progress_scale * progress_target(c))`` (``lrm_data.progress_targets``:
  t/T up to success in successful episodes, discounted in failed ones);
* completion:  ``"yes"`` if the task is done at c, else ``"no"``;
* contrastive: images [o, c], ``"B"`` if c is later than o else ``"A"``; only pairs whose order means
  progress (``lrm_data.pair_labels``).

Loss: cross-entropy on the answer tokens only (labels -100 on the prompt), i.e. ``-log P(answer)``,
averaged per question and weighted by ``task_weights``. Only the language model's LoRA matrices
train (peft ``LoraConfig`` on ``target_modules``; the vision tower and base weights stay frozen).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vlmrl.learner.reward_training.lrm_data import (ShuffleBufferBatches, TargetRule, TrainBatch, dataset_sources, sources_label,
                                    split_entries)
from vlmrl.reward_workers.backends.base import VLMRequest, candidate_token_ids
from vlmrl.reward_workers.models.prompt_templates import lrm_requests
from vlmrl.reward_workers.models.prompts import LRM_COMPLETION_ANSWERS, LRM_CONTRASTIVE_ANSWERS

KINDS = ("progress", "completion", "contrastive")


@dataclass
class LrmExample:
    """One training prompt: the scorer's request, the index of the correct candidate, and which question it is."""

    request: VLMRequest
    answer: int
    kind: str


def progress_answer(progress: float, scale: int) -> int:
    """The trained progress answer: ``progress`` in [0, 1] rounded (half up) to 0..scale."""
    return int(np.clip(math.floor(scale * float(progress) + 0.5), 0, scale))


def batch_examples(batch: TrainBatch, scale: int) -> List[LrmExample]:
    """The LRM questions about each pair of ``batch``: frame a is the current frame, b the other one."""
    out: List[LrmExample] = []
    for k, task in enumerate(batch.tasks):
        cur, other = batch.frames_a[k].numpy(), batch.frames_b[k].numpy()
        prog, comp, cont = lrm_requests(task, other, cur, scale)
        out.append(LrmExample(prog, progress_answer(batch.progress_a[k], scale), "progress"))
        done = bool(batch.completion_a[k] >= 0.5)
        out.append(LrmExample(comp, LRM_COMPLETION_ANSWERS.index("yes" if done else "no"), "completion"))
        if batch.pair_valid[k] > 0:
            cur_later = not bool(batch.b_later[k] > 0.5)
            out.append(LrmExample(cont, LRM_CONTRASTIVE_ANSWERS.index("B" if cur_later else "A"), "contrastive"))
    return out


def end_of_turn_id(tokenizer) -> int:
    """The token the scorer appends to prefix-overlapping candidates (same rule as the hf backend)."""
    for tok in ("<|im_end|>", tokenizer.eos_token):
        if tok is not None:
            tid = tokenizer.convert_tokens_to_ids(tok)
            if tid is not None and tid != tokenizer.unk_token_id:
                return int(tid)
    raise ValueError("tokenizer has no end-of-turn token (<|im_end|> or eos)")


def encode_examples(processor, examples: Sequence[LrmExample]):
    """Model inputs (prompt + answer tokens, LEFT-padded) and labels (answer token ids, -100 elsewhere).

    The prompts go through :func:`~vlmrl.reward_workers.backends.hf.encode_prompts` (the scorer's path);
    each row's answer tokens are appended after its prompt, so all answers end at the last position.
    Returns ``(inputs, labels, answer_len)`` where ``answer_len`` is the longest answer in tokens.
    """
    from vlmrl.reward_workers.backends.hf import encode_prompts

    tok = processor.tokenizer
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    enc = encode_prompts(processor, [e.request for e in examples])
    end = end_of_turn_id(tok)
    answers = [candidate_token_ids(tok, e.request.candidates, end)[e.answer] for e in examples]
    mask = enc["attention_mask"].bool()
    lengths = [int(m.sum()) + len(a) for m, a in zip(mask, answers)]
    width = max(lengths)
    per_token = [k for k, v in enc.items() if torch.is_tensor(v) and v.shape == enc["input_ids"].shape]
    new = {k: torch.zeros((len(examples), width), dtype=enc[k].dtype) for k in per_token}
    new["input_ids"].fill_(tok.pad_token_id)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, a in enumerate(answers):
        start = width - lengths[i]
        n_prompt = int(mask[i].sum())
        for k in per_token:
            new[k][i, start:start + n_prompt] = enc[k][i][mask[i]]
        new["input_ids"][i, width - len(a):] = torch.tensor(a)
        new["attention_mask"][i, width - len(a):] = 1  # other per-token keys (mm_token_type_ids): 0 = text
        labels[i, width - len(a):] = torch.tensor(a)
    for k in per_token:
        enc[k] = new[k]
    return enc, labels, max(len(a) for a in answers)


def answer_nll(model, enc, labels: torch.Tensor, answer_len: int) -> torch.Tensor:
    """Per example ``-log P(answer | prompt)``: summed token cross-entropy over the answer tokens.

    Only the logits of the last ``answer_len + 1`` positions are computed (answers end every row).
    """
    dev = next(p for p in model.parameters()).device
    enc = enc.to(dev)
    out = model(**enc, use_cache=False, logits_to_keep=answer_len + 1)
    logits = out.logits[:, -(answer_len + 1):-1].float()
    target = labels[:, -answer_len:].to(dev)
    tok_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                               reduction="none").view(target.shape)
    return tok_loss.sum(dim=1)


def weighted_loss(nll: torch.Tensor, kinds: Sequence[str], counts: Dict[str, int],
                  weights: Dict[str, float]) -> torch.Tensor:
    """Sum over questions of ``weight * mean nll`` where the means divide by the FULL batch's ``counts``
    (so micro-batches of one accumulated step add up to the step's loss)."""
    w = torch.tensor([weights.get(k, 0.0) / max(counts.get(k, 0), 1) for k in kinds], device=nll.device)
    return (nll * w).sum()


def lora_model(base, vcfg):
    """Wrap ``base`` with peft LoRA on the language model's ``target_modules`` (vision tower untouched)."""
    from peft import LoraConfig, get_peft_model

    mods = [str(m) for m in vcfg.target_modules]
    if not mods:
        raise ValueError("lrm_train.vlm.target_modules is empty: name the projections to adapt, e.g. [q_proj, v_proj]")
    names = [n for n, _ in base.named_modules() if "language_model" in n and n.rsplit(".", 1)[-1] in mods]
    if not names:
        raise ValueError(f"no language-model modules named {mods} in {type(base).__name__}; "
                         "expected a Qwen-VL-class model (model.language_model.layers.*.self_attn.q_proj ...)")
    pattern = r".*language_model.*\.(" + "|".join(mods) + r")"
    cfg = LoraConfig(r=int(vcfg.lora_r), lora_alpha=int(vcfg.lora_alpha), lora_dropout=float(vcfg.lora_dropout),
                     target_modules=pattern, bias="none")
    return get_peft_model(base, cfg)


def load_base(vcfg):
    """(model, processor, device) for ``vcfg.base_model``, loaded with ``from_pretrained`` like the hf backend."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlmrl.reward_workers.backends.base import BackendError
    from vlmrl.reward_workers.backends.hf import resolve_attn, resolve_device

    if not vcfg.base_model:
        raise ValueError("lrm_train.vlm.base_model is empty: set it to a local VLM folder "
                         "(e.g. the output of `vlmrl build-tiny-vlm`, or a Qwen2.5-VL snapshot)")
    try:
        device = resolve_device(vcfg.device)
    except BackendError as e:
        raise ValueError(f"lrm_train.vlm.device: {e}") from e
    dtype = torch.bfloat16 if (vcfg.bf16 and device.startswith("cuda")) else torch.float32
    proc_kwargs = {} if vcfg.max_pixels is None else {"max_pixels": int(vcfg.max_pixels)}
    try:
        processor = AutoProcessor.from_pretrained(vcfg.base_model, **proc_kwargs)
        model = AutoModelForImageTextToText.from_pretrained(
            vcfg.base_model, dtype=dtype, attn_implementation=resolve_attn(vcfg.attn_implementation, device))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load base VLM from {vcfg.base_model!r}: {e}") from e
    return model.to(device), processor, device


def _validate(cfg, vcfg) -> None:
    checks = [
        (vcfg.steps >= 1, f"lrm_train.vlm.steps must be >= 1, got {vcfg.steps}"),
        (vcfg.batch_size >= 2, f"lrm_train.vlm.batch_size must be >= 2 frame pairs, got {vcfg.batch_size}"),
        (1 <= vcfg.grad_accum <= vcfg.batch_size,
         f"lrm_train.vlm.grad_accum must be in 1..batch_size, got {vcfg.grad_accum}"),
        (vcfg.lr > 0, f"lrm_train.vlm.lr must be > 0, got {vcfg.lr}"),
        (vcfg.lora_r >= 1, f"lrm_train.vlm.lora_r must be >= 1, got {vcfg.lora_r}"),
        (vcfg.progress_scale >= 1, f"lrm_train.vlm.progress_scale must be >= 1, got {vcfg.progress_scale}"),
        (vcfg.image_size >= 28, f"lrm_train.vlm.image_size must be >= 28 px, got {vcfg.image_size}"),
        (set(vcfg.task_weights) <= set(KINDS),
         f"lrm_train.vlm.task_weights keys must be among {KINDS}, got {sorted(vcfg.task_weights)}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)


def _endless(batches: ShuffleBufferBatches) -> Iterator[TrainBatch]:
    while True:
        n = 0
        for b in batches.epoch():
            n += 1
            yield b
        if n == 0:
            raise ValueError("the training split yields no batches (too few frames for one batch of pairs)")


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        frac = (step - warmup) / max(total - warmup, 1)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

    return f


def step_losses(model, processor, examples: List[LrmExample], weights: Dict[str, float], grad_accum: int = 1,
                backward: bool = True) -> Dict[str, float]:
    """One step's loss over ``examples`` (split into ``grad_accum`` forwards; backward on each if asked).
    Returns the weighted total and each question's mean ``-log P(answer)``."""
    counts = {k: sum(e.kind == k for e in examples) for k in KINDS}
    sums = {k: 0.0 for k in KINDS}
    total = 0.0
    size = math.ceil(len(examples) / grad_accum)
    for s in range(0, len(examples), size):
        chunk = examples[s:s + size]
        enc, labels, alen = encode_examples(processor, chunk)
        kinds = [e.kind for e in chunk]
        with torch.set_grad_enabled(backward):
            nll = answer_nll(model, enc, labels, alen)
            loss = weighted_loss(nll, kinds, counts, weights)
            if backward:
                loss.backward()
        total += float(loss.detach())
        for k, v in zip(kinds, nll.detach().float().tolist()):
            sums[k] += v
    out = {"loss": total}
    out.update({k: sums[k] / counts[k] for k in KINDS if counts[k]})
    return out


def _mean_losses(model, processor, batches: List[TrainBatch], scale: int, weights) -> Dict[str, float]:
    was_training = model.training
    model.eval()
    parts: Dict[str, List[float]] = {}
    for b in batches:
        for k, v in step_losses(model, processor, batch_examples(b, scale), weights, backward=False).items():
            parts.setdefault(k, []).append(v)
    model.train(was_training)
    return {k: float(np.mean(v)) for k, v in parts.items()}


def train_lora_lrm(cfg, dataset_dirs: Optional[Sequence[str]] = None, out_dir: Optional[str] = None, *,
                   log: Callable[[str], None] = print, writer=None) -> Dict[str, object]:
    """Train a LoRA adapter per ``cfg`` (the ``lrm_train`` section; LoRA knobs in ``cfg.vlm``) and save it.

    Writes into ``out_dir`` (default ``cfg.out_dir``): the peft adapter (``adapter_config.json`` +
    ``adapter_model.safetensors``, loadable by the ``lrm`` scorer's ``adapter`` param),
    ``train_config.yaml``, ``metrics.json`` and TensorBoard scalars ``lrm_lora/...`` under ``tb/``.
    Returns the metrics: first/last training loss, held-out loss before/after, steps, seconds.
    Raises ValueError with a message naming the bad setting or input.
    """
    from omegaconf import DictConfig, OmegaConf

    vcfg = cfg.vlm
    _validate(cfg, vcfg)
    dirs = list(dataset_dirs if dataset_dirs is not None else cfg.dataset_dirs)
    sources = dataset_sources(dirs)
    out = Path(out_dir if out_dir is not None else cfg.out_dir)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    rule = TargetRule.from_config(cfg)
    train_entries = split_entries(sources, "train", cfg.val_fraction, cfg.split_seed)
    val_entries = split_entries(sources, "val", cfg.val_fraction, cfg.split_seed)
    if not train_entries:
        raise ValueError(f"no training episodes in {sources_label(sources)} with val_fraction={cfg.val_fraction}")
    weights = {k: float(vcfg.task_weights.get(k, 0.0)) for k in KINDS}
    scale = int(vcfg.progress_scale)

    base, processor, device = load_base(vcfg)
    model = lora_model(base, vcfg)
    if vcfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_train, n_all = sum(p.numel() for p in trainable), sum(p.numel() for p in model.parameters())
    log(f"lrm-train (vlm): base {vcfg.base_model} on {device} ({next(base.parameters()).dtype}), LoRA r={vcfg.lora_r} "
        f"on {list(vcfg.target_modules)}: {n_train / 1e6:.3f} M trainable of {n_all / 1e6:.1f} M; "
        f"{len(train_entries)} train / {len(val_entries)} val episodes from {sources_label(sources)}")

    batches = ShuffleBufferBatches(train_entries, vcfg.image_size, vcfg.batch_size, rule, cfg.buffer_episodes, cfg.seed)
    val_batches: List[TrainBatch] = []
    if vcfg.val_batches > 0 and val_entries:
        vb = ShuffleBufferBatches(val_entries, vcfg.image_size, vcfg.batch_size, rule, cfg.buffer_episodes, cfg.seed + 1)
        for b in vb.epoch():
            val_batches.append(b)
            if len(val_batches) >= vcfg.val_batches:
                break
    opt = torch.optim.AdamW(trainable, lr=vcfg.lr, weight_decay=vcfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(vcfg.warmup_steps, vcfg.steps))

    own_writer = writer is None
    if own_writer:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    metrics: Dict[str, object] = {"trainable_params": n_train, "total_params": n_all, "device": device}
    try:
        if val_batches:
            metrics["val_before"] = _mean_losses(model, processor, val_batches, scale, weights)
            log(f"held-out loss before: {metrics['val_before']['loss']:.4f}")
        model.train()
        stream = _endless(batches)
        t0 = time.time()
        history: List[float] = []
        step = 0
        for step in range(1, vcfg.steps + 1):
            ts = time.time()
            examples = batch_examples(next(stream), scale)
            opt.zero_grad(set_to_none=True)
            parts = step_losses(model, processor, examples, weights, vcfg.grad_accum)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, 1.0))
            opt.step()
            sched.step()
            history.append(parts["loss"])
            lr = sched.get_last_lr()[0]
            for k, v in parts.items():
                writer.add_scalar(f"lrm_lora/train/{k}", v, step)
            writer.add_scalar("lrm_lora/train/lr", lr, step)
            writer.add_scalar("lrm_lora/train/grad_norm", grad_norm, step)
            if step == 1 or step == vcfg.steps or step % max(vcfg.log_every, 1) == 0:
                log(f"step {step}/{vcfg.steps} loss={parts['loss']:.4f} "
                    + " ".join(f"{k}={parts[k]:.3f}" for k in KINDS if k in parts)
                    + f" lr={lr:.2e} |g|={grad_norm:.3f} {len(examples)} prompts {time.time() - ts:.2f}s/step")
            if cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes:
                log(f"lrm-train (vlm): stopping at step {step}: max_minutes={cfg.max_minutes} reached")
                break
        metrics.update(steps=step, seconds=round(time.time() - t0, 3), train_loss_first=history[0],
                       train_loss_last=history[-1], train_loss=history)
        if val_batches:
            metrics["val_after"] = _mean_losses(model, processor, val_batches, scale, weights)
            metrics["val_loss"] = metrics["val_after"]["loss"]
            for k, v in metrics["val_after"].items():
                writer.add_scalar(f"lrm_lora/val/{k}", v, step)
            log(f"held-out loss after {step} steps: {metrics['val_loss']:.4f} "
                f"(before {metrics['val_before']['loss']:.4f})")
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out))
        section = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
        resolved = OmegaConf.to_container(section, resolve=True)
        resolved.update(dataset_dirs=[d if isinstance(d, (str, dict)) else
                                      (OmegaConf.to_container(d, resolve=True) if isinstance(d, DictConfig) else str(d))
                                      for d in dirs], out_dir=str(out))
        OmegaConf.save(OmegaConf.create({"lrm_train": resolved}), out / "train_config.yaml")
        if vcfg.eval_episodes > 0 and val_entries:
            metrics["eval"] = _evaluate_adapter(cfg, vcfg, sources, out, rule, log)
        metrics["out_dir"] = str(out)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
        log(f"lrm-train (vlm): saved LoRA adapter to {out} ({step} steps, {metrics['seconds']:.1f}s); "
            f"use it with scorer lrm params.model={vcfg.base_model} params.adapter={out}")
    finally:
        if own_writer:
            writer.close()
        else:
            writer.flush()
    return metrics


def _evaluate_adapter(cfg, vcfg, dirs, out: Path, rule: TargetRule, log) -> Dict[str, object]:
    """Reward-quality metrics of the saved adapter through the real ``lrm`` scorer on held-out episodes."""
    from vlmrl.learner.reward_training.lrm_data import iter_split_episodes
    from vlmrl.learner.reward_training.reward_eval import evaluate_predictors, scorer_predictor
    from vlmrl.reward_workers.scorers import build_scorer

    scorer = build_scorer("lrm", {"model": vcfg.base_model, "adapter": str(out), "device": vcfg.device,
                                  "max_pixels": vcfg.max_pixels, "progress_scale": vcfg.progress_scale})
    try:
        eps = iter_split_episodes(dirs, "val", cfg.val_fraction, cfg.split_seed, vcfg.eval_episodes)
        res = evaluate_predictors(eps, {"lrm_lora": scorer_predictor(scorer, batch_size=vcfg.batch_size)},
                                  rule=rule, seed=cfg.seed)["lrm_lora"]
    finally:
        scorer.close()
    log(f"held-out reward eval ({vcfg.eval_episodes} episodes max): "
        + " ".join(f"{k}={v:.3f}" for k, v in res.items() if isinstance(v, float)))
    return res
