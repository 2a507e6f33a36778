"""The VLM scorers (lrm, preference, window, clip) end to end on tiny local random models:
shapes, promised ranges, batched == one-by-one, determinism, weighted sums, window checks and the
visual-token overflow guard, LoRA adapters, and one VLM scorer behind the real gRPC server.

Plumbing tests: the tiny models have random weights, nothing here checks reward quality.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmrl.reward_workers.scorers import build_scorer
from vlmrl.reward_workers.scorers.base import ScorerError

torch.set_num_threads(1)
TASK = "pick up the red cube"


def frames(seed: int, k: int, h: int = 64, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (k, h, w, 3), dtype=np.uint8)


def rewards(results):
    return np.array([[r.reward, *r.components.values()] for r in results])


def assert_batched_equals_single(scorer, items, tasks=None):
    tasks = tasks or [TASK] * len(items)
    batched = scorer.score_batch(tasks, items)
    single = [scorer.score_batch([t], [it])[0] for t, it in zip(tasks, items)]
    np.testing.assert_allclose(rewards(batched), rewards(single), atol=1e-4)
    assert [r.label for r in batched] == [r.label for r in single]
    np.testing.assert_array_equal(rewards(scorer.score_batch(tasks, items)), rewards(batched))  # deterministic
    return batched


@pytest.fixture(scope="module")
def lrm(tiny_vlm_dir):
    s = build_scorer("lrm", {"model": tiny_vlm_dir, "weights": {"progress": 0.5, "completion": 0.3, "contrastive": 0.2}})
    yield s
    s.close()


@pytest.fixture(scope="module")
def pairs():
    # different sizes in one batch exercise left padding and per-image patch grids
    return [frames(0, 2), frames(1, 2, 80, 64), frames(2, 2, 48, 96)]


def test_lrm_components_in_range_and_weighted_sum(lrm, pairs):
    res = assert_batched_equals_single(lrm, pairs, [TASK, "open the drawer", TASK])
    assert len(res) == 3
    for r in res:
        assert set(r.components) == {"progress", "completion", "contrastive"}
        assert all(0.0 <= v <= 1.0 for v in r.components.values())
        c = r.components
        assert r.reward == pytest.approx(0.5 * c["progress"] + 0.3 * c["completion"] + 0.2 * c["contrastive"])
    assert lrm.item_kind.value == "pair" and lrm.frames_per_item == 2
    assert lrm.model_version.endswith("-default.p1") and lrm.model_id


def test_lrm_rejects_bad_items_and_params(lrm, tiny_vlm_dir):
    with pytest.raises(ScorerError, match="item 0 has 3 frames, this scorer takes exactly 2"):
        lrm.score_batch([TASK], [frames(0, 3)])
    with pytest.raises(ScorerError, match="bad params"):
        build_scorer("lrm", {"model": tiny_vlm_dir, "weights": {"speed": 1.0}})
    with pytest.raises(ScorerError, match="head .progress. has no model; fix: set scorer.params.model"):
        build_scorer("lrm", {})
    with pytest.raises(ScorerError, match="unknown backend"):
        build_scorer("lrm", {"model": tiny_vlm_dir, "backend": "onnx"})


def test_preference_probabilities_label_and_reward(tiny_vlm_dir, pairs):
    s = build_scorer("preference", {"model": tiny_vlm_dir})
    res = assert_batched_equals_single(s, pairs)
    for r in res:
        p = r.components
        assert set(p) == {"p_first", "p_second", "p_none"} and sum(p.values()) == pytest.approx(1.0)
        assert r.reward == pytest.approx(p["p_second"] - p["p_first"]) and -1 <= r.reward <= 1
        assert r.label == ("first", "second", "none")[int(np.argmax([p["p_first"], p["p_second"], p["p_none"]]))]


@pytest.mark.parametrize("layout, prompt", [("images", "two_stage"), ("grid", "single_stage")])
def test_window_progress_in_unit_interval(tiny_vlm_dir, layout, prompt):
    s = build_scorer("window", {"model": tiny_vlm_dir, "window_size": 4, "layout": layout, "prompt": prompt,
                                "max_new_tokens": 6})
    assert s.frames_per_item == 4
    items = [frames(10, 4), frames(11, 4, 56, 72)]
    res = assert_batched_equals_single(s, items)
    assert all(0.0 <= r.reward <= 1.0 and r.reward == r.components["progress"] for r in res)
    assert len(s.last_descriptions) == len(items)  # one stage-1 description per item of the last call
    assert all(isinstance(d, str) for d in s.last_descriptions)


def test_window_count_and_param_checks(tiny_vlm_dir):
    s = build_scorer("window", {"model": tiny_vlm_dir})
    assert s.frames_per_item == 8
    with pytest.raises(ScorerError, match="item 0 has 4 frames, this scorer takes exactly 8"):
        s.score_batch([TASK], [frames(0, 4)])
    with pytest.raises(ScorerError, match=r"window_size must be one of \[4, 8, 16\], got 5"):
        build_scorer("window", {"model": tiny_vlm_dir, "window_size": 5})
    with pytest.raises(ScorerError, match="layout must be one of"):
        build_scorer("window", {"model": tiny_vlm_dir, "layout": "collage"})


def test_window_overflow_guard_error_and_downscale(tiny_vlm_dir):
    item = frames(3, 4, 224, 224)  # 4 images x 64 tokens (the tiny processor's cap) = 256 visual tokens
    common = {"model": tiny_vlm_dir, "window_size": 4, "prompt": "single_stage", "max_visual_tokens": 100}
    err = build_scorer("window", {**common, "on_overflow": "error"})
    with pytest.raises(ScorerError, match="need 256 visual tokens, over max_visual_tokens=100"):
        err.score_batch([TASK], [item])
    down = build_scorer("window", {**common, "on_overflow": "downscale"})
    fitted = down.fit_images(item)
    assert down.visual_tokens(fitted) <= 100 and fitted[0].shape[0] < 224
    r = down.score_batch([TASK], [item])[0]
    assert 0.0 <= r.reward <= 1.0
    tight = build_scorer("window", {**common, "max_visual_tokens": 8, "on_overflow": "downscale"})
    with pytest.raises(ScorerError, match="cannot fit 4 frames in max_visual_tokens=8"):
        tight.score_batch([TASK], [item])  # the processor's minimum is 4 tokens per image


def test_lora_adapter_changes_version_and_outputs(tiny_vlm_dir, lrm, pairs, tmp_path):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    params = {"model": tiny_vlm_dir, "adapter": str(adapter),
              "weights": {"progress": 0.5, "completion": 0.3, "contrastive": 0.2}}
    adapted = build_scorer("lrm", params)
    assert adapted.model_version != lrm.model_version and "adapter" in adapted.model_id
    with_adapter = rewards(adapted.score_batch([TASK] * 3, pairs))
    assert not np.allclose(with_adapter, rewards(lrm.score_batch([TASK] * 3, pairs)), atol=1e-6)

    weights_file = adapter / "adapter_model.safetensors"
    state = load_file(weights_file)
    save_file({k: v + 0.5 * torch.randn_like(v) if "lora_B" in k else v for k, v in state.items()}, weights_file)
    perturbed = build_scorer("lrm", params)
    assert perturbed.model_version not in (adapted.model_version, lrm.model_version)
    assert not np.allclose(rewards(perturbed.score_batch([TASK] * 3, pairs)), with_adapter, atol=1e-6)


def test_clip_cosine_and_vlm_rm_projection(tiny_clip_dir):
    items = [frames(i, 1, 40 + 8 * i, 48) for i in range(3)]
    tasks = [TASK, "open the drawer", TASK]
    plain = build_scorer("clip", {"model": tiny_clip_dir})
    res = assert_batched_equals_single(plain, items, tasks)
    assert all(-1.0 <= r.reward <= 1.0 and r.reward == r.components["cosine"] for r in res)
    # alpha = 0: P = I, 1 - |x - g|^2 / 2 equals the cosine of unit vectors
    a0 = build_scorer("clip", {"model": tiny_clip_dir, "baseline_prompt": "a robot arm", "alpha": 0.0})
    np.testing.assert_allclose([r.reward for r in a0.score_batch(tasks, items)], [r.reward for r in res], atol=1e-6)
    a1 = build_scorer("clip", {"model": tiny_clip_dir, "baseline_prompt": "a robot arm", "alpha": 1.0})
    proj = assert_batched_equals_single(a1, items, tasks)
    assert all(-1.0 <= r.reward <= 1.0 and r.reward == r.components["vlm_rm"] for r in proj)
    np.testing.assert_allclose([r.components["cosine"] for r in proj], [r.reward for r in res], atol=1e-6)
    assert not np.allclose([r.reward for r in proj], [r.reward for r in res])
    with pytest.raises(ScorerError, match="alpha must be in"):
        build_scorer("clip", {"model": tiny_clip_dir, "alpha": 2.0})


def test_clip_reward_range_calibrated_on_the_first_shard(tiny_clip_dir, tmp_path):
    from vlmrl.envs.offline_readers import open_reader
    from vlmrl.envs.synthetic_episodes import write_synthetic_dataset
    from vlmrl.learner.labels.labelling import LabellingError, calibrate_score_range

    reader = open_reader(write_synthetic_dataset(tmp_path / "ds", 3, num_steps=6, image_size=16))
    raw_scorer = build_scorer("clip", {"model": tiny_clip_dir})
    lo, hi = calibrate_score_range(reader, raw_scorer, episodes=2)
    # independently: one frame item per step (the frame after it; frames at every step here), first 2 episodes
    eps = [reader.load(i) for i in range(2)]
    assert all(list(e.frame_steps) == list(range(e.num_steps + 1)) for e in eps)
    raw = np.concatenate([[r.reward for r in raw_scorer.score_batch([e.task] * e.num_steps, list(e.frames[1:, None]))]
                          for e in eps])
    np.testing.assert_allclose([lo, hi], np.percentile(raw, [5, 95]), atol=1e-6)
    with pytest.raises(LabellingError, match="percentiles must be"):
        calibrate_score_range(reader, raw_scorer, percentiles=(95, 5))


def test_preference_scorer_behind_real_grpc_server(tiny_vlm_dir, pairs, serve, stub_for, make_request):
    scorer = build_scorer("preference", {"model": tiny_vlm_dir})
    expected = scorer.score_batch([TASK] * len(pairs), pairs)
    st = serve(scorer, max_batch=8, max_wait_ms=2.0)
    resp = stub_for(st).Score(make_request("vlm-1", pairs, task=TASK, kind="pair"), timeout=60)
    assert resp.model_version == scorer.model_version and len(resp.rewards) == len(pairs)
    for got, exp in zip(resp.rewards, expected):
        assert got.reward == pytest.approx(exp.reward, abs=1e-4) and got.label == exp.label
        assert got.components["p_second"] == pytest.approx(exp.components["p_second"], abs=1e-4)
