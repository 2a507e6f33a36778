"""Reward-quality metrics are right on hand-made predictions (oracle, reversed, missing components)."""

import numpy as np
import pytest

from vlmrl.envs.dataset import iter_episodes
from vlmrl.learner.reward_training.lrm_data import completion_targets, progress_targets
from vlmrl.learner.reward_training.reward_eval import (EpisodePredictions, evaluate_predictors, format_table, plot_accuracy_curves,
                                       precision_recall_f1, progress_accuracy, rank_correlation, scalar_items,
                                       scorer_predictor)
from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScoreResult


def oracle(ep, a, b):
    p = progress_targets(ep)
    later = ep.frame_steps[b] > ep.frame_steps[a]
    return EpisodePredictions(reward=p, progress=p, completion=completion_targets(ep),
                              contrastive=later.astype(float))


def reversed_oracle(ep, a, b):
    p = 1.0 - progress_targets(ep)
    later = ep.frame_steps[b] > ep.frame_steps[a]
    return EpisodePredictions(reward=p, progress=p, completion=1.0 - completion_targets(ep),
                              contrastive=(~later).astype(float))


def reward_only(ep, a, b):
    return EpisodePredictions(reward=np.full(len(ep.frames), 0.3))


def test_oracle_is_perfect_and_reversed_is_anti(synthetic_dataset):
    res = evaluate_predictors(iter_episodes(synthetic_dataset),
                              {"oracle": oracle, "reversed": reversed_oracle, "flat": reward_only})
    o, r, f = res["oracle"], res["reversed"], res["flat"]
    assert all(v == 1.0 for v in o["progress_acc"].values()) and o["progress_mae"] == 0.0
    assert o["completion_f1"] == 1.0 and o["contrastive_acc"] == 1.0 and o["preference_acc"] == 1.0
    assert o["spearman_progress"] == pytest.approx(1.0) and o["spearman_reward"] == pytest.approx(1.0)
    assert r["spearman_progress"] == pytest.approx(-1.0) and r["preference_acc"] == 0.0
    assert r["contrastive_acc"] == 0.0 and r["completion_f1"] == 0.0
    assert r["progress_acc"][0.05] < 0.5
    # a model without progress/completion/contrastive gets n/a, ties count half
    assert f["progress_acc"] is None and f["completion_f1"] is None and f["contrastive_acc"] is None
    assert f["preference_acc"] == 0.5 and f["spearman_reward"] is None
    table = format_table(res)
    assert "n/a" in table and "oracle" in table and "progress acc @±0.2" in table
    tags = scalar_items(res)
    assert tags["eval_reward/oracle/progress_acc@0.2"] == 1.0 and "eval_reward/flat/completion_f1" not in tags


def test_metric_functions_on_hand_made_numbers(tmp_path):
    acc = progress_accuracy([0.1, 0.5, 0.9, 1.0], [0.0, 0.5, 0.5, 0.75], [0.05, 0.1, 0.25, 0.5])
    np.testing.assert_allclose(acc, [0.25, 0.5, 0.75, 1.0])
    assert precision_recall_f1(tp=3, fp=1, fn=3) == pytest.approx((0.75, 0.5, 0.6))
    assert rank_correlation([1, 2, 3, 4], [10, 20, 15, 40]) == pytest.approx(0.8)
    assert np.isnan(rank_correlation([1, 2, 3], [5, 5, 5]))
    res = {"a": {"progress_acc": {0.1: 0.2, 0.2: 0.6}}, "b": {"progress_acc": None}}
    plot_accuracy_curves(res, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


class _Recorder(Scorer):
    """Test scorer recording the items it gets; reward = mean brightness of the last frame."""

    name = "recorder"
    item_kind = ItemKind.WINDOW

    def __init__(self, kind, k=None):
        super().__init__(None)
        self.kind, self.k, self.items = kind, k, []

    @property
    def item_kind(self):
        return self.kind

    @property
    def frames_per_item(self):
        return self.k

    def score_batch(self, tasks, items):
        self.items.extend(items)
        return [ScoreResult(reward=float(it[-1].mean()), components={"progress": 0.5}) for it in items]


@pytest.mark.parametrize("kind, k, shape", [(ItemKind.FRAME, 1, 1), (ItemKind.PAIR, 2, 2), (ItemKind.WINDOW, None, 3)])
def test_scorer_predictor_builds_the_right_items(synthetic_dataset, kind, k, shape):
    ep = next(iter_episodes(synthetic_dataset))
    sc = _Recorder(kind, k)
    a, b = np.array([0, 5]), np.array([3, 1])
    pred = scorer_predictor(sc, batch_size=4, window_size=3)(ep, a, b)
    n = len(ep.frames)
    per_frame = sc.items[:n]
    assert all(it.shape[0] == shape for it in per_frame)
    np.testing.assert_array_equal(per_frame[7][-1], ep.frames[7])  # the item ends at its own frame
    if shape > 1:
        np.testing.assert_array_equal(per_frame[7][0], ep.frames[7 - shape + 1])
        np.testing.assert_array_equal(per_frame[0][0], ep.frames[0])  # padded at the start
    assert pred.progress is not None and pred.completion is None and pred.contrastive is None
    assert len(sc.items) == n + (2 if kind == ItemKind.PAIR else 0)  # PAIR scorers also see the random pairs
