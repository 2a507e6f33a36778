"""Offline learner: conversion to RLlib rows, task-text embedding connector, a tiny IQL run with evaluation.

One Ray instance for the whole module (the IQL run); the other tests need no Ray.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from vlmrl.envs.dataset import iter_episodes
from vlmrl.envs.toy_reach_dataset import TOY_TEXTS, write_toy_dataset
from vlmrl.learner.offline.offline_conversion import DATA_FILE, ConversionError, RewardSpec, convert_offline_dataset


NAMESPACE = "vlmrl-test-offline"  # Ray namespace of this module's ray_local


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    """24 ToyReach episodes (demo / noisy_demo / random cycled, <= 20 steps)."""
    return write_toy_dataset(tmp_path_factory.mktemp("toy_ds"), 24, max_steps=20)


@pytest.fixture(scope="module")
def labelled_dataset(tmp_path_factory):
    """6 synthetic episodes labelled by the real ``vlmrl label`` (in-process synthetic window scorer)."""
    from vlmrl.envs.synthetic_episodes import write_synthetic_dataset
    from vlmrl.system.cli import main

    src = write_synthetic_dataset(tmp_path_factory.mktemp("synth"), 6, num_steps=10, image_size=16)
    out = tmp_path_factory.mktemp("labelled") / "l"
    assert main(["label", f"label.input.path={src}", f"label.output_dir={out}", "label.workers=local",
                 "pool.num_workers=1", "scorer.name=synthetic", "scorer.params.item_kind=window",
                 "scorer.params.window=4", "label.window_size=4", "label.progress=false",
                 "label.w_vlm=0.5", "label.w_env=2.0"]) == 0
    return out


def _rows(out_dir):
    return pq.read_table(out_dir / DATA_FILE).to_pylist()


def test_episode_dataset_round_trip_sparse_rewards_done_flags_and_next_obs(toy_dataset, tmp_path):
    s = convert_offline_dataset(toy_dataset, tmp_path, RewardSpec(reward="env_sparse", success_reward=2.0))
    rows = _rows(tmp_path)
    eps = list(iter_episodes(toy_dataset))
    assert s.num_rows == len(rows) == sum(e.num_steps for e in eps) and s.num_episodes == 24
    assert (s.state_dim, s.action_dim) == (6, 2)
    i = 0
    for ep in eps:
        T = ep.num_steps
        mine = rows[i:i + T]
        i += T
        assert len({r["eps_id"] for r in mine}) == 1 and "_" not in mine[0]["eps_id"]
        np.testing.assert_allclose([r["obs"] for r in mine], ep.states[:-1], rtol=1e-6)
        np.testing.assert_allclose([r["new_obs"] for r in mine], ep.states[1:], rtol=1e-6)
        for a, b in zip(mine[:-1], mine[1:]):  # next_obs of step t is obs of step t+1
            assert a["new_obs"] == b["obs"]
        np.testing.assert_allclose([r["rewards"] for r in mine], 2.0 * ep.success[1:])
        assert [r["terminateds"] for r in mine] == list(ep.success[1:])
        assert [r["truncateds"] for r in mine] == [False] * (T - 1) + [not ep.success[-1]]
        assert {r["infos"]["task_text"] for r in mine} == {ep.task}
        assert np.abs(np.array([r["actions"] for r in mine])).max() <= 0.999 + 1e-6
    assert any(e.succeeded for e in eps) and any(not e.succeeded for e in eps)


def test_dense_reward_is_the_datasets_own(toy_dataset, tmp_path):
    convert_offline_dataset(toy_dataset, tmp_path, RewardSpec(reward="env_dense"), max_episodes=3)
    rows = _rows(tmp_path)
    eps = list(iter_episodes(toy_dataset))[:3]
    np.testing.assert_allclose([r["rewards"] for r in rows], np.concatenate([e.rewards for e in eps]), rtol=1e-6)


def test_vlm_rewards_on_an_unlabelled_dataset_are_refused(toy_dataset, tmp_path):
    with pytest.raises(ConversionError, match="needs VLM labels"):
        convert_offline_dataset(toy_dataset, tmp_path, RewardSpec(reward="vlm+sparse"))
    with pytest.raises(ConversionError, match="must be one of"):
        RewardSpec(reward="dense-ish")
    with pytest.raises(ConversionError, match="neither a labelled dataset"):
        convert_offline_dataset(tmp_path, tmp_path / "o", RewardSpec())


@pytest.mark.parametrize("reward", ["env_sparse", "vlm", "vlm+sparse", "vlm_progress+sparse", "labelled"])
def test_labelled_dataset_reward_column_is_chosen_by_config(labelled_dataset, tmp_path, reward):
    from vlmrl.learner.labels.labelling import read_labelled

    src = read_labelled(labelled_dataset).to_pylist()
    s = convert_offline_dataset(labelled_dataset, tmp_path, RewardSpec(reward=reward, vlm_weight=3.0, sparse_weight=0.5))
    rows = _rows(tmp_path)
    assert s.source_format == "labelled" and len(rows) == len(src)
    sparse = np.array([1.0 if r["success"] else 0.0 for r in src])
    r_vlm = np.array([r["r_vlm"] for r in src])
    # progress differences within an episode; the first step's predecessor is 0 (no label for the first state)
    before = np.array([p["r_vlm"] if p["episode_id"] == r["episode_id"] and p["step"] == r["step"] - 1 else 0.0
                       for p, r in zip([{"episode_id": None, "step": None}] + src[:-1], src)])
    expected = {"env_sparse": sparse, "vlm": r_vlm, "vlm+sparse": 3.0 * r_vlm + 0.5 * sparse,
                "vlm_progress+sparse": 3.0 * (r_vlm - before) + 0.5 * sparse,
                "labelled": np.array([r["reward"] for r in src])}[reward]
    np.testing.assert_allclose([r["rewards"] for r in rows], expected, rtol=1e-5)
    np.testing.assert_allclose([r["reward"] for r in src], 0.5 * r_vlm + 2.0 * sparse, rtol=1e-5)  # label's own mix
    assert r_vlm.std() > 0  # the scorer reward varies, so the choice matters
    if reward == "vlm_progress+sparse":  # an episode's VLM return telescopes to its last progress
        last = {r["episode_id"]: r["r_vlm"] for r in src}
        vlm_return = {}
        for r, row in zip(src, rows):
            vlm_return[r["episode_id"]] = vlm_return.get(r["episode_id"], 0.0) + row["rewards"] - 0.5 * r["success"]
        np.testing.assert_allclose([vlm_return[e] for e in last], [3.0 * v for v in last.values()], atol=1e-4)
        assert len(last) > 1
    assert [r["terminateds"] for r in rows] == [r["success"] for r in src]
    assert [r["truncateds"] for r in rows] == [r["is_last"] and not r["success"] for r in src]
    assert [r["new_obs"] for r in rows] == [r["next_state"] for r in src]
    assert [r["infos"]["task_text"] for r in rows] == [r["task"] for r in src]


def test_task_embedding_connector_appends_the_minilm_embedding_per_task_text():
    import gymnasium as gym
    from ray.rllib.core.columns import Columns
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from vlmrl.learner.offline.task_embedding_connector import AppendTaskEmbedding, append_embedding, build_embedding_table

    texts = [TOY_TEXTS["seen"][0], TOY_TEXTS["unseen"][0]]
    table = build_embedding_table(texts)
    assert {t: v.shape for t, v in table.items()} == {t: (384,) for t in texts}
    assert np.linalg.norm(table[texts[0]] - table[texts[1]]) > 0.1
    conn = AppendTaskEmbedding(gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Box(-1, 1, (2,), np.float32),
                               table=table)
    assert conn.observation_space.shape == (3 + 384,)
    state, nxt = np.array([0.1, 0.2, 0.3], np.float32), np.array([0.4, 0.5, 0.6], np.float32)
    eps = [SingleAgentEpisode(id_=f"ep-{i}", observations=[state, nxt], actions=[np.zeros(2, np.float32)],
                              rewards=[0.0], infos=[{}, {"task_text": t}], terminated=True, len_lookback_buffer=0)
           for i, t in enumerate(texts)]
    batch = conn(rl_module=None, batch={}, episodes=eps, shared_data={})
    ids = [e.id_ for e in eps]
    assert ids == ["ep-0_0", "ep-1_1"]  # ids made unique per row (rows of one episode share an id)
    obs = [np.asarray(batch[Columns.OBS][(i,)][0]).reshape(-1) for i in ids]
    new = [np.asarray(batch[Columns.NEXT_OBS][(i,)][0]).reshape(-1) for i in ids]
    for o, n, t in zip(obs, new, texts):
        np.testing.assert_allclose(o, np.concatenate([state, table[t]]), atol=1e-6)
        np.testing.assert_allclose(n, np.concatenate([nxt, table[t]]), atol=1e-6)
    assert not np.allclose(obs[0], obs[1])  # same state, different task text -> different input
    np.testing.assert_allclose(append_embedding(state[None], [texts[1]], table)[0], obs[1], atol=1e-6)
    with pytest.raises(KeyError, match="no task embedding for task text 'fly'"):
        append_embedding(state[None], ["fly"], table)


def test_tiny_iql_run_trains_checkpoints_logs_and_evaluates_seen_and_unseen(toy_dataset, tmp_path, ray_local):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vlmrl.learner.offline.offline_trainer import OfflineTrainer
    from vlmrl.system.config import load_config

    cfg = load_config("offline_toy", [
        f"output_dir={tmp_path}", f"offline.dataset={toy_dataset}", "offline.iterations=2",
        "offline.updates_per_iteration=3", "offline.batch_size=32", "offline.hidden=[32,32]", "offline.beta=3.0",
        "offline.eval_every=0", "offline.eval_episodes=2", "offline.checkpoint_every=0", "env.max_episode_steps=10"])
    lines = []
    trainer = OfflineTrainer(cfg, tmp_path / "offline_toy", print_fn=lines.append)
    assert trainer.run() == 0
    run = tmp_path / "offline_toy"
    assert (run / "checkpoints" / "iter_000002").is_dir()
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["iteration"] == 2
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("losses/value_loss", "losses/qf_loss", "losses/policy_loss", "values/value_mean",
                "values/awr_weight_mean", "charts/updates_per_s", "eval/seen_success_rate",
                "eval/unseen_success_rate", "eval/seen_return"):
        assert tag in tags, tag
        assert all(math.isfinite(e.value) for e in acc.Scalars(tag))
    assert len(acc.Scalars("losses/qf_loss")) == 2
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["splits"]) == {"seen", "unseen"}
    for split, texts in (("seen", TOY_TEXTS["seen"]), ("unseen", TOY_TEXTS["unseen"])):
        sp = ev["splits"][split]
        assert sp["episodes"] == 2 and 0.0 <= sp["success_rate"] <= 1.0 and 0 < sp["length_mean"] <= 10
        assert set(sp["per_text"]) == set(texts[:2])
    assert any(line.startswith("iter 2/2") for line in lines)


def _resume_cfg(tmp_path, toy_dataset, *extra):
    from vlmrl.system.config import load_config

    return load_config("offline_toy", [
        f"output_dir={tmp_path}", f"offline.dataset={toy_dataset}", "offline.updates_per_iteration=2",
        "offline.batch_size=32", "offline.hidden=[16,16]", "offline.eval_every=0", "offline.eval_episodes=1",
        "offline.eval_splits=[seen]", "offline.checkpoint_every=0", "env.max_episode_steps=5", *extra])


def _learner_state(trainer):
    """(module weights, optimizer state) of the local learner, as numpy / plain values."""
    state = trainer.algo.learner_group.get_state()["learner"]
    return state["rl_module"]["default_policy"], state["optimizer"]


def _assert_same(a, b, where="state"):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}/{i}")
    elif hasattr(a, "shape") or isinstance(a, (int, float)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    else:
        assert a == b, where


def _adam_steps(optimizer_state):
    return {name: float(opt["state"]["state"][0]["step"]) for name, opt in optimizer_state.items()}


def test_offline_resume_without_a_checkpoint_is_a_clear_error(toy_dataset, tmp_path, capsys):
    from vlmrl.learner.offline.offline_trainer import OfflineTrainer
    from vlmrl.system.cli import main

    cfg = _resume_cfg(tmp_path, toy_dataset, "offline.resume=true")
    with pytest.raises(ValueError, match=r"offline.resume=true but .*latest.json does not exist"):
        OfflineTrainer(cfg, tmp_path / "offline_toy")
    assert main(["offline", "offline_toy", f"output_dir={tmp_path}", f"offline.dataset={toy_dataset}",
                 "offline.resume=true"]) == 2
    assert "offline.resume=true but" in capsys.readouterr().err
    ck = tmp_path / "offline_toy" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "latest.json").write_text(json.dumps({"iteration": 2, "path": str(ck / "iter_000002")}))
    with pytest.raises(ValueError, match="iter_000002 named by .* does not exist"):
        OfflineTrainer(cfg, tmp_path / "offline_toy")


def test_offline_resume_restores_weights_optimizer_and_counters_and_continues(toy_dataset, tmp_path, ray_local):
    """N=2 iterations with a checkpoint, then offline.resume=true up to 2N: the restored learner equals the
    checkpointed one (weights and Adam state), iterations / learner updates / TensorBoard steps continue."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vlmrl.learner.offline.offline_trainer import OfflineTrainer

    run, n, upi = tmp_path / "offline_toy", 2, 2
    seen = {}

    def capture_at_close(trainer, key):
        close = trainer.close

        def wrapped():
            if trainer.algo is not None:
                seen[key] = _learner_state(trainer)
            close()
        trainer.close = wrapped

    lines1 = []
    t1 = OfflineTrainer(_resume_cfg(tmp_path, toy_dataset, f"offline.iterations={n}"), run, print_fn=lines1.append)
    capture_at_close(t1, "end1")
    assert t1.run() == 0
    latest1 = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert (latest1["iteration"], latest1["updates"]) == (n, n * upi) and latest1["transitions"] > 0

    lines2 = []
    t2 = OfflineTrainer(_resume_cfg(tmp_path, toy_dataset, f"offline.iterations={2 * n}", "offline.resume=true"),
                        run, print_fn=lines2.append)
    restore = t2._restore

    def restore_and_capture():
        restore()
        seen["restored"] = _learner_state(t2)
        seen["algo_iteration"] = t2.algo.training_iteration
    t2._restore = restore_and_capture
    capture_at_close(t2, "end2")
    assert t2.run() == 0

    _assert_same(seen["restored"][0], seen["end1"][0], "weights")
    _assert_same(seen["restored"][1], seen["end1"][1], "optimizer")
    assert seen["algo_iteration"] == n
    assert set(_adam_steps(seen["restored"][1]).values()) == {n * upi}  # each optimizer: one step per update
    assert set(_adam_steps(seen["end2"][1]).values()) == {2 * n * upi}
    assert any(line.startswith(f"resumed from {run / 'checkpoints' / 'iter_000002'}") for line in lines2)
    assert [line.split(" |")[0] for line in lines2 if line.startswith("iter ")] == ["iter 3/4", "iter 4/4"]
    latest2 = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert (latest2["iteration"], latest2["updates"]) == (2 * n, 2 * n * upi)
    assert latest2["transitions"] == 2 * latest1["transitions"]
    assert (run / "checkpoints" / "iter_000002").is_dir() and (run / "checkpoints" / "iter_000004").is_dir()
    assert json.loads((run / "eval.json").read_text())["iteration"] == 2 * n
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("losses/qf_loss")] == [1, 2, 3, 4]
    assert [e.value for e in acc.Scalars("charts/learner_updates")] == [2.0, 4.0, 6.0, 8.0]

    lines3 = []  # already at the configured total: nothing is built
    assert OfflineTrainer(_resume_cfg(tmp_path, toy_dataset, f"offline.iterations={2 * n}", "offline.resume=true"),
                          run, print_fn=lines3.append).run() == 0
    assert lines3 == ["already at iteration 4 of 4; nothing to do"]


