"""LoRA fine-tuning of the VLM reward model (learner/reward_training/lrm_lora.py) on a tiny random Qwen2.5-VL.

The tiny model's outputs carry no meaning: these tests check the training plumbing (answer-token
labels, loss going down, adapter round trip through the ``lrm`` scorer, merge, CLI), not reward quality.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from vlmrl.envs.synthetic_episodes import write_synthetic_dataset
from vlmrl.learner.reward_training.lrm_data import ShuffleBufferBatches, TargetRule, split_entries
from vlmrl.learner.reward_training.lrm_lora import (batch_examples, encode_examples, load_base, lora_model, progress_answer,
                                    step_losses, train_lora_lrm)
from vlmrl.reward_workers.scorers import build_scorer
from vlmrl.reward_workers.models import prompts as P
from vlmrl.system.config import LrmTrainConfig

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
TASK = "push the red cube onto the green goal"


@pytest.fixture(scope="module")
def tiny_vlm(tiny_vlm_dir):
    """The session's tiny random Qwen2.5-VL (tests/conftest.py); read-only: adapters go elsewhere."""
    return tiny_vlm_dir


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return str(write_synthetic_dataset(tmp_path_factory.mktemp("lora_ds") / "ds", num_episodes=6, num_steps=10,
                                       image_size=32, seed=3))


def lora_cfg(tiny_vlm: str, **vlm):
    cfg = OmegaConf.structured(LrmTrainConfig)
    cfg.val_fraction = 0.3
    cfg.vlm.base_model = tiny_vlm
    opts = dict(steps=6, batch_size=4, lr=5e-3, image_size=56, lora_dropout=0.0, warmup_steps=0, log_every=1,
                val_batches=2, device="cpu")
    opts.update(vlm)
    for k, v in opts.items():
        cfg.vlm[k] = v
    return cfg


