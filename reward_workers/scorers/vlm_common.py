"""What the VLM prompt-logit scorers (``lrm``, ``preference``, ``window``) share: backend params and helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from vlmrl.reward_workers.scorers.base import ScorerError


@dataclass
class VLMBackendParams:
    """How to load and run the VLM behind a scorer."""

    model: str = ""
    """Local path (or hub id) of the VLM, loaded with ``from_pretrained``; required."""
    backend: str = "hf"
    """``hf`` (transformers) or ``vllm`` (vLLM offline engine, CUDA only)."""
    adapter: Optional[str] = None
    """Optional peft LoRA adapter folder loaded on top of ``model``."""
    dtype: str = "auto"
    """``auto`` = bf16 on CUDA, fp32 on CPU; or float32/bfloat16/float16."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` (hf backend)."""
    attn_implementation: str = "auto"
    """hf backend: ``auto`` = flash_attention_2 on CUDA if installed, else sdpa."""
    max_pixels: Optional[int] = None
    """Cap on pixels per image given to the image processor (None: the processor's default)."""
    micro_batch: int = 32
    """Most prompts in one forward; bigger batches are split and their preprocessing pipelined."""
    gpu_memory_utilization: float = 0.5
    """vllm backend: fraction of GPU memory vLLM may take."""


def make_backend(p: VLMBackendParams, scorer: str):
    """Build the configured backend, turning load errors into a ScorerError naming the scorer."""
    from vlmrl.reward_workers.backends.base import BackendError, build_backend

    if not p.model:
        raise ScorerError(f"scorer {scorer!r} needs params.model (path of a VLM checkpoint)")
    common = dict(model=p.model, adapter=p.adapter, dtype=p.dtype, max_pixels=p.max_pixels)
    if p.backend == "hf":
        extra = dict(device=p.device, attn_implementation=p.attn_implementation, micro_batch=p.micro_batch)
    elif p.backend == "vllm":
        extra = dict(gpu_memory_utilization=p.gpu_memory_utilization)
    else:
        raise ScorerError(f"scorer {scorer!r}: unknown backend {p.backend!r}; choose 'hf' or 'vllm'")
    try:
        return build_backend(p.backend, **common, **extra)
    except BackendError as e:
        raise ScorerError(f"scorer {scorer!r}: {e}") from e


def probs(logps: np.ndarray) -> np.ndarray:
    """Softmax of candidate log-probs: the model's distribution restricted to the candidate answers."""
    z = np.exp(logps - logps.max())
    return z / z.sum()


def expected_scale(logps: np.ndarray) -> float:
    """Expected value of a 0..K rating under the candidate distribution, normalised to [0, 1]."""
    p = probs(logps)
    k = len(p) - 1
    return float(np.dot(p, np.arange(k + 1)) / k)


def check_items(name: str, tasks: Sequence[str], items: Sequence[Any], frames: int | None) -> None:
    """Clear errors for mismatched lengths and wrong frame counts."""
    if len(tasks) != len(items):
        raise ScorerError(f"scorer {name!r}: {len(tasks)} tasks for {len(items)} items")
    for i, it in enumerate(items):
        arr = np.asarray(it)
        if arr.ndim != 4 or arr.dtype != np.uint8 or arr.shape[-1] != 3:
            raise ScorerError(f"scorer {name!r}: item {i} must be uint8 (k, H, W, 3), got {arr.dtype} {arr.shape}")
        if frames is not None and arr.shape[0] != frames:
            raise ScorerError(f"scorer {name!r}: item {i} has {arr.shape[0]} frames, this scorer takes exactly {frames}")
