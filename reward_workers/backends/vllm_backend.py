"""vLLM backend: the :class:`VLMBackend` interface on vLLM's offline ``LLM`` engine (CUDA machines).

Prefill-only scoring: a request whose candidates are single tokens is one 1-token generation with
the full next-token distribution (``logprobs=-1``, the engine is built with ``max_logprobs=-1``);
a request with multi-token candidates becomes one prompt per candidate (prompt tokens + candidate
tokens) scored with ``prompt_logprobs``, and vLLM's prefix cache shares the prompt/image prefill
between them. Prompts are built by the model's own HF processor chat template, as in ``hf.py``;
vLLM expands the image placeholders itself.

vllm is imported lazily (``pip install 'vlmrl[vllm]'``); it is NOT installed on CPU dev machines, so
this module is only exercised by GPU tests (they skip elsewhere).
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from vlmrl.reward_workers.backends.base import (
    BackendError,
    VLMBackend,
    VLMRequest,
    candidate_token_ids,
    to_pil,
)


class VLLMBackend(VLMBackend):
    """A VLM served by vLLM's offline engine (optional LoRA adapter via ``LoRARequest``, or several named ones
    selected per call with :meth:`select_adapter`; vLLM's LoRA does not load ``modules_to_save`` weights)."""

    def __init__(self, model: str, adapter: Optional[str] = None, dtype: str = "auto", max_pixels: Optional[int] = None,
                 gpu_memory_utilization: float = 0.5, max_model_len: int = 8192, max_images_per_prompt: int = 16,
                 adapters: Optional[Dict[str, str]] = None) -> None:
        super().__init__(model, adapter)
        if adapter and adapters:
            raise BackendError("give `adapter` or `adapters`, not both")
        try:
            from vllm import LLM
            from vllm.lora.request import LoRARequest
        except ImportError as e:
            raise BackendError("the vllm backend needs vLLM: pip install 'vlmrl[vllm]' (CUDA only)") from e
        from transformers import AutoProcessor

        proc_kwargs = {} if max_pixels is None else {"max_pixels": int(max_pixels)}
        self.processor = AutoProcessor.from_pretrained(model, **proc_kwargs)
        self.tokenizer = self.processor.tokenizer
        self.end_token_id = int(self.tokenizer.convert_tokens_to_ids("<|im_end|>") or self.tokenizer.eos_token_id)
        self.llm = LLM(
            model=model,
            dtype="bfloat16" if dtype == "auto" else dtype,
            max_logprobs=-1,
            enable_prefix_caching=True,
            enable_lora=bool(adapter or adapters),
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            limit_mm_per_prompt={"image": max_images_per_prompt},
            mm_processor_kwargs=proc_kwargs or None,
        )
        named = {"default": adapter} if adapter else dict(adapters or {})
        self._loras = {name: LoRARequest(name, i + 1, path) for i, (name, path) in enumerate(named.items())}
        self.lora = self._loras.get("default")

    def select_adapter(self, name: Optional[str]) -> None:
        if name is not None and name not in self._loras:
            raise BackendError(f"no adapter {name!r} loaded (have {sorted(self._loras)})")
        self.lora = self._loras[name] if name is not None else None

    def visual_tokens(self, image_hw: Sequence[tuple[int, int]]) -> List[int]:
        ip = self.processor.image_processor
        merge = getattr(ip, "merge_size", 1) or 1
        return [int(ip.get_number_of_image_patches(int(h), int(w), {})) // (merge * merge) for h, w in image_hw]

    def _prompt(self, r: VLMRequest, extra_ids: Sequence[int] = ()) -> dict:
        text = self.processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
        ids = self.tokenizer.encode(text + r.answer_prefix, add_special_tokens=False) + list(extra_ids)
        prompt = {"prompt_token_ids": ids}
        if r.images:
            prompt["multi_modal_data"] = {"image": [to_pil(im) for im in r.images]}
        return prompt

    def score_candidates(self, requests: Sequence[VLMRequest]) -> List[np.ndarray]:
        from vllm import SamplingParams

        t0 = time.perf_counter()
        cands = [candidate_token_ids(self.tokenizer, r.candidates, self.end_token_id) for r in requests]
        first_prompts, multi = [], []  # single-token requests; (request, candidate) pairs scored by prompt_logprobs
        for i, (r, c) in enumerate(zip(requests, cands)):
            if all(len(s) == 1 for s in c):
                first_prompts.append((i, self._prompt(r)))
            else:
                multi.extend((i, j, self._prompt(r, s)) for j, s in enumerate(c))
        self.timings["preprocess_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        scores: List[List[float]] = [[0.0] * len(c) for c in cands]
        if first_prompts:
            outs = self.llm.generate([p for _, p in first_prompts], SamplingParams(max_tokens=1, temperature=0.0, logprobs=-1),
                                     lora_request=self.lora, use_tqdm=False)
            for (i, _), out in zip(first_prompts, outs):
                dist = out.outputs[0].logprobs[0]
                scores[i] = [float(dist[s[0]].logprob) for s in cands[i]]
        if multi:
            outs = self.llm.generate([p for _, _, p in multi], SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0),
                                     lora_request=self.lora, use_tqdm=False)
            for (i, j, _), out in zip(multi, outs):
                s = cands[i][j]
                tail = out.prompt_logprobs[-len(s):]
                scores[i][j] = float(sum(pos[t].logprob for pos, t in zip(tail, s)))
        self.timings["forward_s"] += time.perf_counter() - t0
        self.timings["requests"] += len(requests)
        self.timings["batches"] += 1
        return [np.asarray(s, dtype=np.float64) for s in scores]

    def generate(self, requests: Sequence[VLMRequest], max_new_tokens: int,
                 allowed_chars: Optional[str] = None) -> List[str]:
        from vllm import SamplingParams

        if max_new_tokens < 1:
            raise BackendError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        extra = {}
        if allowed_chars is not None:  # constrained decoding, as in the hf backend
            allowed = self.allowed_token_ids(allowed_chars)
            if not allowed:
                raise BackendError(f"no token of this tokenizer is made of the allowed characters {allowed_chars!r}")
            extra = dict(allowed_token_ids=sorted(set(allowed) | {self.end_token_id}), min_tokens=1)
        t0 = time.perf_counter()
        outs = self.llm.generate([self._prompt(r) for r in requests],
                                 SamplingParams(max_tokens=max_new_tokens, temperature=0.0, **extra),
                                 lora_request=self.lora, use_tqdm=False)
        self.timings["generate_s"] += time.perf_counter() - t0
        return [o.outputs[0].text.strip() for o in outs]

    def close(self) -> None:
        self.llm = None
