"""The built-in scorers: synthetic (cost model, content-derived reward, kinds) and cnn (a real torch CNN)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from vlmrl.reward_workers.scorers import available_scorers, build_scorer
from vlmrl.reward_workers.scorers.base import ItemKind, ScorerError
from vlmrl.reward_workers.models.text_embedding import hash_tokens
from vlmrl.reward_workers.scorers.cnn import CnnRewardNet

torch.set_num_threads(1)
RNG = np.random.default_rng(0)


def frames(n, h=24, w=32, c=3):
    return [RNG.integers(0, 256, (1, h, w, c), dtype=np.uint8) for _ in range(n)]


def test_builtins_are_registered():
    assert {"synthetic", "cnn"} <= set(available_scorers())


def test_synthetic_cost_and_reward():
    s = build_scorer("synthetic", {"fixed_ms": 20.0, "per_item_ms": 5.0})
    items = frames(4)
    t0 = time.perf_counter()
    out = s.score_batch(["t"] * 4, items)
    assert time.perf_counter() - t0 >= 0.04 - 1e-3  # 20 + 4 * 5 ms
    assert [r.reward for r in out] == pytest.approx([it.mean() / 255 for it in items])
    assert s.calls == 1 and s.frames_per_item == 1 and s.item_kind == ItemKind.FRAME


def test_synthetic_kinds_and_params():
    w = build_scorer("synthetic", {"item_kind": "window", "window": 3, "fixed_ms": 0, "per_item_ms": 0})
    assert (w.item_kind, w.frames_per_item) == (ItemKind.WINDOW, 3)
    p = build_scorer("synthetic", {"item_kind": "pair", "fixed_ms": 0, "per_item_ms": 0})
    pair = np.stack([np.full((2, 2, 3), 200, np.uint8), np.full((2, 2, 3), 10, np.uint8)])
    assert p.score_batch(["t"], [pair])[0].label == "first"
    with pytest.raises(ScorerError, match="item_kind must be"):
        build_scorer("synthetic", {"item_kind": "video"})
    with pytest.raises(ScorerError, match="bad params"):
        build_scorer("synthetic", {"no_such_param": 1})


@pytest.fixture(scope="module")
def cnn():
    return build_scorer("cnn", {"image_size": 32, "num_threads": 1})


def test_cnn_batched_equals_one_by_one(cnn):
    items = frames(3) + frames(2, h=40, w=20) + frames(1, c=1) + frames(1, c=4)
    tasks = ["push the cube", "open drawer", "push the cube", "lift", "x", "grey frame", "rgba frame"]
    batched = cnn.score_batch(tasks, items)
    single = [cnn.score_batch([t], [it])[0] for t, it in zip(tasks, items)]
    assert [r.reward for r in batched] == pytest.approx([r.reward for r in single], abs=1e-5)
    assert [r.components["progress"] for r in batched] == pytest.approx(
        [r.components["progress"] for r in single], abs=1e-5)
    assert all(0.0 < r.reward < 1.0 and 0.0 < r.components["progress"] < 1.0 for r in batched)


def test_cnn_is_deterministic_and_uses_the_task(cnn):
    items = frames(2)
    again = build_scorer("cnn", {"image_size": 32, "num_threads": 1})
    assert [r.reward for r in cnn.score_batch(["a", "a"], items)] == \
        [r.reward for r in again.score_batch(["a", "a"], items)]
    assert cnn.model_version == "random-0"
    other_seed = build_scorer("cnn", {"image_size": 32, "seed": 1})
    assert other_seed.model_version == "random-1"
    assert other_seed.score_batch(["a"], items[:1])[0].reward != cnn.score_batch(["a"], items[:1])[0].reward
    same = items[:1] * 2
    by_task = cnn.score_batch(["push the cube", "open the drawer"], same)
    assert by_task[0].reward != by_task[1].reward
    assert hash_tokens("Push the CUBE!", 4096) == hash_tokens("push the cube", 4096)


def test_cnn_loads_weights_and_versions_them(cnn, tmp_path):
    torch.manual_seed(123)
    net = CnnRewardNet()
    path = tmp_path / "cnn.pt"
    torch.save(net.state_dict(), path)
    loaded = build_scorer("cnn", {"image_size": 32, "weights": str(path)})
    assert loaded.model_version not in ("random-0", "") and len(loaded.model_version) == 12
    item = frames(1)
    expected = torch.sigmoid(net.eval()(loaded._images(item), *loaded._tokens(["t"])))[0, 0].item()
    assert loaded.score_batch(["t"], item)[0].reward == pytest.approx(expected, abs=1e-6)
    assert loaded.score_batch(["t"], item)[0].reward != cnn.score_batch(["t"], item)[0].reward
    torch.save(CnnRewardNet(channels=(8, 8)).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ScorerError, match="do not fit the network"):
        build_scorer("cnn", {"weights": str(tmp_path / "other.pt")})
    with pytest.raises(ScorerError, match="does not exist"):
        build_scorer("cnn", {"weights": str(tmp_path / "missing.pt")})


def test_cnn_served_end_to_end(serve, stub_for, make_request, make_frame):
    st = serve("cnn", {"image_size": 32, "num_threads": 1})
    fr = [make_frame(seed=i, h=16, w=16) for i in range(4)]
    resp = stub_for(st).Score(make_request("c", fr))
    direct = st.server.scorer.score_batch(["push the cube"] * 4, [f[None] for f in fr])
    assert [r.reward for r in resp.rewards] == pytest.approx([r.reward for r in direct], abs=1e-6)
    assert resp.model_version == "random-0"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_cnn_on_gpu_matches_cpu():
    items = frames(4)
    cpu = build_scorer("cnn", {"image_size": 32})
    gpu = build_scorer("cnn", {"image_size": 32, "device": "cuda"})
    assert [r.reward for r in gpu.score_batch(["t"] * 4, items)] == pytest.approx(
        [r.reward for r in cpu.score_batch(["t"] * 4, items)], abs=1e-4)


def test_cnn_cuda_request_without_gpu_is_clear():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ScorerError, match="CUDA is not available"):
        build_scorer("cnn", {"device": "cuda"})
