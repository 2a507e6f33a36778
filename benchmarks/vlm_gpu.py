"""GPU throughput of VLM reward scoring at Qwen2.5-VL-3B or Qwen3-VL-8B size, and achieved FLOP utilisation.

    .venv/bin/python -m benchmarks.vlm_gpu [--arch qwen25_vl_3b|qwen3_vl_8b] [--batches 1 8 32 64] [--reps 5]
                                            [--attn auto|sdpa|flash_attention_2] [--decode-tokens N]
                                            [--no-vllm] [--peak-tflops N] [--workdir DIR] [--memory-only]

``--arch qwen3_vl_8b`` is the shape of the released LRM checkpoints (three Qwen3-VL-8B-Instruct fine-tunes,
configs/lrm_released.yaml): text hidden 4096, 36 layers, 32 heads, 8 KV heads, head dim 128, intermediate
12288, vocab 151936, untied lm_head, interleaved mrope [24, 20, 20]; vision depth 27, hidden 1152, intermediate
4304, 16 heads, patch 16, merge 2, deepstack layers [8, 16, 24]. ``--decode-tokens N`` also times N greedy
tokens per request (the released templates GENERATE their answers: up to 128 / 128 / 512 tokens per head).
``--memory-only`` prints the parameter count and bf16 weight memory of the chosen shape (built on the meta
device, no GPU needed) and exits.

Needs a CUDA GPU (exits with a message otherwise). No download: the model is a RANDOMLY INITIALISED
Qwen2.5-VL built from a config with the 3B sizes (text: hidden 2048, 36 layers, 16 heads, 2 KV heads,
intermediate 11008, vocab 151936; vision: depth 32, hidden 1280, intermediate 3420, 16 heads,
patch 14, merge 2), with the tiny tokenizer/processor of reward_workers/backends/tiny_models.py
(token ids < 1000 index the full-size vocabulary). Weights are random, so the answers mean
nothing, but every matmul has the real shapes: the timings are those of the real model.

It is saved (bf16) to ``--workdir`` and loaded with ``from_pretrained`` by the hf backend, exactly as
the reward workers load models; each request is one 224x224 frame with the lrm completion question
(single-token yes/no candidates: one prefill forward, last-position logits only). Reported per batch
size: frames/s end to end, the backend's preprocessing vs forward time, and FLOP utilisation =
counted FLOPs (reward_workers/backends/flops.py: 2*params*tokens for the LM + 2*params*patches for
the vision tower) / forward time / the GPU's bf16 dense peak (H100 SXM and H200: 989 TFLOP/s).
Goal: >= 40% at the largest batch. With vLLM importable, the vllm backend runs the same requests.

``--tiny-cpu`` runs the same code on the tiny model on the CPU (no utilisation): a smoke test of
this script for machines without a GPU.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.record import add_record_args, record_from_args, val

TASK = "push the red cube onto the green goal"
FRAME = 224
GOAL_MFU = 0.40


def qwen25_vl_3b_config(tokenizer):
    """A Qwen2_5_VLConfig with the published Qwen2.5-VL-3B-Instruct sizes and the tiny tokenizer's special ids."""
    from transformers import Qwen2_5_VLConfig

    from vlmrl.reward_workers.backends.tiny_models import QWEN_SPECIAL_TOKENS

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config=dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                         num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
                         max_window_layers=70, rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31], in_channels=3, hidden_act="silu"),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def qwen3_vl_8b_config(tokenizer):
    """A Qwen3VLConfig with the published Qwen3-VL-8B-Instruct sizes and the tiny tokenizer's special ids."""
    from transformers import Qwen3VLConfig

    from vlmrl.reward_workers.backends.tiny_models import QWEN_SPECIAL_TOKENS

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    return Qwen3VLConfig(
        text_config=dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=262144,
                         rms_norm_eps=1e-6, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                          "mrope_section": [24, 20, 20], "mrope_interleaved": True},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
                           patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                           deepstack_visual_indexes=[8, 16, 24], hidden_act="gelu_pytorch_tanh", in_channels=3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def _qwen25_parts():
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    from vlmrl.reward_workers.backends.tiny_models import QWEN_VL_CHAT_TEMPLATE

    return (qwen25_vl_3b_config, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLVideoProcessor,
            QWEN_VL_CHAT_TEMPLATE, dict(min_pixels=56 * 56, max_pixels=FRAME * FRAME))


def _qwen3_parts():
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor

    from vlmrl.reward_workers.backends.tiny_models import QWEN3_VL_CHAT_TEMPLATE

    return (qwen3_vl_8b_config, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor,
            QWEN3_VL_CHAT_TEMPLATE,
            dict(size={"shortest_edge": 64 * 64, "longest_edge": FRAME * FRAME}, patch_size=16, merge_size=2))


ARCHS = {"qwen25_vl_3b": ("Qwen2.5-VL-3B", _qwen25_parts), "qwen3_vl_8b": ("Qwen3-VL-8B", _qwen3_parts)}


