"""FLOP counts of prefill-only VLM scoring, for throughput / utilisation reports (benchmarks/vlm_gpu.py).

Dense matmul FLOPs only, the usual 2 * params * tokens rule (attention's sequence-squared terms,
norms and activations are left out; at ~100-token scoring prompts they are a few percent):

* language model: 2 * (decoder params, embeddings excluded) * real (unpadded) prompt tokens,
  plus 2 * lm_head params * 1 per request (the backend asks for the last position's logits only);
* vision tower: 2 * (patch embedding + blocks) params * patches, plus 2 * merger params * patches / merge^2
  (the patch merger runs on merged tokens).

Works on any Qwen2-VL / Qwen2.5-VL / Qwen3-VL model from transformers (``model.model.language_model``,
``model.model.visual``; Qwen3-VL's deepstack mergers count as mergers), at any size: the tiny test model or a
randomly initialised 3B / 8B.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VLMParamCounts:
    """Parameter counts of the parts of a Qwen-VL model that prefill scoring runs."""

    lm_decoder: int
    """Language-model parameters applied to every prompt token (layers + final norm; no embeddings)."""
    lm_head: int
    """Output projection (vocab x hidden), applied once per request; counted even when tied to the embeddings."""
    vision_per_patch: int
    """Vision parameters applied to every patch (patch embedding + transformer blocks)."""
    vision_merger: int
    """Patch-merger parameters, applied to every merged token (patches / merge_size^2)."""
    merge_size: int


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def param_counts(model) -> VLMParamCounts:
    """Split a Qwen-VL ``...ForConditionalGeneration`` model's parameters by how often prefill runs them."""
    core = model.model
    lm, visual = core.language_model, core.visual
    head = model.lm_head.weight
    merger = _numel(visual.merger)
    if hasattr(visual, "deepstack_merger_list"):  # Qwen3-VL: one more merger per deepstack layer, on merged tokens
        merger += _numel(visual.deepstack_merger_list)
    merge = int(getattr(model.config.vision_config, "spatial_merge_size", 1))
    return VLMParamCounts(lm_decoder=_numel(lm) - lm.embed_tokens.weight.numel(), lm_head=head.numel(),
                          vision_per_patch=_numel(visual) - merger, vision_merger=merger, merge_size=merge)


@dataclass
class PrefillFlops:
    """FLOPs of one prefill-scoring batch, by part."""

    lm: float
    vision: float

    @property
    def total(self) -> float:
        return self.lm + self.vision


def prefill_flops(counts: VLMParamCounts, tokens: int, patches: int, requests: int) -> PrefillFlops:
    """FLOPs of scoring ``requests`` prompts with ``tokens`` real tokens and ``patches`` vision patches in all."""
    if min(tokens, patches, requests) < 0:
        raise ValueError(f"tokens, patches and requests must be >= 0, got {tokens}, {patches}, {requests}")
    if patches % (counts.merge_size ** 2):
        raise ValueError(f"patches={patches} is not a multiple of merge_size^2={counts.merge_size ** 2}")
    lm = 2.0 * counts.lm_decoder * tokens + 2.0 * counts.lm_head * requests
    vision = 2.0 * counts.vision_per_patch * patches + 2.0 * counts.vision_merger * patches // counts.merge_size ** 2
    return PrefillFlops(lm=lm, vision=vision)


BF16_DENSE_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "GH200": 989.0}
"""bf16 dense tensor-core peaks (SXM parts; H100 PCIe is 756) by GPU name fragment, TFLOP/s."""


def bf16_peak_tflops(device_name: str) -> float | None:
    """The bf16 dense peak of a GPU from its name (``torch.cuda.get_device_name``), or None if unknown."""
    name = device_name.upper()
    if "H100" in name and "PCIE" in name:
        return 756.0
    for key in sorted(BF16_DENSE_PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            return BF16_DENSE_PEAK_TFLOPS[key]
    return None
