"""Bradley-Terry reward model of the preference mode (no Ray): the BT loss on hand-made pairs drives the model
to rank frames correctly; loss values, bad targets and pair sampling from the frame buffer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vlmrl.learner.preference.frame_buffer import FrameBuffer, FrameRecord
from vlmrl.learner.preference.reward_model_trainer import RewardModelTrainer, bt_loss
from vlmrl.reward_workers.scorers import build_scorer

torch.set_num_threads(1)
TASK = "make the image bright"
PARAMS = {"image_size": 16, "channels": [8, 16], "embed_dim": 8, "hidden": 32, "ensemble_size": 2, "seed": 0}


def frame(level: float, rng) -> np.ndarray:
    """A noisy grey frame of brightness ``level`` in [0, 1]."""
    return np.clip(level * 255 + rng.normal(0, 12, (16, 16, 3)), 0, 255).astype(np.uint8)


def test_bt_loss_values():
    r1, r2 = torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0])
    # equal rewards: log 2 whatever the label; r1 > r2 with label "first" (y=0): -log sigmoid(2)
    assert float(bt_loss(r1[:1], r2[:1], torch.tensor([1.0]))) == pytest.approx(math.log(2))
    assert float(bt_loss(r1[1:], r2[1:], torch.tensor([0.0]))) == pytest.approx(-math.log(1 / (1 + math.exp(-2))))


def test_bt_training_on_hand_made_pairs_ranks_frames_correctly():
    rng = np.random.default_rng(0)
    trainer = RewardModelTrainer(PARAMS, lr=3e-3, seed=0)

    def pairs(n):
        out = []
        for _ in range(n):
            la, lb = rng.uniform(0, 1, 2)
            out.append((frame(la, rng), frame(lb, rng), TASK, float(lb > la), la, lb))
        return out

    trainer.add_pairs(pairs(256), heldout=False)
    trainer.add_pairs(pairs(64), heldout=True)
    before = trainer.evaluate()
    m = trainer.train(steps=120, batch_size=32)
    assert m["version"].startswith("bt-1-") and m["updates"] == 1
    assert m["bt_heldout_acc"] >= 0.9, m
    assert m["bt_heldout_loss"] < before["bt_heldout_loss"]
    assert m["heldout_pearson_reward_vs_dense"] > 0.8, m
    # the served scorer with the trained weights ranks unseen frames by brightness
    version, state = trainer.weights()
    scorer = build_scorer("bt_reward", PARAMS)
    scorer.update_weights(version, state)
    assert scorer.model_version == version
    levels = np.linspace(0.05, 0.95, 10)
    rewards = [r.reward for r in scorer.score_batch([TASK] * 10, [frame(lv, rng)[None] for lv in levels])]
    ranks = np.argsort(np.argsort(rewards))
    assert np.corrcoef(ranks, np.arange(10))[0, 1] > 0.9, rewards


def test_trainer_rejects_bad_targets_and_training_without_pairs():
    trainer = RewardModelTrainer(PARAMS)
    with pytest.raises(ValueError, match="no labelled training pairs"):
        trainer.train(steps=1, batch_size=4)
    z = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="must be 0.0 \\(first\\) or 1.0"):
        trainer.add_pairs([(z, z, TASK, 0.5, 0.0, 0.0)], heldout=False)


def test_frame_buffer_is_bounded_and_pairs_share_task_and_shape():
    buf = FrameBuffer(5)
    z = np.zeros((8, 8, 3), np.uint8)
    buf.extend(FrameRecord(z, "a", float(i), step=i) for i in range(4))
    buf.extend([FrameRecord(np.zeros((4, 4, 3), np.uint8), "a", 9.0), FrameRecord(z, "b", 10.0)])
    assert len(buf) == 5 and buf.added == 6
    pairs = buf.sample_pairs(50, np.random.default_rng(0))
    assert len(pairs) == 50
    for a, b in pairs:  # only the three remaining 8x8 "a" frames can pair up
        assert a is not b and a.task == b.task == "a" and a.frame.shape == b.frame.shape == (8, 8, 3)
    with pytest.raises(ValueError, match="frame_buffer_size must be >= 2"):
        FrameBuffer(1)


def test_logit_scale_keeps_the_learned_reward_graded_under_labels_that_never_flip():
    """tanh bounds r to [-1, 1]; with P = sigmoid(r2 - r1) no pair can be more certain than sigmoid(2), so noiseless
    labels push every pair's frames apart until r is a two-level step. A larger logit_scale keeps it graded."""
    levels = np.linspace(0.02, 0.98, 25)

    def learned(scale):
        rng = np.random.default_rng(0)
        trainer = RewardModelTrainer({**PARAMS, "logit_scale": scale}, lr=3e-3, seed=0)
        la, lb = rng.uniform(0, 1, (2, 256))
        trainer.add_pairs([(frame(a, rng), frame(b, rng), TASK, float(b > a), a, b) for a, b in zip(la, lb)], False)
        assert trainer.train(300, 32)["bt_train_acc"] > 0.95
        with torch.no_grad():
            x = trainer.model.preprocess([frame(v, rng) for v in levels], [TASK] * 25)
            return trainer.model(*x).mean(0).numpy()

    step, graded = learned(1.0), learned(10.0)
    saturated = [float(np.mean(np.abs(r) > 0.9)) for r in (step, graded)]
    assert saturated[1] < 0.5 * saturated[0], saturated
    assert np.corrcoef(graded, levels)[0, 1] > np.corrcoef(step, levels)[0, 1]


def test_logit_scale_enters_the_loss_and_the_disagreement_and_must_be_positive():
    r1, r2, y = torch.tensor([0.0]), torch.tensor([0.5]), torch.tensor([1.0])
    assert float(bt_loss(r1, r2, y, 4.0)) == pytest.approx(-math.log(1 / (1 + math.exp(-2.0))))
    rng = np.random.default_rng(0)
    rows = [(frame(0.2, rng), frame(0.8, rng), TASK)] * 3
    # same members, same weights: the members' spread of P(second preferred) grows with the scale
    base, scaled = (RewardModelTrainer({**PARAMS, "logit_scale": s}, seed=0).disagreement(rows)[0] for s in (1.0, 8.0))
    assert scaled > base > 0
    with pytest.raises(Exception, match="logit_scale must be > 0"):
        RewardModelTrainer({**PARAMS, "logit_scale": 0.0})