def param_memory(arch: str) -> tuple[int, int]:
    """(parameters, bf16 weight bytes) of the ``arch`` shape, counted on the meta device (nothing allocated)."""
    import torch

    from vlmrl.reward_workers.backends.tiny_models import _fast_tokenizer

    config_fn, model_cls, *_ = ARCHS[arch][1]()
    with torch.device("meta"):
        model = model_cls._from_config(config_fn(_fast_tokenizer()), dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    return n, 2 * n


def build_checkpoint(arch: str, out: Path, device: str) -> Path:
    """Write a random bf16 checkpoint of the ``arch`` shape + the tiny processor (224x224 frames allowed) to ``out``."""
    import torch
    from transformers import Qwen2VLImageProcessor

    from vlmrl.reward_workers.backends.tiny_models import _fast_tokenizer

    label, parts = ARCHS[arch]
    config_fn, model_cls, processor_cls, video_cls, chat_template, pixels = parts()
    tokenizer = _fast_tokenizer()
    config = config_fn(tokenizer)
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device(device):
        model = model_cls._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    processor_cls(image_processor=Qwen2VLImageProcessor(**pixels), video_processor=video_cls(**pixels),
                  tokenizer=tokenizer, chat_template=chat_template).save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"built random {label}-size model: {n / 1e9:.3f} B params, saved to {out} in {time.time() - t0:.0f}s",
          flush=True)
    del model
    gc.collect()
    return out


def requests(batch: int, rng: np.random.Generator):
    """``batch`` completion-question requests, one random 224x224 frame each (single-token candidates)."""
    from vlmrl.reward_workers.backends.base import VLMRequest
    from vlmrl.reward_workers.models import prompts as P

    return [VLMRequest(P.chat(P.user_turn(1, P.LRM_COMPLETION.format(task=TASK))),
                       [rng.integers(0, 256, (FRAME, FRAME, 3), dtype=np.uint8)], P.LRM_COMPLETION_ANSWERS)
            for _ in range(batch)]


def count_batch(processor, reqs) -> tuple[int, int]:
    """(real prompt tokens, vision patches) of a batch, from the same encoding the hf backend uses."""
    from vlmrl.reward_workers.backends.hf import encode_prompts

    enc = encode_prompts(processor, reqs)
    return int(enc["attention_mask"].sum()), int(enc["pixel_values"].shape[0])


def bench_backend(backend, reqs, reps: int, sync) -> dict:
    backend.score_candidates(reqs)  # warm-up (kernels, allocator)
    backend.score_candidates(reqs)
    before = dict(backend.timings)
    walls = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        backend.score_candidates(reqs)
        sync()
        walls.append(time.perf_counter() - t0)
    return {"wall_s": statistics.median(walls),
            "preprocess_s": (backend.timings["preprocess_s"] - before["preprocess_s"]) / reps,
            "forward_s": (backend.timings["forward_s"] - before["forward_s"]) / reps}


