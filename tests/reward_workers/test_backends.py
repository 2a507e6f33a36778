"""VLM backends on the tiny local Qwen2.5-VL and Qwen3-VL: prompt-logit scoring is exact (multi-token candidates
match a plain full-sequence forward), batching/padding does not change scores, generation is bounded and
can be constrained to a character set after a forced answer prefix, named adapters share one base model.

Plumbing tests: the tiny model has random weights, nothing here checks reward quality.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from vlmrl.reward_workers.backends.base import BackendError, VLMRequest, candidate_token_ids, files_version

torch.set_num_threads(1)


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def backend(request):
    from vlmrl.reward_workers.backends.hf import HFBackend

    model_dir = request.getfixturevalue("tiny_vlm_dir" if request.param == "qwen2_5_vl" else "tiny_qwen3_vl_dir")
    b = HFBackend(model_dir, micro_batch=3)
    yield b
    b.close()


def req(seed: int, n_images: int, text: str, candidates, h: int = 64) -> VLMRequest:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (h, 64, 3), dtype=np.uint8) for _ in range(n_images)]
    return VLMRequest([{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}],
                      images, tuple(candidates))


SCALE = [str(i) for i in range(11)]


def full_forward_logprob(backend, r: VLMRequest, cand_ids: list[int]) -> float:
    """Reference: log P(candidate | prompt) from one plain forward over prompt + candidate tokens."""
    enc, _ = backend._preprocess([r])
    n = enc["input_ids"].shape[1]
    extra = torch.tensor([cand_ids])
    inputs = dict(enc)
    inputs["input_ids"] = torch.cat([enc["input_ids"], extra], 1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    inputs["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(extra)], 1)
    with torch.no_grad():
        lp = torch.log_softmax(backend.model(**inputs).logits[0].float(), -1)
    return sum(float(lp[n - 1 + k, t]) for k, t in enumerate(cand_ids))


def test_candidate_tokens_get_terminator_only_when_not_prefix_free(backend):
    tok, end = backend.tokenizer, backend.end_token_id
    assert candidate_token_ids(tok, ["1", "2", "0"], end) == [tok.encode(c, add_special_tokens=False) for c in "120"]
    seqs = candidate_token_ids(tok, SCALE, end)
    assert all(s[-1] == end for s in seqs) and len(seqs[10]) == 3  # "1","0",<|im_end|>
    with pytest.raises(BackendError, match="empty candidate"):
        candidate_token_ids(tok, ["1", ""], end)


def test_multi_token_scores_equal_full_forward_reference(backend):
    r = req(0, 1, "How far along? Answer 0 to 10.", SCALE)
    got = backend.score_candidates([r])[0]
    seqs = candidate_token_ids(backend.tokenizer, SCALE, backend.end_token_id)
    ref = [full_forward_logprob(backend, r, s) for s in seqs]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert np.all(got < 0)


def test_single_token_scores_are_next_token_logprobs(backend):
    r = req(1, 2, "Which image? Answer 1, 2 or 0.", ["1", "2", "0"])
    got = backend.score_candidates([r])[0]
    ref = [full_forward_logprob(backend, r, backend.tokenizer.encode(c, add_special_tokens=False)) for c in "120"]
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_batched_padded_mixed_requests_equal_one_by_one(backend):
    reqs = [req(2, 1, "How far along? Answer 0 to 10.", SCALE),
            req(3, 2, "x", ["A", "B"]),
            req(4, 1, "Is the task complete? Answer yes or no.", ["yes", "no"], h=100),
            req(5, 2, "Which image is closer to achieving the task?", ["1", "2", "0"]),
            req(6, 1, "y", SCALE, h=40)]
    before = dict(backend.timings)
    batched = backend.score_candidates(reqs)  # micro_batch=3: two pipelined forwards
    assert backend.timings["batches"] - before["batches"] == 2
    assert backend.timings["preprocess_s"] > before["preprocess_s"] and backend.timings["forward_s"] > before["forward_s"]
    single = [backend.score_candidates([r])[0] for r in reqs]
    for b, s, r in zip(batched, single, reqs):
        assert b.shape == (len(r.candidates),)
        np.testing.assert_allclose(b, s, atol=1e-4)
    np.testing.assert_array_equal(backend.score_candidates(reqs)[0], batched[0])  # deterministic


def test_generate_is_greedy_and_bounded(backend):
    reqs = [req(7, 1, "Describe the visual change.", ()), req(8, 2, "Describe.", ())]
    a = backend.generate(reqs, max_new_tokens=5)
    assert a == backend.generate(reqs, max_new_tokens=5) and all(isinstance(t, str) for t in a)
    for text in a:
        assert len(backend.tokenizer.encode(text, add_special_tokens=False)) <= 5 + 2
    with pytest.raises(BackendError, match="max_new_tokens"):
        backend.generate(reqs, max_new_tokens=0)


def test_constrained_generation_after_forced_prefix(backend):
    r = req(10, 1, "How far along, in percent?", ())
    r.answer_prefix = "Progress: "
    digits = backend.generate([r, r], max_new_tokens=3, allowed_chars="0123456789")
    assert digits[0] == digits[1] and 1 <= len(digits[0]) <= 3 and digits[0].isdigit()
    allowed = backend.allowed_token_ids("0123456789")
    assert sorted(backend.tokenizer.decode([i]) for i in allowed) == list("0123456789")  # digits are pre-split
    with pytest.raises(BackendError, match="no token of this tokenizer"):
        backend.generate([r], 3, allowed_chars="\u2603")
    # the prefix is scored as part of the prompt: candidates after it differ from candidates without it
    plain = req(10, 1, "How far along, in percent?", ["1", "2"])
    forced = req(10, 1, "How far along, in percent?", ["1", "2"])
    forced.answer_prefix = "Progress: "
    a, b = backend.score_candidates([plain, forced])
    assert not np.allclose(a, b)
    ref = [full_forward_logprob(backend, forced, backend.tokenizer.encode(c, add_special_tokens=False)) for c in "12"]
    np.testing.assert_allclose(b, ref, atol=1e-4)


def test_named_adapters_share_one_base_and_match_single_adapter_loads(backend, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from vlmrl.reward_workers.backends.base import AdapterView
    from vlmrl.reward_workers.backends.hf import HFBackend

    paths = []
    for seed, extra in ((1, {"modules_to_save": ["visual", "merger"]}), (2, {})):  # nested modules_to_save entry
        torch.manual_seed(seed)
        net = get_peft_model(AutoModelForImageTextToText.from_pretrained(backend._model_path),
                             LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                                        **extra))
        paths.append(tmp_path / f"a{seed}")
        net.save_pretrained(paths[-1])
    shared = HFBackend(backend._model_path, adapters={"p": str(paths[0]), "c": str(paths[1])})
    views = [AdapterView(shared), AdapterView(shared, "p", str(paths[0])), AdapterView(shared, "c", str(paths[1]))]
    r = [req(11, 1, "Is the task complete? Answer yes or no.", ["yes", "no", "10"])]
    got = [v.score_candidates(r)[0] for v in views]
    alone = [backend.score_candidates(r)[0]] + [HFBackend(backend._model_path, adapter=str(p)).score_candidates(r)[0]
                                                for p in paths]
    np.testing.assert_allclose(got, alone, atol=1e-5)
    assert not np.allclose(got[0], got[1]) and not np.allclose(got[1], got[2])
    assert len({v.model_version for v in views}) == 3 and views[1].model_id.endswith(str(paths[0]))
    with pytest.raises(BackendError, match="no adapter 'x' loaded"):
        shared.select_adapter("x")


def test_bad_requests_fail_clearly(backend):
    bad = req(9, 1, "x", ["1"])
    bad.images = []
    with pytest.raises(BackendError, match="1 image slots .* but 0 images"):
        backend.score_candidates([bad])
    with pytest.raises(BackendError, match="at least one candidate"):
        backend.score_candidates([req(9, 1, "x", ())])


def test_visual_tokens_follow_processor_patching(backend):
    # Qwen2.5-VL: 64x64 -> 56x56 -> 4x4 patches of 14 -> merge 2x2 -> 4 tokens; Qwen3-VL: 4x4 patches of 16;
    # large images are capped at 64 tokens by both tiny processors
    assert backend.visual_tokens([(64, 64), (2000, 2000)]) == [4, 64]


def test_files_version_tracks_content(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"a")
    v1 = files_version(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"b")
    assert files_version(tmp_path) != v1 and files_version("org/some-hub-id") == files_version("org/some-hub-id")


def test_unknown_model_path_is_a_clear_error(tmp_path):
    from vlmrl.reward_workers.backends.hf import HFBackend

    with pytest.raises(BackendError, match="cannot load VLM"):
        HFBackend(str(tmp_path / "nope"))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="vllm is not installed (optional `vllm` extra, CUDA machines only)")
@pytest.mark.gpu
def test_vllm_backend_matches_hf_on_tiny_model(backend):
    from vlmrl.reward_workers.backends.vllm_backend import VLLMBackend

    v = VLLMBackend(backend._model_path, dtype="float32", gpu_memory_utilization=0.2)
    reqs = [req(2, 1, "How far along? Answer 0 to 10.", SCALE), req(3, 2, "x", ["A", "B"])]
    for a, b in zip(v.score_candidates(reqs), backend.score_candidates(reqs)):
        np.testing.assert_allclose(a, b, atol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.gpu
def test_hf_backend_on_cuda_bf16(backend):
    from vlmrl.reward_workers.backends.hf import HFBackend

    g = HFBackend(backend._model_path, device="cuda")
    assert g.dtype == torch.bfloat16
    r = [req(2, 1, "How far along? Answer 0 to 10.", SCALE)]
    np.testing.assert_allclose(g.score_candidates(r)[0], backend.score_candidates(r)[0], atol=0.1)
