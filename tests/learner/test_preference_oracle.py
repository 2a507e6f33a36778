"""Labellers that need no VLM and the label budget (no Ray): the ground-truth oracle (success first, dense reward,
tie -> none, label-error rate, records it cannot judge are failures), malformed answers, the compact LRM's pair
answer, the budget / schedule (refused at start when it cannot be met), and the trainer's normalisation and
ensemble disagreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmrl.learner.preference.budget import LabelBudget
from vlmrl.learner.preference.frame_buffer import FrameRecord
from vlmrl.learner.preference.labeller import LabelBatch
from vlmrl.learner.preference.mode import pair_image
from vlmrl.learner.preference.oracle import GroundTruthLabeller, oracle_label
from vlmrl.reward_workers.scorers.compact_lrm import pair_label, signed_label

FRAME = np.zeros((8, 8, 3), np.uint8)


def rec(r, success=False, step=0):
    return FrameRecord(FRAME, "push the cube", r, "e", step, success)


def test_oracle_prefers_success_then_higher_dense_reward_and_ties_are_none():
    assert oracle_label(rec(0.2), rec(0.6), 0.01) == "second"
    assert oracle_label(rec(0.6), rec(0.2), 0.01) == "first"
    assert oracle_label(rec(0.5), rec(0.505), 0.01) == "none"          # inside the tie threshold
    assert oracle_label(rec(0.5), rec(0.505), 0.001) == "second"
    assert oracle_label(rec(0.9), rec(0.3, success=True), 0.01) == "second"  # success first, whatever the dense reward
    assert oracle_label(rec(0.3, success=True), rec(0.9), 0.01) == "first"
    assert oracle_label(rec(1.0, success=True), rec(0.8, success=True), 0.01) == "none"
    assert oracle_label(rec(float("nan")), rec(0.5), 0.01) is None


def test_oracle_labeller_batches_counts_and_failures():
    lab = GroundTruthLabeller(tie_threshold=0.01)
    pairs = [(rec(0.1), rec(0.9)), (rec(0.9), rec(0.1)), (rec(0.5), rec(0.5)), (rec(float("nan")), rec(0.2))]
    b = lab.label(pairs)
    assert b.counts == {"first": 1, "second": 1, "none": 1, "failed": 1, "unknown": 0}
    assert [p.y for p in b.pairs] == [1.0, 0.0] and b.failures == 1 and "env_reward" in b.errors[0]
    assert lab.totals["failed"] == 1 and sum(lab.totals.values()) == 4


def test_oracle_label_error_rate_flips_about_epsilon_and_is_seeded():
    pairs = [(rec(0.1 + 0.0003 * i), rec(0.9)) for i in range(2000)]  # all "second"
    flips = [sum(p.y == 0.0 for p in GroundTruthLabeller(0.01, eps, seed=1).label(pairs).pairs) / 2000
             for eps in (0.0, 0.1, 0.3)]
    assert flips[0] == 0.0 and abs(flips[1] - 0.1) < 0.025 and abs(flips[2] - 0.3) < 0.035
    a = [p.y for p in GroundTruthLabeller(0.01, 0.1, seed=5).label(pairs).pairs]
    assert a == [p.y for p in GroundTruthLabeller(0.01, 0.1, seed=5).label(pairs).pairs]
    # "none" is never flipped
    ties = GroundTruthLabeller(0.01, 0.5, seed=0).label([(rec(0.5), rec(0.5))] * 50)
    assert ties.counts["none"] == 50 and not ties.pairs
    with pytest.raises(ValueError, match="oracle_epsilon"):
        GroundTruthLabeller(0.01, 0.7)
    with pytest.raises(ValueError, match="oracle_tie_threshold"):
        GroundTruthLabeller(-1.0)


def test_malformed_labels_count_as_failures():
    b = LabelBatch()
    for label in ("first", "second", "none", "maybe", None):
        b.add(rec(0.1), rec(0.2), label)
    assert b.counts == {"first": 1, "second": 1, "none": 1, "failed": 0, "unknown": 2}
    assert b.failures == 2 and len(b.pairs) == 2


def test_compact_lrm_pair_answer_from_contrastive():
    assert pair_label(0.9, 0.1) == "second" and pair_label(0.1, 0.1) == "first"
    assert pair_label(0.55, 0.1) == "none" and pair_label(0.55, 0.0) == "second"


def test_compact_lrm_pair_answer_from_progress_compares_each_frames_progress(tmp_path):
    """label_from=progress: the first frame's progress comes from the swapped pair, and the answer is the sign of
    progress(second) - progress(first) beyond the margin -- antisymmetric: swapping the pair swaps the answer."""
    from vlmrl.reward_workers.models.compact_lrm import CompactLRM, CompactLRMConfig
    from vlmrl.reward_workers.scorers import build_scorer
    from vlmrl.reward_workers.scorers.base import ScorerError

    torch.manual_seed(0)
    lrm = CompactLRM(CompactLRMConfig(image_size=16, widths=[8, 16], embed_dim=16, text_encoder="hashed"))
    folder = str(lrm.save_pretrained(tmp_path / "lrm"))
    scorer = build_scorer("compact_lrm", {"weights_dir": folder, "label_margin": 0.0, "label_from": "progress"})
    rng = np.random.default_rng(0)
    pairs = [rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8) for _ in range(6)]
    fwd = scorer.score_batch(["push"] * 6, pairs)
    back = scorer.score_batch(["push"] * 6, [p[::-1] for p in pairs])
    for f, b in zip(fwd, back):
        assert f.label == signed_label(f.components["progress"] - b.components["progress"], 0.0)
        assert {f.label, b.label} == {"first", "second"}
    wide = build_scorer("compact_lrm", {"weights_dir": folder, "label_margin": 0.49, "label_from": "progress"})
    assert max(abs(f.components["progress"] - b.components["progress"]) for f, b in zip(fwd, back)) < 0.49
    assert all(r.label == "none" for r in wide.score_batch(["push"] * 6, pairs))  # inside the margin: no answer
    with pytest.raises(ScorerError, match="label_from must be one of"):
        build_scorer("compact_lrm", {"weights_dir": folder, "label_from": "pixels"})


def test_label_budget_schedule_and_cap():
    b = LabelBudget(pairs_per_iteration=80, label_every=2, max_labels=200, warmup_labels=50)
    b.check(iterations=10)
    assert b.planned(10) == 50 + 80 * 5
    assert b.warmup_due(0) == 50
    assert b.due(1, 50) == 0 and b.due(2, 50) == 80 and b.due(4, 130) == 70 and b.due(6, 200) == 0
    assert LabelBudget(64).due(3, 10_000) == 64  # no cap


@pytest.mark.parametrize("budget, iterations, message", [
    (LabelBudget(0), 10, "asks no labels"),
    (LabelBudget(10, label_every=20), 10, "asks no labels"),
    (LabelBudget(10, max_labels=5, warmup_labels=6), 10, "exceeds the label budget"),
    (LabelBudget(80, max_labels=4001), 50, "cannot be reached: the schedule asks at most 4000"),
    (LabelBudget(10, label_every=0), 10, "label_every must be >= 1"),
    (LabelBudget(-1), 10, "pairs_per_iteration must be >= 0"),
])
def test_label_budgets_that_cannot_be_met_are_refused(budget, iterations, message):
    with pytest.raises(ValueError, match=message):
        budget.check(iterations)


def test_budget_too_small_for_a_training_pair_is_refused():
    with pytest.raises(ValueError, match="leaves no training pair"):
        LabelBudget(1, max_labels=1).check(5, heldout_fraction=0.5)
    LabelBudget(80, max_labels=4000).check(50, heldout_fraction=0.2)  # the PushCube config's budget


def test_pair_image_marks_the_preferred_frame():
    from vlmrl.learner.preference.labeller import LabelledPair

    a, b = np.full((8, 6, 3), 10, np.uint8), np.full((8, 6, 3), 200, np.uint8)
    img = pair_image(LabelledPair(FrameRecord(a, "t", 0.1), FrameRecord(b, "t", 0.9), 1.0))
    assert img.shape == (12, 14, 3) and img.dtype == np.uint8
    assert tuple(img[-1, 10]) == (40, 200, 40) and tuple(img[-1, 2]) == (110, 110, 110)


def test_trainer_normalises_the_served_reward_and_ranks_pairs_by_disagreement():
    import torch

    from vlmrl.learner.preference.reward_model_trainer import RewardModelTrainer
    from vlmrl.reward_workers.scorers.bt_reward import BtRewardScorer

    params = {"image_size": 8, "channels": [8], "ensemble_size": 3}
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (41, 8, 8, 3), dtype=np.uint8)
    rows = [(frames[i], frames[i + 1], "t", float(frames[i + 1].mean() > frames[i].mean()), 0.0, 0.0) for i in range(40)]
    t = RewardModelTrainer(params, 1e-2, 100, seed=0, normalize_reward=True)
    t.add_pairs(rows, False)
    m = t.train(20, 16)
    assert m["reward_scale"] > 0 and "reward_shift" in m
    scorer = BtRewardScorer(BtRewardScorer.Params(**params))
    scorer.update_weights(*t.weights())
    served = np.array([r.reward for r in scorer.score_batch(["t"] * 40, [f[None] for f in frames[:40]])])
    raw = np.array([r.components["raw_reward"] for r in scorer.score_batch(["t"] * 40, [f[None] for f in frames[:40]])])
    np.testing.assert_allclose(served, (raw - m["reward_shift"]) / m["reward_scale"], atol=1e-5)
    assert abs(served.mean()) < 0.5 and 0.5 < served.std() < 1.5  # standardised over the training frames
    d = t.disagreement([(r[0], r[1], "t") for r in rows])
    assert len(d) == 40 and all(x >= 0 for x in d) and max(d) > 0
    one = RewardModelTrainer({**params, "ensemble_size": 1})
    assert one.disagreement([(r[0], r[1], "t") for r in rows[:3]]) == [0.0, 0.0, 0.0]
    # weights saved before normalisation existed (no reward_shift / reward_scale) still load, serving the raw reward
    import io

    sd = {k: v for k, v in t.model.state_dict().items() if not k.startswith("reward_")}
    buf = io.BytesIO()
    torch.save(sd, buf)
    scorer.update_weights("old", buf.getvalue())
    assert float(scorer.model.reward_scale) == 1.0 and float(scorer.model.reward_shift) == 0.0


def test_all_none_round_is_reported_and_sends_nothing_to_the_trainer(tmp_path, caplog):
    from vlmrl.learner.preference.mode import PreferenceMode
    from vlmrl.system.config import load_config

    cfg = load_config("train_toy_preference", [f"output_dir={tmp_path}", "preference.labeller=oracle"])
    mode = PreferenceMode(cfg, tmp_path / "run")

    class NoTrainer:  # any call would be a bug: an all-none round has nothing to train on
        def __getattr__(self, name):
            raise AssertionError(f"trainer.{name} called on an all-none round")

    mode.trainer, mode.labeller = NoTrainer(), GroundTruthLabeller(0.01)
    batch = mode.labeller.label([(rec(0.5), rec(0.5))] * 4)
    s = mode._add_labelled(batch)
    assert s["preference/all_none_batches"] == 1.0 and s["preference/labels_none"] == 4.0
    assert "preference/label_second_fraction" not in s and "none of 4 pairs" in caplog.text
    assert "ALL none" in mode.console_line(batch, s)


def test_frame_collector_carries_the_state_values_with_each_frame():
    """The env runner's collector keeps success and the normalised dense reward next to the frame (what the
    oracle labels from), for any env whose info has them; an env that gives no success leaves it None."""
    from types import SimpleNamespace

    from vlmrl.envs import info_keys as K
    from vlmrl.learner.preference.frame_collector import PreferenceFrameCollector

    infos = [{K.HAS_FRAME: True, K.FRAME: FRAME, K.TASK_TEXT: "push", K.ENV_REWARD: 0.25, K.SUCCESS: False},
             {K.HAS_FRAME: False},
             {K.HAS_FRAME: True, K.FRAME: FRAME, K.TASK_TEXT: "push", K.ENV_REWARD: 0.9, K.SUCCESS: True},
             {K.HAS_FRAME: True, K.FRAME: FRAME, K.TASK_TEXT: "push", K.ENV_REWARD: 0.4}]
    c = PreferenceFrameCollector(10)
    for t, info in enumerate(infos):
        c.on_episode_step(episode=SimpleNamespace(get_infos=lambda i, info=info: info, id_="ep", t=t))
    got = c.pop_frames()
    assert [(r.env_reward, r.success, r.step) for r in got] == [(0.25, False, 0), (0.9, True, 2), (0.4, None, 3)]
    assert oracle_label(got[0], got[1], 0.01) == "second" and c.pop_frames() == []