@pytest.fixture(scope="module")
def trained(tiny_vlm, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora_out") / "adapter"
    lines: list[str] = []
    metrics = train_lora_lrm(lora_cfg(tiny_vlm), [dataset], str(out), log=lines.append)
    return out, metrics, lines


def test_answer_tokens_are_the_scorers_candidates_and_only_they_are_labelled(tiny_vlm, dataset):
    from transformers import AutoProcessor

    from vlmrl.reward_workers.backends.base import candidate_token_ids
    from vlmrl.reward_workers.backends.hf import encode_prompts

    cfg = lora_cfg(tiny_vlm)
    entries = split_entries([dataset], "train", cfg.val_fraction)
    batch = next(ShuffleBufferBatches(entries, 56, 4, TargetRule(), seed=0).epoch())
    examples = batch_examples(batch, 10)
    kinds = [e.kind for e in examples]
    assert kinds.count("progress") == kinds.count("completion") == 4
    assert examples[0].answer == progress_answer(batch.progress_a[0], 10)
    assert examples[1].request.candidates[examples[1].answer] == ("yes" if batch.completion_a[0] >= 0.5 else "no")
    proc = AutoProcessor.from_pretrained(tiny_vlm)
    enc, labels, alen = encode_examples(proc, examples)
    end = proc.tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompt_enc = encode_prompts(proc, [e.request for e in examples])
    for i, e in enumerate(examples):
        want = candidate_token_ids(proc.tokenizer, e.request.candidates, end)[e.answer]
        got = labels[i][labels[i] != -100].tolist()
        assert got == want  # exactly the scorer's candidate tokens ("10" -> 1, 0, <|im_end|>)
        assert enc["input_ids"][i, -len(want):].tolist() == want
        n_prompt = int(prompt_enc["attention_mask"][i].sum())
        real = enc["input_ids"][i][enc["attention_mask"][i].bool()].tolist()
        assert real == prompt_enc["input_ids"][i][prompt_enc["attention_mask"][i].bool()].tolist() + want
        assert len(real) == n_prompt + len(want)
    assert alen == max(len(labels[i][labels[i] != -100]) for i in range(len(examples)))
    assert progress_answer(0.25, 10) == 3 and progress_answer(0.0, 10) == 0 and progress_answer(1.0, 10) == 10


def test_steps_on_a_fixed_batch_reduce_its_loss(tiny_vlm, dataset):
    cfg = lora_cfg(tiny_vlm)
    base, proc, _ = load_base(cfg.vlm)
    model = lora_model(base, cfg.vlm)
    entries = split_entries([dataset], "train", cfg.val_fraction)
    examples = batch_examples(next(ShuffleBufferBatches(entries, 56, 4, TargetRule(), seed=1).epoch()), 10)
    weights = {"progress": 1.0, "completion": 1.0, "contrastive": 1.0}
    before = step_losses(model, proc, examples, weights, backward=False)["loss"]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    for _ in range(4):
        opt.zero_grad()
        step_losses(model, proc, examples, weights, grad_accum=2)
        opt.step()
    after = step_losses(model, proc, examples, weights, backward=False)["loss"]
    assert after < before - 0.5, (before, after)


def test_training_lowers_held_out_loss_and_writes_outputs(trained):
    out, metrics, lines = trained
    assert metrics["steps"] == 6
    assert metrics["val_after"]["loss"] < metrics["val_before"]["loss"], metrics
    assert metrics["trainable_params"] < metrics["total_params"] / 10
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    saved = OmegaConf.load(out / "train_config.yaml")
    assert saved.lrm_train.vlm.steps == 6 and saved.lrm_train.out_dir == str(out)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6
    assert sum(line.startswith("step ") for line in lines) == 6
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert all("language_model" in m or m.startswith(".*language_model") for m in [adapter_cfg["target_modules"]])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ev = EventAccumulator(str(out / "tb"))
    ev.Reload()
    assert {"lrm_lora/train/loss", "lrm_lora/val/loss"} <= set(ev.Tags()["scalars"])


def test_adapter_loads_in_lrm_scorer_and_merge_gives_same_scores(trained, tiny_vlm, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out, _, _ = trained
    rng = np.random.default_rng(0)
    pairs = [rng.integers(0, 256, (2, 56, 56, 3), dtype=np.uint8) for _ in range(3)]
    base = build_scorer("lrm", {"model": tiny_vlm, "device": "cpu",
                                "weights": {"progress": 1.0, "completion": 1.0, "contrastive": 1.0}})
    adapted = build_scorer("lrm", {"model": tiny_vlm, "adapter": str(out), "device": "cpu",
                                   "weights": {"progress": 1.0, "completion": 1.0, "contrastive": 1.0}})
    assert adapted.model_version != base.model_version
    r_base = base.score_batch([TASK] * 3, pairs)
    r_adapted = adapted.score_batch([TASK] * 3, pairs)
    comps = lambda rs: np.array([[r.components[k] for k in ("progress", "completion", "contrastive")] for r in rs])
    assert not np.allclose(comps(r_base), comps(r_adapted), atol=1e-5)

    merged_dir = tmp_path / "merged"
    net = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny_vlm), str(out))
    net.merge_and_unload().save_pretrained(merged_dir)
    AutoProcessor.from_pretrained(tiny_vlm).save_pretrained(merged_dir)
    merged = build_scorer("lrm", {"model": str(merged_dir), "device": "cpu",
                                  "weights": {"progress": 1.0, "completion": 1.0, "contrastive": 1.0}})
    np.testing.assert_allclose(comps(merged.score_batch([TASK] * 3, pairs)), comps(r_adapted), atol=1e-4)
    for s in (base, adapted, merged):
        s.close()


