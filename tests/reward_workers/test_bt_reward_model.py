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
