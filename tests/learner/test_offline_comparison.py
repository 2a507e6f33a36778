"""benchmarks/offline_comparison.py: the toy frames dataset, labelling through local workers, the table.

Fast parts only (no IQL): the full pipeline is the benchmark's ``--quick`` run (minutes; RESULTS.md).
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks import offline_comparison as oc
from vlmrl.envs.offline_readers import open_reader
from vlmrl.envs.toy_reach_dataset import record_toy_episode
from vlmrl.learner.labels.labelling import read_labelled


def test_toy_frames_dataset_matches_recording(tmp_path):
    ds = oc.write_toy_frames_dataset(tmp_path / "ds", 3, frame_size=32)
    with open_reader(ds) as r:
        assert len(r) == 3
        ep = r.load(2)
    ref = record_toy_episode(seed=2, source="random", task_text=ep.task)
    np.testing.assert_allclose(ep.states, ref.states)
    assert ep.frames.shape == (ep.num_steps + 1, 32, 32, 3) and ep.frames.std() > 0


def test_label_compact_lrm_row_and_table(tmp_path):
    ds = oc.write_toy_frames_dataset(tmp_path / "ds", 3)
    a = argparse.Namespace(compact_lrm=str(oc.random_compact_lrm(tmp_path / "lrm")), device="cpu", max_episodes=0,
                           max_new_tokens=0)
    info = oc.label("compact_lrm", str(ds), tmp_path / "lab", a, quick=True)
    t = read_labelled(tmp_path / "lab")
    assert info["item_kind"] == "pair" and t.num_rows == info["frames"] > 0
    r = np.asarray(t.column("reward").to_pylist()) - np.asarray(t.column("success_reward").to_pylist())
    np.testing.assert_allclose(r, t.column("r_vlm").to_pylist(), atol=1e-6)  # vlm + sparse

    def ev(ss, us, sr, ur):
        return {"splits": {"seen": {"success_rate": ss, "return_mean": sr},
                           "unseen": {"success_rate": us, "return_mean": ur}}}

    rows = oc.aggregate({"sparse": [ev(0.5, 0.25, 2.0, 1.0)], "clip": [ev(0.4, 0.4, 1.0, 1.0)]})
    assert rows[0]["drop_success_pct"] == 50.0 and rows[0]["return_ratio_vs_clip"] == 2.0
    assert "2.00x" in oc.markdown(rows)
