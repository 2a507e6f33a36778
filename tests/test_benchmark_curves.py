"""benchmarks/online_learning.py: a finished run's learning curves summarised per 20k-step block (what RESULTS.md
reports beside greedy success), read back from the run's TensorBoard events."""

from __future__ import annotations

import pytest

from benchmarks.online_learning import by_block, curve_summary


def test_by_block_groups_steps_into_blocks_by_their_last_step():
    # logged at the END of each 2,000-step iteration: step 20,000 closes block 0, step 20,001.. opens block 1
    sc = {"t": [(2000, 0.0), (20000, 1.0), (22000, 0.5), (40000, 0.25), (42000, 0.75)]}
    assert by_block(sc, "t") == [0.5, 0.375, 0.75]
    assert by_block(sc, "t", block_steps=100_000) == [pytest.approx(0.5)]
    assert by_block(sc, "missing") == []


def test_curve_summary_reads_success_and_reward_correlation_from_tensorboard(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb"))
    for it in range(1, 21):  # 20 iterations x 2,000 steps = 2 blocks
        step = it * 2000
        w.add_scalar("charts/gt_success_rate", 0.1 if it <= 10 else 0.3, step)
        w.add_scalar("reward/pearson_frame_score_vs_dense", -0.4 if it == 3 else 0.6, step)
    w.close()
    out = curve_summary(tmp_path)
    assert out["train_success_by_20k_block"] == [pytest.approx(0.1), pytest.approx(0.3)]
    assert out["pearson_score_vs_dense_by_20k_block"] == [pytest.approx(0.5), pytest.approx(0.6)]
    assert out["pearson_score_vs_dense_min"] == pytest.approx(-0.4)


def test_curve_summary_of_an_env_reward_run_has_no_correlation(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb"))
    w.add_scalar("charts/gt_success_rate", 0.2, 2000)
    w.close()
    assert curve_summary(tmp_path) == {"train_success_by_20k_block": [pytest.approx(0.2)]}
