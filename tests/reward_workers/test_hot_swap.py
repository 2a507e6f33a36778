"""Weight hot swap of a running reward worker (``bt_reward`` scorer behind a real gRPC server + RewardClient):
requests stream in while new weights arrive; none is lost or failed, each answer names the version that
produced it (old before the swap, new after), its reward is that version's, and the cache never answers
with the old version's reward. A bad update is refused and the old weights keep serving. Through Ray:
``RewardWorkerPool.update_weights`` is covered by tests/learner/test_preference_mode.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from vlmrl.reward_workers.client import RewardClient
from vlmrl.reward_workers.scorers import build_scorer
from vlmrl.reward_workers.scorers.base import ScorerError
from vlmrl.reward_workers.models.bt_reward_model import BtModelParams, BtRewardModel, state_to_bytes
from vlmrl.system.config import ClientConfig

torch.set_num_threads(1)
TASK = "move the white square onto the green disk"
PARAMS = {"image_size": 16, "channels": [8, 8], "embed_dim": 8, "hidden": 16, "ensemble_size": 2, "seed": 0}


def rewards_of(model, frames):
    with torch.inference_mode():
        return model(*model.preprocess(frames, [TASK] * len(frames))).mean(0).numpy()


@pytest.fixture
def frames():
    return np.random.default_rng(0).integers(0, 255, (64, 16, 16, 3), dtype=np.uint8)


def test_running_worker_switches_weights_mid_stream_without_losing_requests(serve, frames):
    srv = serve("bt_reward", PARAMS, max_batch=4, max_wait_ms=1.0, cache_size=256)
    old = BtRewardModel(BtModelParams(**PARAMS))
    new = BtRewardModel(BtModelParams(**{**PARAMS, "seed": 7}))
    client = RewardClient(OmegaConf.structured(ClientConfig(max_items_per_request=2)), addresses=[srv.address],
                          scorer="bt_reward")
    submitted, swap_started, swap_done = [], threading.Event(), threading.Event()

    def stream():  # 64 requests of 2 frames, sent while the swap happens
        for i in range(64):
            items = [frames[i], frames[(i + 1) % 64]]
            submitted.append((i, swap_started.is_set(), swap_done.is_set(), client.submit(TASK, items)))
            time.sleep(0.003)

    try:
        t = threading.Thread(target=stream)
        t.start()
        while len(submitted) < 20:
            time.sleep(0.001)
        swap_started.set()
        assert srv.update_weights("bt-v1", state_to_bytes(new)) == "bt-v1"
        swap_done.set()
        t.join(timeout=30)
        versions = []
        for i, before, after, fut in submitted:
            res = fut.result(timeout=30)  # raises if any request failed
            assert len(res) == 2
            for r, f in zip(res, (frames[i], frames[(i + 1) % 64])):
                assert r.model_version in ("init-0", "bt-v1")
                model = old if r.model_version == "init-0" else new
                assert r.reward == pytest.approx(float(rewards_of(model, [f])[0]), abs=1e-5)
                if not before:
                    assert r.model_version == "init-0" or swap_started.is_set()
                if after:
                    assert r.model_version == "bt-v1", f"request {i} sent after the swap got {r.model_version}"
                versions.append(r.model_version)
        assert versions[0] == "init-0" and versions[-1] == "bt-v1"
        assert client.stats()["failures"] == 0
        assert srv.info().model_version == "bt-v1"
        # frame 5 was scored (and cached) only by init-0; now bt-v1 scores it, the old cache entry is not used
        again = client.score(TASK, [frames[5]], timeout=30)[0]
        assert again.model_version == "bt-v1" and not again.cached
        assert again.reward == pytest.approx(float(rewards_of(new, [frames[5]])[0]), abs=1e-5)
        assert client.score(TASK, [frames[5]], timeout=30)[0].cached  # bt-v1's answer is cached under bt-v1
    finally:
        client.close()


def test_bad_update_is_refused_and_old_weights_keep_serving(serve, frames):
    srv = serve("bt_reward", PARAMS)
    other = BtRewardModel(BtModelParams(**{**PARAMS, "ensemble_size": 1}))
    with pytest.raises(ScorerError, match="does not fit the model"):
        srv.update_weights("bad", state_to_bytes(other))
    with pytest.raises(ScorerError, match="not a torch state_dict"):
        srv.update_weights("junk", b"not weights")
    assert srv.info().model_version == "init-0"


def test_scorers_without_learned_weights_refuse_updates():
    with pytest.raises(ScorerError, match="does not take weight updates"):
        build_scorer("synthetic", {}).update_weights("v", b"")