def test_iql_values_learn_the_sparse_terminal_reward(toy_dataset, tmp_path, ray_local):
    """Reward 1.0 on the terminal (success) transitions, 0 elsewhere: after one iteration of many learner
    updates, V of the rewarded states and of the states one step before them is clearly positive.

    Regression: RLlib 2.60 Polyak-updates IQL's target Q nets once per ``Learner.update()`` call (=
    once per iteration, after all its mini-batches), so V -- regressed onto the target Q -- stayed at the
    random initial target's output (~0) however many updates ran; AwrIQLTorchLearner syncs per update."""
    import pyarrow.parquet as pq
    import torch
    from ray.rllib.core.columns import Columns

    from vlmrl.learner.offline.offline_conversion import DATA_FILE
    from vlmrl.learner.offline.offline_trainer import OfflineTrainer
    from vlmrl.system.config import load_config

    updates = 150
    cfg = load_config("offline_toy", [
        f"output_dir={tmp_path}", f"offline.dataset={toy_dataset}", "offline.iterations=1",
        f"offline.updates_per_iteration={updates}", "offline.batch_size=128", "offline.hidden=[32,32]",
        "offline.text_embedding=none", "offline.tau=0.1", "offline.critic_lr=3e-3", "offline.value_lr=3e-3",
        "offline.eval_episodes=1", "offline.eval_splits=[seen]", "env.max_episode_steps=2"])
    trainer = OfflineTrainer(cfg, tmp_path / "offline_toy", print_fn=lambda line: None)
    seen = {}
    close = trainer.close

    def capture_at_close():
        if trainer.algo is not None:
            module = trainer.trained_module()
            rows = pq.read_table(trainer.run_dir / "data" / DATA_FILE).to_pydict()
            with torch.no_grad():
                obs = torch.tensor(np.asarray(rows["obs"], np.float32))
                seen["v"] = module.compute_values({Columns.OBS: obs}).numpy()
            seen["rows"] = rows
        close()
    trainer.close = capture_at_close
    assert trainer.run() == 0

    rows, v = seen["rows"], seen["v"]
    rewarded = np.asarray(rows["rewards"]) > 0
    assert rewarded.sum() >= 3 and np.array_equal(rewarded, np.asarray(rows["terminateds"]))
    same_ep = np.asarray(rows["eps_id"][:-1]) == np.asarray(rows["eps_id"][1:])
    before_rewarded = np.append(rewarded[1:] & same_ep, False)  # one step before a rewarded transition
    v_r, v_b, v_all = float(v[rewarded].mean()), float(v[before_rewarded].mean()), float(v.mean())
    print(f"V: rewarded {v_r:.3f}, one step before {v_b:.3f}, all {v_all:.3f}")
    assert v_r > 0.4 and v_b > 0.35, (v_r, v_b, v_all)  # before the fix: all ~0 (|V| < 0.1)
