"""Builds the VLM backend a scorer asked for by name; the heavy imports (transformers, vLLM) happen here.

Kept apart from :mod:`.base` (the interface every backend implements) so the interface never imports its
implementations.
"""

from __future__ import annotations

from typing import Any

from vlmrl.reward_workers.backends.base import BackendError, VLMBackend


def build_backend(kind: str, **params: Any) -> VLMBackend:
    """Instantiate a backend by name: ``hf`` (transformers) or ``vllm``; heavy imports happen here."""
    if kind == "hf":
        from vlmrl.reward_workers.backends.hf import HFBackend

        return HFBackend(**params)
    if kind == "vllm":
        from vlmrl.reward_workers.backends.vllm_backend import VLLMBackend

        return VLLMBackend(**params)
    raise BackendError(f"unknown VLM backend {kind!r}; choose 'hf' or 'vllm'")
