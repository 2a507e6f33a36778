"""``vlmrl offline`` CLI: bad configs and data are refused with a one-line error before Ray starts."""

from __future__ import annotations

from vlmrl.envs.toy_reach_dataset import write_toy_dataset
from vlmrl.system.cli import main


def test_offline_without_a_dataset_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("offline:\n  iterations: 1\n")  # no dataset
    assert main(["offline", str(cfg), f"output_dir={tmp_path}"]) == 2
    assert "offline.dataset is required" in capsys.readouterr().err


def test_offline_vlm_reward_on_an_unlabelled_dataset_is_refused(tmp_path, capsys):
    ds = write_toy_dataset(tmp_path / "toy", 2, max_steps=5)
    assert main(["offline", f"output_dir={tmp_path}", f"offline.dataset={ds}", "offline.reward=vlm"]) == 2
    err = capsys.readouterr().err
    assert "needs VLM labels" in err and "vlmrl label" in err


def test_offline_bad_hyperparameter_is_refused(tmp_path, capsys):
    assert main(["offline", f"output_dir={tmp_path}", "offline.dataset=x", "offline.expectile=1.5"]) == 2
    assert "offline.expectile must be in (0, 1)" in capsys.readouterr().err
