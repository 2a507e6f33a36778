"""Transformers backend: a VLM loaded with ``from_pretrained`` scoring candidate answers by prompt logits.

Requests are chat-templated by the model's own processor, batched with LEFT padding and run in one
prefill forward; the answer position is the last prompt token, so the next-token distribution there
scores single-token candidates. Multi-token candidates take one more forward over the candidate
tokens on top of the prefill's KV cache (the images are encoded once), see
:func:`~vlmrl.reward_workers.backends.base.candidate_token_ids` for how candidates are made exclusive.

CPU preprocessing (chat template, tokenizer, image resize/patching) of micro-batch i+1 runs in a
thread while the model runs micro-batch i; ``timings`` reports both.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from vlmrl.reward_workers.backends.base import (
    BackendError,
    VLMBackend,
    VLMRequest,
    candidate_token_ids,
    to_pil,
)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"device {device!r} requested but CUDA is not available")
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise BackendError(f"unknown dtype {dtype!r}; choose auto, {', '.join(table)}")
    return table[dtype]


def resolve_attn(attn_implementation: str, device: str) -> str:
    if attn_implementation != "auto":
        return attn_implementation
    if device.startswith("cuda"):
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def encode_prompts(processor, requests: Sequence[VLMRequest]):
    """The model inputs of a batch of requests: each request's chat messages through the processor's chat
    template (with the assistant generation prompt, so the next token is the answer), its images, and the
    processor's tokenizer + image processor, LEFT-padded (the tokenizer's padding side). The one place that
    turns :class:`VLMRequest` s into tensors: scoring here and LoRA training (learner/reward_training/lrm_lora.py) share it."""
    texts, images = [], []
    for r in requests:
        n_slots = sum(1 for m in r.messages if not isinstance(m.get("content"), str)
                      for c in m["content"] if c.get("type") == "image")
        if n_slots != len(r.images):
            raise BackendError(f"request has {n_slots} image slots in its messages but {len(r.images)} images")
        texts.append(processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
                     + r.answer_prefix)
        images.append([to_pil(im) for im in r.images])
    kwargs = {"images": images} if any(images) else {}
    if kwargs and not all(images):
        raise BackendError("a batch must not mix requests with and without images")
    return processor(text=texts, return_tensors="pt", padding=True, **kwargs)


class HFBackend(VLMBackend):
    """A transformers image-text-to-text model (+ optional peft LoRA adapter) serving prompt-logit scores.

    Args:
        model: local path (or hub id, if the hub is reachable) for ``from_pretrained``.
        adapter: optional peft adapter directory loaded on top with ``PeftModel.from_pretrained`` (always on).
        adapters: optional named peft adapters ``{name: dir}`` loaded on the one base model; a call runs with
            the one chosen by :meth:`select_adapter` (None: the bare base model). Not together with ``adapter``.
        dtype: ``auto`` (bf16 on CUDA, fp32 on CPU) or an explicit dtype name.
        attn_implementation: ``auto`` (flash_attention_2 on CUDA if installed, else sdpa) or a name.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        max_pixels: cap of pixels per image given to the image processor (None: the processor's own).
        micro_batch: most requests in one forward; larger inputs are split and pipelined.
    """

    def __init__(self, model: str, adapter: Optional[str] = None, dtype: str = "auto",
                 attn_implementation: str = "auto", device: str = "auto", max_pixels: Optional[int] = None,
                 micro_batch: int = 32, adapters: Optional[Dict[str, str]] = None) -> None:
        super().__init__(model, adapter)
        if adapter and adapters:
            raise BackendError("give `adapter` or `adapters`, not both")
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.micro_batch = int(micro_batch)
        if self.micro_batch < 1:
            raise BackendError(f"micro_batch must be >= 1, got {micro_batch}")
        proc_kwargs = {} if max_pixels is None else {"max_pixels": int(max_pixels)}
        try:
            self.processor = AutoProcessor.from_pretrained(model, **proc_kwargs)
            net = AutoModelForImageTextToText.from_pretrained(
                model, dtype=self.dtype, attn_implementation=resolve_attn(attn_implementation, self.device))
        except (OSError, ValueError) as e:
            raise BackendError(f"cannot load VLM from {model!r}: {one_line(e)}") from e
        named = {"default": adapter} if adapter else dict(adapters or {})
        if named:
            net = load_adapters(net, named)
        self._adapters, self._active = named, ("default" if adapter else None)
        self.model = net.to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.end_token_id = self._end_token_id()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlm-preprocess")
        self._torch = torch

    def _end_token_id(self) -> int:
        for tok in ("<|im_end|>", self.tokenizer.eos_token):
            if tok is not None:
                tid = self.tokenizer.convert_tokens_to_ids(tok)
                if tid is not None and tid != self.tokenizer.unk_token_id:
                    return int(tid)
        raise BackendError("tokenizer has no end-of-turn token (<|im_end|> or eos)")

    def select_adapter(self, name: Optional[str]) -> None:
        if name is not None and name not in self._adapters:
            raise BackendError(f"no adapter {name!r} loaded (have {sorted(self._adapters)})")
        self._active = name

    def _adapter_context(self):
        """Run a forward with the selected adapter: set it active, or switch all adapters off for None."""
        if not self._adapters:
            return contextlib.nullcontext()
        if self._active is None:
            return self.model.disable_adapter()
        if self.model.active_adapter != self._active:
            self.model.set_adapter(self._active)
        return contextlib.nullcontext()

    def _core(self):
        """The model holding ``rope_deltas`` (Qwen-VL mrope), under any peft wrapper; None otherwise."""
        net = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        inner = getattr(net, "model", None)
        return inner if inner is not None and hasattr(inner, "rope_deltas") else None

    # ---- preprocessing --------------------------------------------------------------------------
    def visual_tokens(self, image_hw: Sequence[tuple[int, int]]) -> List[int]:
        ip = self.processor.image_processor
        merge = getattr(ip, "merge_size", 1) or 1
        return [int(ip.get_number_of_image_patches(int(h), int(w), {})) // (merge * merge) for h, w in image_hw]

    def _preprocess(self, requests: Sequence[VLMRequest]):
        t0 = time.perf_counter()
        enc = encode_prompts(self.processor, requests)
        cands = [candidate_token_ids(self.tokenizer, r.candidates, self.end_token_id) if r.candidates else []
                 for r in requests]
        self.timings["preprocess_s"] += time.perf_counter() - t0
        return enc, cands

    def _pipelined(self, requests: Sequence[VLMRequest], run):
        """Split into micro-batches; preprocess the next one in a thread while ``run`` handles the current."""
        chunks = [requests[i:i + self.micro_batch] for i in range(0, len(requests), self.micro_batch)]
        results: list = []
        nxt = self._pool.submit(self._preprocess, chunks[0]) if chunks else None
        for i in range(len(chunks)):
            prepared = nxt.result()
            nxt = self._pool.submit(self._preprocess, chunks[i + 1]) if i + 1 < len(chunks) else None
            results.extend(run(*prepared))
            self.timings["batches"] += 1
        self.timings["requests"] += len(requests)
        return results

    # ---- scoring --------------------------------------------------------------------------------
    def score_candidates(self, requests: Sequence[VLMRequest]) -> List[np.ndarray]:
        if any(not r.candidates for r in requests):
            raise BackendError("every scoring request needs at least one candidate answer")
        return self._pipelined(requests, self._score_prepared)

    def _score_prepared(self, enc, cands: List[List[List[int]]]) -> List[np.ndarray]:
        torch = self._torch
        t0 = time.perf_counter()
        enc = enc.to(self.device)
        need_ext = any(len(s) > 1 for c in cands for s in c)
        with torch.inference_mode(), self._adapter_context():
            out = self.model(**enc, use_cache=need_ext, logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            scores = [[float(first[i, s[0]]) for s in c] for i, c in enumerate(cands)]
            if need_ext:
                self._extend(enc, out.past_key_values, cands, scores)
        self.timings["forward_s"] += time.perf_counter() - t0
        return [np.asarray(s, dtype=np.float64) for s in scores]

    def _extend(self, enc, cache, cands, scores) -> None:
        """Add the log-probs of candidate tokens 2.. with one forward over them on the prefill cache."""
        torch = self._torch
        rows = [(i, j, s) for i, c in enumerate(cands) for j, s in enumerate(c) if len(s) > 1]
        length = max(len(s) - 1 for _, _, s in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        ext_mask = torch.zeros((len(rows), length), dtype=enc["attention_mask"].dtype)
        for r, (_, _, s) in enumerate(rows):
            ids[r, : len(s) - 1] = torch.tensor(s[:-1])
            ext_mask[r, : len(s) - 1] = 1
        src = torch.tensor([i for i, _, _ in rows], device=self.device)
        cache.reorder_cache(src)
        prefill_len = enc["input_ids"].shape[1]
        mask = torch.cat([enc["attention_mask"][src], ext_mask.to(self.device)], dim=1)
        kwargs: dict[str, Any] = {}
        core = self._core()
        if core is not None and core.rope_deltas is not None:  # Qwen-VL multimodal rope: text positions continue
            # get_rope_index's deltas are relative to the count of real (unpadded) tokens
            n_real = enc["attention_mask"].sum(dim=1)[src].unsqueeze(1)
            pos = n_real + torch.arange(length, device=self.device)[None, :] + core.rope_deltas[src].to(self.device)
            kwargs["position_ids"] = pos.unsqueeze(0).expand(3, -1, -1)
        else:
            cum = mask.long().cumsum(-1) - 1
            kwargs["position_ids"] = cum[:, prefill_len:].clamp(min=0)
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask, past_key_values=cache,
                         use_cache=False, **kwargs)
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        for r, (i, j, s) in enumerate(rows):
            scores[i][j] += float(sum(logp[r, k - 1, s[k]] for k in range(1, len(s))))

    # ---- generation -----------------------------------------------------------------------------
    def generate(self, requests: Sequence[VLMRequest], max_new_tokens: int,
                 allowed_chars: Optional[str] = None) -> List[str]:
        if max_new_tokens < 1:
            raise BackendError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        allowed = None
        if allowed_chars is not None:
            allowed = self.allowed_token_ids(allowed_chars)
            if not allowed:
                raise BackendError(f"no token of this tokenizer is made of the allowed characters {allowed_chars!r}")
        return self._pipelined(requests, lambda enc, _c: self._generate_prepared(enc, max_new_tokens, allowed))

    def _generate_prepared(self, enc, max_new_tokens: int, allowed: Optional[List[int]] = None) -> List[str]:
        torch = self._torch
        t0 = time.perf_counter()
        enc = enc.to(self.device)
        extra: Dict[str, Any] = {}
        if allowed is not None:  # constrained decoding: allowed tokens, then also end-of-turn after the first
            from transformers import LogitsProcessorList

            extra = dict(logits_processor=LogitsProcessorList([AllowedTokens(allowed, self.end_token_id)]),
                         min_new_tokens=1)
        with torch.inference_mode(), self._adapter_context():
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.end_token_id,
                                      **extra)
        new = out[:, enc["input_ids"].shape[1]:]
        self.timings["generate_s"] += time.perf_counter() - t0
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.model = None


class AllowedTokens:
    """A generation logits processor that leaves only ``allowed`` tokens (and ``end_id``) possible."""

    def __init__(self, allowed: Sequence[int], end_id: int) -> None:
        self.ids = sorted(set(allowed) | {int(end_id)})
        self._mask = None

    def __call__(self, input_ids, scores):
        if self._mask is None or self._mask.shape[-1] != scores.shape[-1] or self._mask.device != scores.device:
            import torch

            self._mask = torch.full((scores.shape[-1],), float("-inf"), device=scores.device)
            self._mask[self.ids] = 0.0
        return scores + self._mask.to(scores.dtype)


def one_line(e: BaseException, limit: int = 400) -> str:
    """An exception's message on one line (transformers' messages span several), cut to ``limit`` characters."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_adapters(net, adapters: Dict[str, str]):
    """``net`` wrapped in a peft model holding every adapter of ``{name: dir}`` (loaded before the model moves
    to its device). Nested ``modules_to_save`` entries (a module listed with one of its ancestors, as in the
    released LRM progress adapter, whose list names the vision tower and its merger) are dropped: the ancestor's
    copy already holds their weights, and peft cannot wrap a module inside a wrapped one."""
    from peft import PeftConfig, PeftModel

    model = None
    for name, path in adapters.items():
        try:
            config = PeftConfig.from_pretrained(path)
            config.inference_mode = True
            if getattr(config, "modules_to_save", None):
                config.modules_to_save = _outermost_modules(net, list(config.modules_to_save))
            if model is None:
                model = PeftModel(net, config, adapter_name=name)
            else:
                model.add_adapter(name, config)
            result = model.load_adapter(path, adapter_name=name, torch_device="cpu")
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
            raise BackendError(f"cannot load LoRA adapter from {path!r}: {one_line(e)}") from e
        if result.unexpected_keys:  # weights that found no module: the adapter is for another model
            raise BackendError(f"LoRA adapter {path!r} does not fit model: {len(result.unexpected_keys)} of its "
                               f"weights match no module (e.g. {result.unexpected_keys[0]})")
    return model


def _outermost_modules(net, entries):
    """``modules_to_save`` without the entries whose every matching module lies inside another entry's match."""
    if not entries or len(entries) < 2:
        return entries
    names = [n for n, _ in net.named_modules()]

    def matches(e: str) -> List[str]:
        return [n for n in names if n == e or n.endswith("." + e)]

    keep = []
    for e in entries:
        others = [m for o in entries if o != e for m in matches(o)]
        mine = matches(e)
        if mine and all(any(n.startswith(m + ".") for m in others) for n in mine):
            continue
        keep.append(e)
    return keep
