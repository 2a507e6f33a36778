"""Offline labelling (``vlmrl label``): window items, label values, shards, crash-resume, reward cache,
failover when a worker dies, the tiny-VLM window scorer, and the CLI.

Label-correctness tests use real gRPC ServerThreads running the ``synthetic`` scorer in window mode,
whose reward is exactly mean pixel / 255 of the item, so each label can be recomputed here.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from vlmrl.envs.dataset import EpisodeWriter
from vlmrl.envs.offline_readers import open_reader
from vlmrl.envs.synthetic_episodes import make_synthetic_episode
from vlmrl.learner.labels.labelling import (SCHEMA, LabellingError, LabelSettings, calibrate_score_range, label_dataset,
                                     read_labelled, state_frame_index, step_items)
from vlmrl.reward_workers.client import RewardClient
from vlmrl.reward_workers.scorers import build_scorer
from vlmrl.reward_workers.server import ServerThread
from vlmrl.system.config import ServerConfig

W = 4


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """10 synthetic episodes of 9..13 steps, 16x16 frames at every step."""
    root = tmp_path_factory.mktemp("label_ds")
    w = EpisodeWriter(root)
    for i in range(10):
        w.write(make_synthetic_episode(seed=100 + i, source=("demo", "noisy_demo", "random")[i % 3],
                                       num_steps=9 + i % 5, image_size=16))
    return root


def servers(n, window=W, cache_size=0, **params):
    out = []
    for i in range(n):
        p = {"item_kind": "window", "window": window, "fixed_ms": 0.0, "per_item_ms": 0.0, **params}
        st = ServerThread(OmegaConf.merge(OmegaConf.structured(ServerConfig), {"cache_size": cache_size}),
                          build_scorer("synthetic", p), f"w{i}")
        st.start()
        out.append(st)
    return out


def settings(**kw):
    base = dict(dataset="x", item_kind="window", window_size=W, w_vlm=0.7, w_env=2.0, success_reward=1.0,
                episodes_per_shard=3, scorer="synthetic")
    return LabelSettings(**{**base, **kw})


def run(dataset, sts, out, s=None, **kw):
    with RewardClient(None, addresses=[st.address for st in sts], scorer="synthetic") as client:
        return label_dataset(open_reader(dataset), client, s or settings(), out, **kw)


def expected_rows(dataset, s):
    """Independent recomputation of every label (frames at every step here)."""
    rows = []
    for ep in open_reader(dataset):
        for t in range(ep.num_steps):
            window = np.stack([ep.frames[max(j, 0)] for j in range(t + 2 - s.window_size, t + 2)])
            r_vlm = window.astype(np.float64).mean() / 255.0
            succ = bool(ep.success[t + 1])
            rows.append((ep.episode_id, t, r_vlm, s.w_vlm * r_vlm + s.w_env * (s.success_reward if succ else 0.0), succ))
    return rows


def test_step_items_pad_with_first_frame_and_follow_strided_frames():
    steps = np.arange(6)  # frames at every state 0..5, T = 5
    np.testing.assert_array_equal(step_items(steps, 5, "window", 4)[:3], [[0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3]])
    np.testing.assert_array_equal(step_items(steps, 5, "pair", 4), [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    np.testing.assert_array_equal(step_items(steps, 5, "frame", 4)[:, 0], [1, 2, 3, 4, 5])
    strided = np.array([0, 3, 6, 7])  # frame every 3 steps plus the last state, T = 7
    np.testing.assert_array_equal(state_frame_index(strided, 7), [0, 0, 0, 1, 1, 1, 2, 3])
    np.testing.assert_array_equal(step_items(strided, 7, "window", 4)[[0, 2, 5, 6]],
                                  [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3]])
    with pytest.raises(LabellingError, match="no frames"):
        step_items(np.zeros(0, np.int32), 3, "window", 4)
    with pytest.raises(LabellingError, match="window_size must be one of"):
        settings(window_size=5)


def test_labels_are_the_window_reward_combined_with_the_env_reward(small_dataset, tmp_path):
    sts = servers(2)
    try:
        s = settings()
        report = run(small_dataset, sts, tmp_path / "out", s, prefetch_shards=2, max_items_in_flight=16, request_items=5)
    finally:
        for st in sts:
            st.stop(0.5)
    table = read_labelled(tmp_path / "out")
    assert table.schema == SCHEMA
    exp = expected_rows(small_dataset, s)
    assert table.num_rows == len(exp) == report.steps and report.shards_total == 4 and report.shards_labelled == 4
    d = table.to_pydict()
    assert list(zip(d["episode_id"], d["step"])) == [(e[0], e[1]) for e in exp]
    np.testing.assert_allclose(d["r_vlm"], [e[2] for e in exp], atol=1e-6)
    np.testing.assert_allclose(d["r_vlm_raw"], d["r_vlm"], atol=1e-7)
    np.testing.assert_allclose(d["reward"], [e[3] for e in exp], atol=1e-5)
    assert d["success"] == [e[4] for e in exp] == d["terminal"]
    assert any(d["success"]) and not all(d["success"])
    assert set(d["scorer"]) == {"synthetic"} and set(d["model_version"]) == {"synthetic-1"}
    assert set(d["item_kind"]) == {"window"} and set(d["window_size"]) == {W} and not any(d["cached"])
    ep0 = next(iter(open_reader(small_dataset)))
    np.testing.assert_allclose(d["state"][0], ep0.states[0]) and np.testing.assert_allclose(d["action"][1], ep0.actions[1])
    assert d["item_frame_steps"][0] == [0, 0, 0, 1] and d["is_first"][0] and d["is_last"][ep0.num_steps - 1]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows"] == table.num_rows and len(manifest["shards"]) == 4


def test_a_calibrated_reward_range_maps_the_raw_scores_onto_0_1(small_dataset, tmp_path):
    """calibrate_score_range -> label.vlm_reward_min/max: r_vlm = clip((raw - lo) / (hi - lo), 0, 1), raw kept."""
    scorer = build_scorer("synthetic", {"item_kind": "window", "window": W, "fixed_ms": 0.0, "per_item_ms": 0.0})
    with open_reader(small_dataset) as reader:
        lo, hi = calibrate_score_range(reader, scorer, episodes=3, window_size=W)
    raw_first_shard = [e[2] for e in expected_rows(small_dataset, settings()) if e[0] in
                       {ep.episode_id for ep, _ in zip(open_reader(small_dataset), range(3))}]
    np.testing.assert_allclose([lo, hi], np.percentile(raw_first_shard, [5, 95]), atol=1e-6)
    sts = servers(1)
    try:
        s = settings(vlm_reward_min=lo, vlm_reward_max=hi)
        run(small_dataset, sts, tmp_path / "out", s)
    finally:
        sts[0].stop(0.5)
    d = read_labelled(tmp_path / "out").to_pydict()
    raw = np.array([e[2] for e in expected_rows(small_dataset, s)])
    np.testing.assert_allclose(d["r_vlm_raw"], raw, atol=1e-6)
    r = np.array(d["r_vlm"])
    np.testing.assert_allclose(r, np.clip((raw - lo) / (hi - lo), 0.0, 1.0), atol=1e-6)
    assert r.min() == 0.0 and r.max() == 1.0 and np.any((r > 0) & (r < 1))  # clipped at both ends, linear between
    np.testing.assert_allclose(d["reward"], s.w_vlm * r + s.w_env * np.array(d["success"], float), atol=1e-5)
    with pytest.raises(LabellingError, match="percentiles must be"):
        calibrate_score_range(open_reader(small_dataset), scorer, percentiles=(95, 5))


def test_crash_after_k_shards_then_resume_equals_an_uninterrupted_run(small_dataset, tmp_path):
    sts = servers(1)
    try:
        run(small_dataset, sts, tmp_path / "ref")

        def crash(k):
            if k == 1:
                raise RuntimeError("simulated crash")

        with pytest.raises(RuntimeError, match="simulated crash"):
            run(small_dataset, sts, tmp_path / "out", on_shard_committed=crash)
        shard_dir = tmp_path / "out" / "shards"
        done = sorted(p.name for p in shard_dir.glob("*.done.json"))
        assert done == ["shard-00000.done.json", "shard-00001.done.json"]
        assert not (tmp_path / "out" / "manifest.json").exists()
        before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in shard_dir.glob("shard-0000[01]*")}
        ids_before = pq.read_table(shard_dir / "shard-00001.parquet").column("episode_id").to_pylist()
        seen = []
        report = run(small_dataset, sts, tmp_path / "out", on_shard_committed=seen.append)
        assert seen == [2, 3] and report.shards_skipped == 2 and report.shards_labelled == 2
        after = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in shard_dir.glob("shard-0000[01]*")}
        assert after == before  # finished shards untouched
        assert pq.read_table(shard_dir / "shard-00001.parquet").column("episode_id").to_pylist() == ids_before
        assert read_labelled(tmp_path / "out").equals(read_labelled(tmp_path / "ref"))
        # other settings into the same folder are refused
        with pytest.raises(LabellingError, match=r"other settings \(differ in \['w_env'\]\)"):
            run(small_dataset, sts, tmp_path / "out", settings(w_env=0.0))
    finally:
        for st in sts:
            st.stop(0.5)


def test_rerun_with_the_same_model_version_hits_the_reward_cache(small_dataset, tmp_path):
    sts = servers(1, cache_size=100_000)
    try:
        first = run(small_dataset, sts, tmp_path / "a")
        info1 = sts[0].info().stats
        assert info1.cache_hits == 0 and info1.cache_misses == first.items_scored
        second = run(small_dataset, sts, tmp_path / "b")
        info2 = sts[0].info().stats
    finally:
        for st in sts:
            st.stop(0.5)
    assert info2.cache_hits == second.items_scored == second.cached_items and info2.batches == info1.batches
    a, b = read_labelled(tmp_path / "a"), read_labelled(tmp_path / "b")
    assert all(b.column("cached").to_pylist())
    assert a.drop_columns(["cached"]).equals(b.drop_columns(["cached"]))


def test_a_worker_dying_mid_labelling_loses_no_row(small_dataset, tmp_path):
    ref = servers(1)
    try:
        run(small_dataset, ref, tmp_path / "ref")
    finally:
        ref[0].stop(0.5)
    sts = servers(2, fixed_ms=2.0, per_item_ms=3.0)
    stats = {}

    def kill_w0(k):
        if k == 0:
            sts[0].stop(0.0)  # cancels what w0 is scoring; the client resends it to w1

    try:
        with RewardClient(None, addresses=[st.address for st in sts], scorer="synthetic") as client:
            label_dataset(open_reader(small_dataset), client, settings(), tmp_path / "out",
                          on_shard_committed=kill_w0, prefetch_shards=3, request_items=4)
            stats = client.stats()
    finally:
        for st in sts:
            st.stop(0.5)
    assert stats["failures"] == 0 and stats["retries"] >= 1
    assert read_labelled(tmp_path / "out").equals(read_labelled(tmp_path / "ref"))


def test_window_scorer_on_the_tiny_vlm(tiny_vlm_dir, tmp_path):
    import torch

    torch.set_num_threads(1)
    root = tmp_path / "ds"
    w = EpisodeWriter(root)
    for i in range(2):
        w.write(make_synthetic_episode(seed=i, num_steps=3, image_size=28))
    scorer = build_scorer("window", {"model": tiny_vlm_dir, "window_size": 4, "max_new_tokens": 3})
    st = ServerThread(OmegaConf.structured(ServerConfig), scorer, "w0")
    st.start()
    try:
        with RewardClient(None, addresses=[st.address], scorer="window") as client:
            s = settings(scorer="window", prompt_variant="two_stage", w_vlm=1.0, w_env=0.5)
            label_dataset(open_reader(root), client, s, tmp_path / "out")
            # the same windows scored directly by the scorer give the same labels
            direct = []
            for ep in open_reader(root):
                items = [ep.frames[idx] for idx in step_items(ep.frame_steps, ep.num_steps, "window", 4)]
                direct += [r.reward for r in scorer.score_batch([ep.task] * len(items), items)]
    finally:
        st.stop(0.5)
    d = read_labelled(tmp_path / "out").to_pydict()
    assert len(d["step"]) == 6 and set(d["prompt_variant"]) == {"two_stage"} and set(d["scorer"]) == {"window"}
    assert all(v.endswith("-p1") for v in d["model_version"])
    np.testing.assert_allclose(d["r_vlm"], direct, atol=1e-4)
    assert all(0.0 <= r <= 1.0 for r in d["r_vlm"])
    np.testing.assert_allclose(d["reward"], np.array(d["r_vlm"]) + 0.5 * np.array(d["success"], float), atol=1e-6)


def test_label_cli_with_local_workers(small_dataset, tmp_path, capsys):
    from vlmrl.system.cli import main

    out = tmp_path / "cli"
    args = ["label", f"label.input.path={small_dataset}", f"label.output_dir={out}", "label.workers=local",
            "pool.num_workers=2", "scorer.name=synthetic", "scorer.params.item_kind=window", "scorer.params.window=8",
            "label.progress=false", "server.cache_size=1000", "label.max_episodes=4", "label.episodes_per_shard=2"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "frames/s" in text and "shards: 2 labelled, 0 already done of 2" in text
    t = read_labelled(out)
    assert t.num_rows == sum(e.num_steps for e in list(open_reader(small_dataset))[:4])
    assert set(t.column("window_size").to_pylist()) == {8} and (out / "config.yaml").exists()
    assert main(args) == 0  # rerun: nothing left to do
    assert "shards: 0 labelled, 2 already done of 2" in capsys.readouterr().out
    # other scorer params (e.g. another model or score range) must not mix their labels into this folder
    assert main([*args, "scorer.params.per_item_ms=0.5"]) == 1
    assert "differ in ['scorer_params']" in capsys.readouterr().err
    assert main(["label", f"label.input.path={tmp_path / 'missing'}", "label.workers=local"]) == 2
    assert "cannot read" in capsys.readouterr().err
