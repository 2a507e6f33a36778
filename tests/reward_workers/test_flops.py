"""FLOP counting of prefill scoring (reward_workers/backends/flops.py) on the tiny Qwen2.5-VL config."""

from __future__ import annotations

import pytest

from vlmrl.reward_workers.backends.flops import bf16_peak_tflops, param_counts, prefill_flops


@pytest.fixture(scope="module")
def tiny_model(tiny_vlm_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)


def expected_counts(cfg):
    """Parameter counts from the config's sizes by the Qwen2.5-VL architecture's formulas."""
    t, v = cfg.text_config, cfg.vision_config
    h, nh, kv, hd, inter = t.hidden_size, t.num_attention_heads, t.num_key_value_heads, t.head_dim, t.intermediate_size
    attn = (h * nh * hd + nh * hd) + 2 * (h * kv * hd + kv * hd) + nh * hd * h  # q,k,v with bias; o without
    layer = attn + 3 * h * inter + 2 * h  # SwiGLU MLP, two RMSNorms
    lm_decoder = t.num_hidden_layers * layer + h  # + final norm
    vh, vi = v.hidden_size, v.intermediate_size
    patch_embed = v.in_channels * v.temporal_patch_size * v.patch_size ** 2 * vh
    block = (3 * vh * vh + 3 * vh) + (vh * vh + vh) + 2 * (vh * vi + vi) + (vi * vh + vh) + 2 * vh
    m = vh * v.spatial_merge_size ** 2
    merger = vh + (m * m + m) + (m * v.out_hidden_size + v.out_hidden_size)
    return lm_decoder, t.vocab_size * h, patch_embed + v.depth * block, merger


def test_param_counts_match_the_architecture_formulas(tiny_model):
    c = param_counts(tiny_model)
    lm_decoder, lm_head, vision_per_patch, merger = expected_counts(tiny_model.config)
    assert (c.lm_decoder, c.lm_head, c.vision_per_patch, c.vision_merger) == (lm_decoder, lm_head, vision_per_patch, merger)
    assert c.merge_size == 2
    # everything is accounted for once (the tiny model ties lm_head to the embeddings)
    assert c.lm_decoder + c.lm_head + c.vision_per_patch + c.vision_merger == sum(p.numel() for p in tiny_model.parameters())


def test_prefill_flops_is_two_params_per_token_and_patch(tiny_model):
    c = param_counts(tiny_model)
    f = prefill_flops(c, tokens=300, patches=64 * 3, requests=3)
    assert f.lm == 2 * c.lm_decoder * 300 + 2 * c.lm_head * 3
    assert f.vision == 2 * c.vision_per_patch * 192 + 2 * c.vision_merger * 48
    assert f.total == f.lm + f.vision
    with pytest.raises(ValueError, match="multiple of merge_size"):
        prefill_flops(c, tokens=10, patches=6, requests=1)
    with pytest.raises(ValueError, match=">= 0"):
        prefill_flops(c, tokens=-1, patches=4, requests=1)


def test_peak_table():
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak_tflops("NVIDIA H200") == 989.0
    assert bf16_peak_tflops("Some Other GPU") is None
