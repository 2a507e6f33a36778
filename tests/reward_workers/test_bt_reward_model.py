"""The BT reward model's pooling choices: the spatial soft-argmax reads where a feature is, max pooling does not."""

import numpy as np
import pytest
import torch

from vlmrl.reward_workers.models.bt_reward_model import BtModelParams, BtRewardModel, SpatialSoftArgmax
from vlmrl.reward_workers.models.errors import ScorerError


def test_spatial_soft_argmax_finds_the_peak():
    h = torch.full((1, 2, 8, 8), -50.0)
    h[0, 0, 0, 7] = 50.0  # channel 0: top right
    h[0, 1, 7, 0] = 50.0  # channel 1: bottom left
    xy = SpatialSoftArgmax()(h)[0]
    assert xy.shape == (4,)  # x of each channel, then y of each channel
    np.testing.assert_allclose(xy.detach().numpy(), [1.0, -1.0, -1.0, 1.0], atol=1e-4)


def _frames(col: int):
    f = np.zeros((32, 32, 3), np.uint8)
    f[12:20, col:col + 8] = 255  # a white square on black
    return [f]


def _learn_position(pooling: str) -> dict:
    """Train a BT model on pairs of the square at two places, labelled "further right is better"."""
    from vlmrl.learner.preference.reward_model_trainer import RewardModelTrainer

    trainer = RewardModelTrainer({"image_size": 32, "channels": [8, 16], "pooling": pooling, "seed": 3}, lr=3e-3)
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(64):
        a, b = rng.choice(25, size=2, replace=False)
        pairs.append((_frames(a)[0], _frames(b)[0], "push the cube right", float(b > a), float(a), float(b)))
    trainer.add_pairs(pairs[:48], heldout=False)
    trainer.add_pairs(pairs[48:], heldout=True)
    return trainer.train(150, 32)


def test_keypoint_pooling_learns_a_position_order_that_max_pooling_misses():
    kp, mx = _learn_position("keypoints"), _learn_position("max")
    assert kp["bt_heldout_acc"] >= 0.8, kp
    assert kp["bt_heldout_acc"] > mx["bt_heldout_acc"], (kp, mx)


def test_unknown_pooling_is_refused():
    with pytest.raises(ScorerError, match="pooling must be one of"):
        BtRewardModel(BtModelParams(pooling="mean"))


@pytest.fixture()
def tiny_lrm_dir(tmp_path):
    from vlmrl.reward_workers.models.compact_lrm import CompactLRM, CompactLRMConfig

    torch.manual_seed(0)
    return str(CompactLRM(CompactLRMConfig(image_size=16, widths=[8, 16], embed_dim=16, text_encoder="hashed",
                                           hash_buckets=64)).save_pretrained(tmp_path / "lrm"))


def test_frozen_encoder_is_not_trained_and_does_not_travel_with_the_weights(tiny_lrm_dir):
    from vlmrl.learner.preference.reward_model_trainer import RewardModelTrainer
    from vlmrl.reward_workers.models.bt_reward_model import load_state_bytes
    from vlmrl.reward_workers.models.compact_lrm import CompactLRM, frames_to_input, stack_frames

    params = {"encoder_dir": tiny_lrm_dir, "ensemble_size": 2, "seed": 1}
    trainer = RewardModelTrainer(params, lr=3e-3)
    enc = trainer.model._encoder[0]
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    assert not any(k.startswith("_encoder") or "encoder." in k for k in trainer.model.state_dict())
    rng = np.random.default_rng(0)
    pairs = [(_frames(a)[0], _frames(b)[0], "push the cube right", float(b > a), float(a), float(b))
             for a, b in (rng.choice(25, size=2, replace=False) for _ in range(40))]
    trainer.add_pairs(pairs[:32], heldout=False)
    trainer.add_pairs(pairs[32:], heldout=True)
    m = trainer.train(20, 16)
    assert m["updates"] == 1 and np.isfinite(m["bt_loss"])
    for k, v in enc.state_dict().items():  # frozen: the heads learned, the encoder did not move
        assert torch.equal(v, before[k]), k
    # a worker with the same encoder_dir and the trainer's state gives the trainer's rewards
    served = BtRewardModel(BtModelParams(**params))
    load_state_bytes(served, trainer.weights()[1])
    frames, tasks = [_frames(3)[0], _frames(20)[0]], ["push the cube right"] * 2
    with torch.no_grad():
        np.testing.assert_allclose(served(*served.preprocess(frames, tasks)).numpy(),
                                   trainer.model(*trainer.model.preprocess(frames, tasks)).numpy(), rtol=1e-5)
        # the heads read the LRM's own joint features of the frames
        lrm = CompactLRM.from_pretrained(tiny_lrm_dir)
        z = lrm.features(frames_to_input(stack_frames(frames, 16), 16), lrm.embed_text(tasks))
        np.testing.assert_allclose(served.preprocess(frames, tasks)[0].numpy(), z.numpy(), rtol=1e-5, atol=1e-6)