def bench_decode(backend, reqs, tokens: int, sync) -> float:
    """Seconds to generate exactly ``tokens`` greedy tokens for every request of ``reqs`` (one batch)."""
    import torch

    enc = backend._preprocess(reqs)[0].to(backend.device)
    kw = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=backend.tokenizer.pad_token_id)
    with torch.inference_mode():
        backend.model.generate(**enc, **{**kw, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        sync()
        t0 = time.perf_counter()
        backend.model.generate(**enc, **kw)
        sync()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="qwen25_vl_3b", help="model shape (default: %(default)s)")
    ap.add_argument("--decode-tokens", type=int, default=0, help="also time this many generated tokens per request")
    ap.add_argument("--memory-only", action="store_true", help="print params and bf16 weight memory, then exit")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--attn", default="auto", help="auto (flash_attention_2 if installed, else sdpa), sdpa, flash_attention_2")
    ap.add_argument("--no-vllm", action="store_true", help="skip the vLLM comparison even if vllm is importable")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's bf16 dense peak")
    ap.add_argument("--workdir", default=None, help="where the random checkpoint is written (default: a temp dir)")
    ap.add_argument("--tiny-cpu", action="store_true", help="smoke-test this script on the tiny model on the CPU")
    add_record_args(ap)
    args = ap.parse_args(argv)

    import torch

    from vlmrl.reward_workers.backends.factory import build_backend
    from vlmrl.reward_workers.backends.flops import bf16_peak_tflops, param_counts, prefill_flops

    if args.memory_only:
        n, nbytes = param_memory(args.arch)
        print(f"{ARCHS[args.arch][0]}-shaped model: {n:,} params = {n / 1e9:.3f} B; bf16 weights {nbytes / 2 ** 30:.2f} "
              f"GiB (computed from the config on the meta device, not measured)")
        return 0
    if not args.tiny_cpu and not torch.cuda.is_available():
        print(f"benchmarks/vlm_gpu.py --arch {args.arch} needs CUDA: torch.cuda.is_available() is False, so nothing "
              "was measured. Run it on a GPU machine; --memory-only prints the computed weight memory without one, "
              "--tiny-cpu smoke-tests this script on the tiny model.", file=sys.stderr)
        return 2
    device = "cpu" if args.tiny_cpu else "cuda"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    peak = None
    if device == "cuda":
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops or bf16_peak_tflops(name)
        print(f"GPU: {name}; bf16 dense peak {peak or 'unknown (pass --peak-tflops)'} TFLOP/s; torch {torch.__version__}")

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        if args.tiny_cpu:
            from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen3_vl, build_tiny_qwen_vl

            builder = build_tiny_qwen3_vl if args.arch == "qwen3_vl_8b" else build_tiny_qwen_vl
            model_dir = str(builder(Path(tmp) / "tiny"))
            dtype = "float32"
        else:
            model_dir = str(build_checkpoint(args.arch, Path(tmp) / f"{args.arch}-random", device))
            dtype = "bfloat16"
        hf = build_backend("hf", model=model_dir, dtype=dtype, device=device, attn_implementation=args.attn,
                           micro_batch=max(args.batches))
        counts = param_counts(hf.model)
        print(f"params applied per token: LM {counts.lm_decoder / 1e9:.3f} B (+ lm_head {counts.lm_head / 1e6:.0f} M once "
              f"per request); vision {counts.vision_per_patch / 1e6:.0f} M per patch (+ merger "
              f"{counts.vision_merger / 1e6:.0f} M per merged token); attention: "
              f"{hf.model.config._attn_implementation if hasattr(hf.model, 'config') else args.attn}")
        rng = np.random.default_rng(0)
        batches = {b: requests(b, rng) for b in args.batches}
        print(f"{'backend':<8}{'batch':>6}{'frames/s':>10}{'ms/batch':>10}{'preproc ms':>12}{'forward ms':>12}"
              f"{'tok/req':>9}{'patch/req':>10}{'TFLOP/batch':>12}{'TFLOP/s':>9}{'MFU':>7}")
        results, recorded = {}, {}
        for b, reqs in batches.items():
            tokens, patches = count_batch(hf.processor, reqs)
            flops = prefill_flops(counts, tokens, patches, b)
            r = bench_backend(hf, reqs, args.reps, sync)
            tflops = flops.total / r["forward_s"] / 1e12
            mfu = tflops / peak if peak else None
            results[b] = mfu
            recorded[f"hf_b{b}_frames_per_s"] = val(b / r["wall_s"], unit="frames/s")
            if mfu is not None:
                recorded[f"hf_b{b}_mfu"] = val(mfu, goal=f">= {GOAL_MFU} at the largest batch", unit="fraction")
            print(f"{'hf':<8}{b:>6}{b / r['wall_s']:>10.1f}{1e3 * r['wall_s']:>10.1f}{1e3 * r['preprocess_s']:>12.1f}"
                  f"{1e3 * r['forward_s']:>12.1f}{tokens / b:>9.0f}{patches / b:>10.0f}{flops.total / 1e12:>12.3f}"
                  f"{tflops:>9.1f}{(f'{100 * mfu:.1f}%' if mfu is not None else 'n/a'):>7}", flush=True)
        if args.decode_tokens > 0:
            for b, reqs in batches.items():
                secs = bench_decode(hf, reqs, args.decode_tokens, sync)
                print(f"decode: batch {b}, {args.decode_tokens} tokens/request: {secs:.2f} s, "
                      f"{b * args.decode_tokens / secs:.0f} tokens/s, {b / secs:.2f} requests/s", flush=True)
                recorded[f"hf_decode_b{b}_tokens_per_s"] = val(b * args.decode_tokens / secs, unit="tokens/s",
                                                               note=f"{args.decode_tokens} tokens per request")
            if device == "cuda":
                print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2 ** 30:.1f} GiB", flush=True)
        if device == "cuda" and recorded:  # GPU numbers only: the --tiny-cpu smoke test backs nothing
            record_from_args(args, f"vlm_gpu_{args.arch}", recorded, argv=argv,
                             notes=f"random-weight {ARCHS[args.arch][0]}-shaped model, {torch.cuda.get_device_name()}")
        hf.close()
        del hf
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            best = max((m for m in results.values() if m is not None), default=None)
            if best is not None:
                verdict = "meets" if best >= GOAL_MFU else "is BELOW"
                print(f"best FLOP utilisation (forward time) {100 * best:.1f}% {verdict} the {100 * GOAL_MFU:.0f}% goal")

        try:
            import vllm  # noqa: F401
            have_vllm = True
        except ImportError:
            have_vllm = False
        if args.no_vllm or not have_vllm:
            print("vLLM: skipped (" + ("--no-vllm" if args.no_vllm else "vllm is not importable") + ")")
            return 0
        v = build_backend("vllm", model=model_dir, dtype=dtype, gpu_memory_utilization=0.6)
        for b, reqs in batches.items():
            r = bench_backend(v, reqs, args.reps, sync)
            print(f"{'vllm':<8}{b:>6}{b / r['wall_s']:>10.1f}{1e3 * r['wall_s']:>10.1f}{1e3 * r['preprocess_s']:>12.1f}"
                  f"{1e3 * r['forward_s']:>12.1f}   (vLLM engine time incl. its own preprocessing)", flush=True)
        v.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
