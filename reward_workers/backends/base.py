"""The interface VLM scorers use to run a vision-language model, whatever engine hosts it.

A scorer turns items into :class:`VLMRequest` s (chat messages with image placeholders, the images,
and the candidate answers to score); a backend (transformers in ``hf.py``, vLLM in
``vllm_backend.py``) runs them in batches and returns, per request, the log-probability of each
candidate answer at the answer position ("prompt-logit scoring": prefill only, no sampling).

Multi-token candidates are scored exactly: the log-probability of a candidate is the sum of its
token log-probs given the prompt and the candidate's earlier tokens. If one candidate's tokens are a
prefix of another's (``"1"`` vs ``"10"``), every candidate of that request is terminated with the
end-of-turn token so the candidates are mutually exclusive answers; otherwise candidates are scored
as the start of the answer (for single-token sets this is the plain next-token distribution).
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np


@dataclass
class VLMRequest:
    """One prompt for a VLM: HF-style chat ``messages`` (``{"type": "image"}`` entries mark where
    ``images`` go, in order), the ``images`` (PIL or uint8 HWC arrays), and the ``candidates`` to
    score (answer strings; empty for :meth:`VLMBackend.generate`)."""

    messages: List[Dict[str, Any]]
    images: List[Any] = field(default_factory=list)
    candidates: Sequence[str] = ()
    answer_prefix: str = ""
    """Text appended after the chat template's assistant opening: a forced start of the answer that candidates
    are scored after, and generation continues from."""


class VLMBackend(ABC):
    """A loaded VLM that scores candidate answers and generates short texts for batches of requests."""

    def __init__(self, model: str = "", adapter: str | None = None) -> None:
        self._model_path, self._adapter = str(model), adapter
        self._version = files_version(model, adapter) if model else ""
        self.timings: Dict[str, float] = {"preprocess_s": 0.0, "forward_s": 0.0, "generate_s": 0.0,
                                          "requests": 0, "batches": 0}
        """Cumulative wall time of CPU preprocessing (chat template, tokenizer, image processor) and of
        model forwards, plus counts; read it to see whether preprocessing or the model bounds throughput."""

    @property
    def model_id(self) -> str:
        """The model path or id (plus adapter) this backend runs."""
        return self._model_path + (f"+{self._adapter}" if self._adapter else "")

    @property
    def model_version(self) -> str:
        """A content hash of the model (and adapter) files."""
        return self._version

    @abstractmethod
    def score_candidates(self, requests: Sequence[VLMRequest]) -> List[np.ndarray]:
        """Per request, a float64 array with the log-probability of each of its candidates."""

    @abstractmethod
    def generate(self, requests: Sequence[VLMRequest], max_new_tokens: int,
                 allowed_chars: str | None = None) -> List[str]:
        """Greedy completions (at most ``max_new_tokens`` tokens) of each request's chat prompt; with
        ``allowed_chars``, decoding is constrained to tokens made of those characters (at least one, then
        end-of-turn may end the answer)."""

    @abstractmethod
    def visual_tokens(self, image_hw: Sequence[tuple[int, int]]) -> List[int]:
        """How many visual tokens the model spends on images of these (height, width) sizes."""

    def select_adapter(self, name: str | None) -> None:
        """Run the next calls with the named adapter of ``adapters`` (None: the bare base model)."""
        if name is not None:
            raise BackendError(f"{type(self).__name__} holds no named adapters (asked for {name!r})")

    def candidate_ids(self, candidates: Sequence[str]) -> List[List[int]]:
        """Token ids of each candidate as this backend scores them (see :func:`candidate_token_ids`)."""
        return candidate_token_ids(self.tokenizer, candidates, self.end_token_id)  # type: ignore[attr-defined]

    def allowed_token_ids(self, allowed_chars: str) -> List[int]:
        """Ids of the tokens that decode to a non-empty string of ``allowed_chars`` only (cached)."""
        cache = self.__dict__.setdefault("_allowed_cache", {})
        if allowed_chars not in cache:
            tok = self.tokenizer  # type: ignore[attr-defined]
            allowed = set(allowed_chars)
            texts = tok.batch_decode([[i] for i in range(len(tok))], clean_up_tokenization_spaces=False)
            special = set(tok.all_special_ids)
            cache[allowed_chars] = [i for i, t in enumerate(texts) if t and set(t) <= allowed and i not in special]
        return cache[allowed_chars]

    def close(self) -> None:
        """Free the model."""


class AdapterView:
    """One reward head's view of a shared backend: the backend's base model with one of its adapters selected.

    Heads whose models are the same folder share one loaded backend (one copy of the weights); each head
    with its own LoRA adapter gets a view that selects that adapter before every call. It offers the
    :class:`VLMBackend` calls a scorer makes, and its own ``model_id`` / ``model_version`` (base + adapter).
    """

    def __init__(self, backend: VLMBackend, adapter_name: str | None = None, adapter_path: str | None = None) -> None:
        self.backend, self.adapter_name, self.adapter_path = backend, adapter_name, adapter_path
        self._version = files_version(backend._model_path, adapter_path) if adapter_path else backend.model_version

    @property
    def model_id(self) -> str:
        return self.backend._model_path + f"+{self.adapter_path}" if self.adapter_path else self.backend.model_id

    @property
    def model_version(self) -> str:
        return self._version

    @property
    def timings(self) -> Dict[str, float]:
        return self.backend.timings

    def score_candidates(self, requests: Sequence[VLMRequest]) -> List[np.ndarray]:
        self.backend.select_adapter(self.adapter_name)
        return self.backend.score_candidates(requests)

    def generate(self, requests: Sequence[VLMRequest], max_new_tokens: int,
                 allowed_chars: str | None = None) -> List[str]:
        self.backend.select_adapter(self.adapter_name)
        return self.backend.generate(requests, max_new_tokens, allowed_chars)

    def visual_tokens(self, image_hw: Sequence[tuple[int, int]]) -> List[int]:
        return self.backend.visual_tokens(image_hw)

    def candidate_ids(self, candidates: Sequence[str]) -> List[List[int]]:
        return self.backend.candidate_ids(candidates)

    def allowed_token_ids(self, allowed_chars: str) -> List[int]:
        return self.backend.allowed_token_ids(allowed_chars)


class BackendError(ValueError):
    """A backend cannot be built or cannot run a request; the message says why."""


def files_version(*paths: str | os.PathLike | None, full_hash_limit: int = 64 * 1024 * 1024) -> str:
    """A short hash identifying the files under ``paths`` (model dir, adapter dir).

    Files up to ``full_hash_limit`` bytes are hashed whole; larger ones (multi-GB weight shards) by
    name, size and their first and last MiB, which is enough to tell checkpoints apart cheaply.
    Hub ids that are not local paths are hashed by name.
    """
    h = hashlib.sha256()
    for p in paths:
        if p is None:
            continue
        root = Path(p)
        if not root.exists():
            h.update(f"id:{p}".encode())
            continue
        files = sorted(f for f in (root.rglob("*") if root.is_dir() else [root]) if f.is_file())
        for f in files:
            size = f.stat().st_size
            h.update(f"{f.relative_to(root) if root.is_dir() else f.name}:{size}".encode())
            with open(f, "rb") as fh:
                if size <= full_hash_limit:
                    h.update(fh.read())
                else:
                    h.update(fh.read(1 << 20))
                    fh.seek(size - (1 << 20))
                    h.update(fh.read())
    return h.hexdigest()[:16]


def candidate_token_ids(tokenizer, candidates: Sequence[str], end_token_id: int) -> List[List[int]]:
    """Token ids of each candidate; all get ``end_token_id`` appended if one is a prefix of another."""
    seqs = [list(tokenizer.encode(c, add_special_tokens=False)) for c in candidates]
    if any(len(s) == 0 for s in seqs):
        raise BackendError(f"empty candidate answer in {list(candidates)!r}")
    if len({tuple(s) for s in seqs}) != len(seqs):
        raise BackendError(f"candidate answers tokenize identically: {list(candidates)!r}")
    prefix_free = not any(i != j and b[: len(a)] == a for i, a in enumerate(seqs) for j, b in enumerate(seqs))
    return seqs if prefix_free else [s + [end_token_id] for s in seqs]


def to_pil(image: Any):
    """A PIL RGB image from a PIL image or a uint8 ``(H, W, 3)`` array."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise BackendError(f"image must be uint8 (H, W, 1|3|4), got {arr.dtype} {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return Image.fromarray(arr[..., :3])