def test_missing_encoder_dir_names_the_fix(tmp_path):
    with pytest.raises(ScorerError, match="lrm-train"):
        BtRewardModel(BtModelParams(encoder_dir=str(tmp_path / "nope")))


def test_trainer_encodes_each_buffered_frame_once_and_the_cache_stays_bounded(tiny_lrm_dir):
    from vlmrl.reward_workers.models.bt_reward_model import FeatureCache

    model = BtRewardModel(BtModelParams(encoder_dir=tiny_lrm_dir))
    frames, tasks = [_frames(i)[0] for i in (1, 5, 9)], ["push the cube right"] * 3
    uncached = model.preprocess(frames, tasks)[0]
    model.cache_features(4)
    calls = []
    encode_now = model._encode_now
    model._encode_now = lambda f, t, d: calls.append(len(f)) or encode_now(f, t, d)
    twice = model.preprocess(frames + frames[:1], tasks + tasks[:1])[0]  # a repeated frame is encoded once
    again = model.preprocess(frames[::-1], tasks)[0]
    other_task = model.preprocess(frames[:1], ["pick the cube"])[0]
    assert calls == [3, 1], calls  # the second pass read the cache; another task is another feature
    torch.testing.assert_close(twice[:3], uncached)
    torch.testing.assert_close(twice[3], uncached[0])
    torch.testing.assert_close(again, uncached.flip(0))
    assert not torch.allclose(other_task[0], uncached[0])
    model.preprocess([_frames(i)[0] for i in (13, 17)], tasks[:2])
    assert len(model._feature_cache) == 4  # least recently used entries dropped at the bound
    many = [_frames(i)[0] for i in range(2, 12)]  # more distinct frames in one call than the cache holds
    torch.testing.assert_close(model.preprocess(many, ["push the cube right"] * 10)[0],
                               BtRewardModel(BtModelParams(encoder_dir=tiny_lrm_dir)).preprocess(
                                   many, ["push the cube right"] * 10)[0])
    assert len(model._feature_cache) == 4
    with pytest.raises(ValueError, match="at least one entry"):
        FeatureCache(0)
    conv = BtRewardModel(BtModelParams())
    conv.cache_features(4)  # the conv stack learns: nothing to cache
    assert conv._feature_cache is None


def test_init_from_progress_starts_at_the_lrms_progress_and_learns_from_labels(tiny_lrm_dir):
    from vlmrl.learner.preference.reward_model_trainer import RewardModelTrainer
    from vlmrl.reward_workers.models.bt_reward_model import load_state_bytes
    from vlmrl.reward_workers.models.compact_lrm import CompactLRM

    with pytest.raises(ScorerError, match="needs encoder_dir"):
        BtRewardModel(BtModelParams(init_from_progress=True))
    params = {"encoder_dir": tiny_lrm_dir, "ensemble_size": 2, "seed": 1, "init_from_progress": True}
    trainer = RewardModelTrainer(params, lr=3e-3)
    frames, tasks = [_frames(i)[0] for i in (2, 8, 14, 20)], ["push the cube right"] * 4
    progress = CompactLRM.from_pretrained(tiny_lrm_dir).predict(tasks, frames, frames)["progress"]
    with torch.no_grad():
        before = trainer.model(*trainer.model.preprocess(frames, tasks)).numpy()
    for member in before:  # every member starts as the LRM's own progress reward, 2 * progress - 1
        np.testing.assert_allclose(member, 2 * progress - 1, rtol=1e-4, atol=1e-5)
    # the labels (the cube further right is preferred) move the reward; the prior is trained and travels
    rng = np.random.default_rng(0)
    pairs = [(_frames(a)[0], _frames(b)[0], "push the cube right", float(b > a), float(a), float(b))
             for a, b in (rng.choice(25, size=2, replace=False) for _ in range(48))]
    trainer.add_pairs(pairs[:40], heldout=False)
    trainer.add_pairs(pairs[40:], heldout=True)
    acc_before = trainer.evaluate()["bt_heldout_acc"]
    trainer.train(200, 16)
    served = BtRewardModel(BtModelParams(**params))
    load_state_bytes(served, trainer.weights()[1])
    with torch.no_grad():
        after = served(*served.preprocess(frames, tasks)).numpy()
        np.testing.assert_allclose(after, trainer.model(*trainer.model.preprocess(frames, tasks)).numpy(), rtol=1e-5)
    assert not np.allclose(after, before, atol=1e-3)
    # ordered as the labels say, better than at the start
    assert trainer.evaluate()["bt_heldout_acc"] > acc_before
    corr_before, corr_after = (np.corrcoef(r.mean(0), [2, 8, 14, 20])[0, 1] for r in (before, after))
    assert corr_after > max(0.5, corr_before + 0.3), (corr_before, corr_after)