def test_bad_settings_give_clear_errors(tiny_vlm, dataset, tmp_path):
    with pytest.raises(ValueError, match="base_model is empty"):
        train_lora_lrm(lora_cfg(""), [dataset], str(tmp_path / "x"))
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        train_lora_lrm(lora_cfg(tiny_vlm, batch_size=1), [dataset], str(tmp_path / "x"))
    with pytest.raises(ValueError, match="no language-model modules named"):
        train_lora_lrm(lora_cfg(tiny_vlm, target_modules=["nope_proj"]), [dataset], str(tmp_path / "x"))
    with pytest.raises(ValueError, match="cannot load base VLM"):
        train_lora_lrm(lora_cfg(str(tmp_path / "missing")), [dataset], str(tmp_path / "x"))


def test_lrm_train_cli_model_vlm_end_to_end(tiny_vlm, dataset, tmp_path):
    out = tmp_path / "cli_out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vlmrl.system.cli", "lrm-train", "lrm_train.model=vlm",
           f"lrm_train.dataset_dirs=[{dataset}]", f"lrm_train.out_dir={out}", "lrm_train.val_fraction=0.3",
           f"lrm_train.vlm.base_model={tiny_vlm}", "lrm_train.vlm.steps=2", "lrm_train.vlm.batch_size=2",
           "lrm_train.vlm.image_size=56", "lrm_train.vlm.val_batches=1", "lrm_train.vlm.device=cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "step 2/2" in res.stdout and "saved LoRA adapter" in res.stdout
    assert (out / "adapter_model.safetensors").exists() and (out / "config.yaml").exists()


def test_lrm_train_cli_model_vlm_bad_setting_exits_2(tiny_vlm, dataset, tmp_path, capsys):
    from vlmrl.system.cli import main

    rc = main(["lrm-train", "lrm_train.model=vlm", f"lrm_train.dataset_dirs=[{dataset}]",
               f"lrm_train.out_dir={tmp_path / 'o'}", f"lrm_train.vlm.base_model={tiny_vlm}", "lrm_train.vlm.steps=0"])
    assert rc == 2 and "lrm_train.vlm.steps must be >= 1" in capsys.readouterr().err


def test_prompts_used_for_training_are_the_scorers(tiny_vlm, dataset):
    cfg = lora_cfg(tiny_vlm)
    entries = split_entries([dataset], "train", cfg.val_fraction)
    batch = next(ShuffleBufferBatches(entries, 56, 2, TargetRule(), seed=0).epoch())
    ex = batch_examples(batch, 10)
    texts = [e.request.messages[-1]["content"][-1]["text"] for e in ex]
    assert texts[0] == P.LRM_PROGRESS.format(task=batch.tasks[0], scale=10)
    assert texts[1] == P.LRM_COMPLETION.format(task=batch.tasks[0])
    assert ex[0].request.messages[0]["content"][0]["text"] == P.SYSTEM


def test_gradient_checkpointing_gives_the_same_loss_and_grads(tiny_vlm, dataset):
    cfg = lora_cfg(tiny_vlm)
    entries = split_entries([dataset], "train", cfg.val_fraction)
    examples = batch_examples(next(ShuffleBufferBatches(entries, 56, 2, TargetRule(), seed=2).epoch()), 10)
    weights = {"progress": 1.0, "completion": 1.0, "contrastive": 1.0}
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        base, proc, _ = load_base(cfg.vlm)
        model = lora_model(base, cfg.vlm)
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        loss = step_losses(model, proc, examples, weights)["loss"]
        grads = torch.cat([p.grad.flatten() for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n])
        results.append((loss, grads))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16 LoRA training path)")
def test_bf16_training_with_checkpointing_on_cuda(tiny_vlm, dataset, tmp_path):
    metrics = train_lora_lrm(lora_cfg(tiny_vlm, device="cuda", bf16=True, gradient_checkpointing=True, steps=3),
                             [dataset], str(tmp_path / "gpu"), log=lambda m: None)
    assert metrics["device"] == "cuda" and metrics["steps"] == 3
    assert np.isfinite(metrics["train_loss_last"]) and metrics["val_after"]["loss"] < metrics["val_before"]["loss"]
