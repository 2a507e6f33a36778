"""What the VLM prompt-logit scorers (``lrm``, ``preference``, ``window``) share: backend params and helpers,
and the loader that gives several reward heads their own models while heads on the same model share one copy."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from vlmrl.reward_workers.scorers.base import ScorerError

log = logging.getLogger(__name__)


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


def make_backend(p: VLMBackendParams, scorer: str, adapters: Optional[Dict[str, str]] = None):
    """Build the configured backend (``adapters``: named LoRA adapters on the one base model), turning load
    errors into a ScorerError naming the scorer."""
    from vlmrl.reward_workers.backends.base import BackendError
    from vlmrl.reward_workers.backends.factory import build_backend

    if not p.model:
        raise ScorerError(f"scorer {scorer!r} needs params.model (path of a VLM checkpoint)")
    common = dict(model=p.model, adapter=p.adapter, dtype=p.dtype, max_pixels=p.max_pixels)
    if adapters:
        common["adapters"] = adapters
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


@dataclass(frozen=True)
class HeadModel:
    """The model (and optional LoRA adapter) one reward head runs on, and the config key that sets it."""

    head: str
    model: str
    adapter: Optional[str] = None
    key: str = ""
    """Where the user sets this head's model, for error messages (e.g. ``scorer.params.heads.progress``)."""


def load_head_models(p: VLMBackendParams, heads: Sequence[HeadModel], scorer: str, check_memory: bool = True,
                     memory_budget_gb: Optional[float] = None, memory_headroom: float = 0.2) -> Dict[str, Any]:
    """Load the models of ``heads``: one backend per distinct model folder (its heads' distinct adapters loaded
    on that one copy), returning per head a view that runs its own adapter.

    Before anything loads, every folder is checked (exists, a VLM architecture transformers can load, adapters
    are adapters) and the models' estimated memory (parameters x dtype bytes x (1 + ``memory_headroom``)) is
    added up per device against ``memory_budget_gb`` (None: the device's free memory). Each problem is a
    one-line :class:`ScorerError` naming the head and the fix.
    """
    from vlmrl.reward_workers.backends.base import AdapterView, BackendError
    from vlmrl.reward_workers.backends.memory import check_model_folder

    if p.backend not in ("hf", "vllm"):
        raise ScorerError(f"scorer {scorer!r}: unknown backend {p.backend!r}; choose 'hf' or 'vllm'")
    groups: Dict[str, List[HeadModel]] = {}
    for h in heads:
        where = f"scorer {scorer!r} head {h.head!r}"
        if not h.model:
            raise ScorerError(f"{where} has no model; fix: set scorer.params.model (all heads) or {h.key}.model")
        try:
            check_model_folder(h.model)
        except BackendError as e:
            raise ScorerError(f"{where}: {e}; fix: point {h.key}.model at a Qwen2.5-VL / Qwen3-VL checkpoint "
                              f"folder (vlmrl build-tiny-vlm DIR --arch qwen3_vl writes a test one)") from e
        if h.adapter and not os.path.isfile(os.path.join(h.adapter, "adapter_config.json")):
            raise ScorerError(f"{where}: adapter {h.adapter!r} is not a peft adapter folder (no adapter_config.json); "
                              f"fix: set {h.key}.adapter to a LoRA adapter folder, or '' for none")
        groups.setdefault(_model_key(h.model), []).append(h)
    if check_memory:
        _check_fit(p, groups, scorer, memory_budget_gb, memory_headroom)

    views: Dict[str, Any] = {}
    for members in groups.values():
        paths = sorted({h.adapter for h in members if h.adapter})
        single = len(paths) == 1 and all(h.adapter for h in members)
        names = {path: f"adapter{i}" for i, path in enumerate(paths)}
        q = dataclasses.replace(p, model=members[0].model, adapter=paths[0] if single else None)
        try:
            backend = make_backend(q, scorer, adapters=None if single or not paths else {names[a]: a for a in paths})
        except ScorerError as e:
            raise ScorerError(f"{e} (heads {[h.head for h in members]}; fix: check {members[0].key}.model / .adapter)"
                              ) from e
        for h in members:
            if single:  # the backend's one always-on adapter ("default"); its model_id / version include it
                views[h.head] = AdapterView(backend, "default")
            else:
                views[h.head] = AdapterView(backend, names[h.adapter], h.adapter) if h.adapter else AdapterView(backend)
    return views


def _model_key(model: str) -> str:
    return os.path.realpath(os.path.expanduser(model)) if os.path.exists(os.path.expanduser(model)) else model


def _check_fit(p: VLMBackendParams, groups: Dict[str, List[HeadModel]], scorer: str,
               budget_gb: Optional[float], headroom: float) -> None:
    """Raise if the models of ``groups`` (estimated) do not fit their device; skip with a logged reason if unknown."""
    from vlmrl.reward_workers.backends.memory import DTYPE_BYTES, MemoryNeed, folder_numel, free_bytes, gib

    if p.backend == "hf":
        from vlmrl.reward_workers.backends.base import BackendError
        from vlmrl.reward_workers.backends.hf import resolve_device, resolve_dtype

        try:
            device = resolve_device(p.device)
            dtype_bytes = resolve_dtype(p.dtype, device).itemsize
        except BackendError as e:
            raise ScorerError(f"scorer {scorer!r}: {e}; fix: scorer.params.device / scorer.params.dtype") from e
    else:
        device, dtype_bytes = "cuda", DTYPE_BYTES.get(p.dtype, 2)
    if budget_gb is not None:
        budget, why = int(budget_gb * 2 ** 30), ""
    else:
        budget, why = free_bytes(device)
    if budget is None:
        log.warning("scorer %r: memory check skipped: %s", scorer, why)
        return
    used, placed = 0, []
    for members in groups.values():
        heads = [h.head for h in members]
        numel = folder_numel(members[0].model)
        if numel is None:
            log.warning("scorer %r: memory check skipped for heads %s: %r has no safetensors files to count",
                        scorer, heads, members[0].model)
            continue
        numel += sum(folder_numel(a) or 0 for a in sorted({h.adapter for h in members if h.adapter}))
        need = MemoryNeed(device, numel, dtype_bytes, headroom)
        if used + need.bytes > budget:
            before = f" after heads {placed} take {gib(used)}" if placed else ""
            raise ScorerError(
                f"scorer {scorer!r} head {heads[0]!r}: model {members[0].model!r} ({numel / 1e9:.3f} B params x "
                f"{dtype_bytes} B + {headroom:.0%} headroom = {gib(need.bytes)}, estimated) does not fit {device}: "
                f"{gib(budget)} {'budget' if budget_gb is not None else 'free'}{before}; fix: share one model between "
                f"heads ({members[0].key}.model = another head's model, adapters on top), use a smaller dtype "
                f"(scorer.params.dtype), a device with more memory, or scorer.params.memory_budget_gb")
        used += need.bytes
        placed += heads


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
