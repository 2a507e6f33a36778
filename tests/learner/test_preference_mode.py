"""``vlmrl train`` in preference mode (RL-VLM-F) end to end on the ToyReach test env, one local Ray for the module:
the labeller pool (toy_reach_oracle, a ground-truth oracle standing in for the VLM) labels frame pairs, the
RewardModelTrainer actor trains the BT model, its weights are hot-swapped into the running bt_reward pool
(RewardWorkerPool.update_weights through Ray) and PPO trains on the learned reward. ``train.resume=true``
brings the reward model (version, weights, label buffers) back into a new job's workers; a checkpoint
without that state is refused."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import ray

from vlmrl.learner.preference.checkpoint import STATE_FILE, PreferenceStateMissingError, load_state, save_state
from vlmrl.learner.preference.mode import TRAINER_CALL_TIMEOUT_S, PreferenceMode
from vlmrl.learner.online.train_metrics import read_scalars
from vlmrl.system.cli import main
from vlmrl.system.config import load_config

NAMESPACE = "vlmrl-test-preference"
BATCH = 100
PROBE_TASK = "reach the target"
PROBE_FRAMES = np.random.default_rng(123).integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)


def overrides(tmp_path, *extra):
    return [f"output_dir={tmp_path}", "run_name=pref", f"pool.namespace={NAMESPACE}", "pool.registry_name=pref-reward",
            "preference.labeller_registry_name=pref-labeller", f"train.train_batch_size={BATCH}",
            "train.rollout_fragment_length=50", "train.minibatch_size=50", "train.num_epochs=1",
            "train.checkpoint_every=0", "train.image_every=0", "env.frame_size=16", "env.max_episode_steps=20",
            "scorer.params.image_size=16", "scorer.params.channels=[8,16]", "preference.pairs_per_iteration=32",
            "preference.train_steps=10", "preference.batch_size=16", *extra]


def scalars(run_dir):
    return {tag: [v for _, v in sv] for tag, sv in read_scalars(run_dir).items()}


def probe(mode: PreferenceMode):
    """What ``mode``'s running reward pool serves for PROBE_FRAMES right now, and the mode's/trainer's state."""
    from vlmrl.reward_workers.client import RewardClient

    client = RewardClient(mode.cfg.client, registry=mode.reward_pool.registry_view(), scorer="bt_reward")
    try:
        res = client.score(PROBE_TASK, list(PROBE_FRAMES), timeout=60)
    finally:
        client.close()
    return {"versions": {r.model_version for r in res}, "rewards": np.array([r.reward for r in res]),
            "sizes": ray.get(mode.trainer.sizes.remote(), timeout=TRAINER_CALL_TIMEOUT_S),
            "totals": dict(mode.labeller.totals),
            "frames": len(mode.frames), "version": mode.version, "updates": mode.updates}


def probing_close(seen):
    """PreferenceMode.close that first probes the pool (which is still up then): what it served before the stop."""
    orig = PreferenceMode.close

    def close(self):
        try:
            if self.trainer is not None and self.reward_pool is not None:
                seen["before_stop"] = probe(self)
        finally:
            orig(self)

    return close


@pytest.fixture(scope="module")
def pref_run(ray_local, tmp_path_factory):
    """One 2-iteration preference run (checkpoint at iteration 2, shared by the tests below): its stdout,
    TensorBoard scalars and latest.json as they were right after it, and what its pool served at the stop."""
    tmp = tmp_path_factory.mktemp("pref")
    seen, out = {}, io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(PreferenceMode, "close", probing_close(seen))
        rc = main(["train", "train_toy_preference", *overrides(tmp, "train.iterations=2")])
    assert rc == 0, out.getvalue()[-3000:]
    run_dir = tmp / "pref"
    return SimpleNamespace(tmp=tmp, run_dir=run_dir, out=out.getvalue(), seen=seen, scalars=scalars(run_dir),
                           latest=json.loads((run_dir / "checkpoints" / "latest.json").read_text()),
                           version=(run_dir / "reward_model" / "latest_version.txt").read_text().strip())


def test_preference_mode_two_iterations_end_to_end(pref_run):
    out, s, version = pref_run.out, pref_run.scalars, pref_run.version
    assert "labeller pool: 1 x toy_reach_oracle" in out and "reward worker pool: 1 x bt_reward" in out
    assert "iter 2/2" in out and "preference: labels +" in out
    # labels: asked every iteration, counted by outcome; none failed
    asked = [a + b + c + d for a, b, c, d in zip(s["preference/labels_first"], s["preference/labels_second"],
                                                  s["preference/labels_none"], s["preference/labels_failed"])]
    assert asked == [32.0, 32.0]
    assert s["preference/labels_failed"] == [0.0, 0.0] and s["preference/label_failures_total"][-1] == 0.0
    assert s["preference/labels_total"][-1] >= 32 and s["preference/labels_first"][-1] > 0
    # the reward model was trained twice and its version advanced; held-out metrics were measured
    assert s["preference/reward_model_updates"] == [1.0, 2.0]
    assert s["preference/train_pairs"][-1] > s["preference/train_pairs"][0] > 0
    assert all(np.isfinite(s["preference/bt_loss"])) and 0.0 <= s["preference/bt_train_acc"][-1] <= 1.0
    assert version.startswith("bt-2-")
    assert f"reward model {version}" in out
    # PPO trained on the bt_reward pool's rewards (composed from r(s) by the reward callback)
    for tag in ("reward/component_reward", "reward/reward_latency_ms", "losses/policy_loss",
                "reward/pearson_frame_score_vs_dense"):
        assert tag in s, f"missing {tag}"
    assert "preference/swap_s" in s and "preference/heldout_pearson_reward_vs_dense" in s or \
        "preference/bt_heldout_acc" not in s
    # the final checkpoint carries the reward model's state, named by the version the workers served
    assert pref_run.latest["iteration"] == 2
    state = load_state(pref_run.latest["path"])
    assert state["trainer"]["version"] == state["mode"]["version"] == version
    assert state["trainer"]["updates"] == 2 and state["mode"]["updates"] == 2
    assert pref_run.seen["before_stop"]["versions"] == {version}


def test_preference_mode_resume_serves_the_same_reward_model_and_continues(pref_run, monkeypatch, capsys):
    """A new job on the run dir (train.resume=true): before its first iteration samples, its reward workers
    serve the checkpointed version and score the probe frames exactly as the stopped job's workers did; the
    trainer's label buffers, the mode's frame buffer and totals are back; iteration, update counter and
    env steps continue."""
    from vlmrl.learner.preference.reward_model_trainer import model_params
    from vlmrl.reward_workers.models.bt_reward_model import BtRewardModel

    before = pref_run.seen["before_stop"]
    seen = {}
    orig = PreferenceMode.on_restored

    def on_restored(self, path):
        orig(self, path)
        seen["after_restore"] = probe(self)

    monkeypatch.setattr(PreferenceMode, "on_restored", on_restored)
    assert main(["train", "train_toy_preference",
                 *overrides(pref_run.tmp, "train.iterations=3", "train.resume=true")]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "iter 3/3" in out and "iter 1/3" not in out and "iter 2/3" not in out
    assert f"preference: restored reward model {pref_run.version} (2 updates" in out
    after = seen["after_restore"]
    assert after["versions"] == before["versions"] == {pref_run.version}
    np.testing.assert_allclose(after["rewards"], before["rewards"], rtol=0, atol=1e-6)
    # ... and that is the trained model, not the initial one (the probe tells them apart)
    init = BtRewardModel(model_params({"image_size": 16, "channels": [8, 16]}))  # the run's scorer.params
    init_r = init(*init.preprocess(list(PROBE_FRAMES), [PROBE_TASK] * len(PROBE_FRAMES))).mean(0).detach().numpy()
    assert np.abs(after["rewards"] - init_r).max() > 1e-3
    for k in ("sizes", "totals", "frames", "version", "updates"):
        assert after[k] == before[k], k
    assert after["sizes"]["train_pairs"] > 0 and after["frames"] > 0
    # the resumed iteration trained the restored model once more: update 3, on more labelled pairs
    s = scalars(pref_run.run_dir)
    assert s["preference/reward_model_updates"][-1] == 3.0
    assert s["preference/train_pairs"][-1] > before["sizes"]["train_pairs"]
    assert s["preference/labels_total"][-1] > before["totals"]["first"] + before["totals"]["second"]
    assert (pref_run.run_dir / "reward_model" / "latest_version.txt").read_text().startswith("bt-3-")
    latest = json.loads((pref_run.run_dir / "checkpoints" / "latest.json").read_text())
    assert latest["iteration"] == 3
    assert pref_run.latest["env_steps"] + BATCH <= latest["env_steps"] < pref_run.latest["env_steps"] + 2 * BATCH
    assert load_state(latest["path"])["trainer"]["version"].startswith("bt-3-")


def test_resume_from_a_checkpoint_without_preference_state_is_refused(pref_run, tmp_path, capsys):
    """A checkpoint of an older run (PPO only): exit 2 with the reason before any worker starts."""
    src = json.loads((pref_run.run_dir / "checkpoints" / "latest.json").read_text())
    ckpts = tmp_path / "pref" / "checkpoints"
    dst = ckpts / Path(src["path"]).name
    shutil.copytree(src["path"], dst)
    (dst / STATE_FILE).unlink()
    (ckpts / "latest.json").write_text(json.dumps({**src, "iteration": 2, "path": str(dst.resolve())}))
    assert main(["train", "train_toy_preference", *overrides(tmp_path, "train.iterations=3", "train.resume=true")]) == 2
    cap = capsys.readouterr()
    assert f"has no {STATE_FILE}" in cap.err and "untrained reward model" in cap.err
    assert "labeller pool" not in cap.out and "reward worker pool" not in cap.out
    # the hook itself refuses too (a checkpoint dir named directly, e.g. by a trainer that skipped the early check)
    cfg = load_config("train_toy_preference", overrides(tmp_path))
    with pytest.raises(PreferenceStateMissingError, match=f"has no {STATE_FILE}"):
        PreferenceMode(cfg, tmp_path / "pref").on_restored(dst)


def test_reward_model_trainer_state_round_trip_continues_identically(tmp_path):
    """get_state -> file -> load_state into a differently seeded trainer: same version and weights bytes, same
    buffers, and the next training round (Adam moments, minibatch RNG) gives bit-identical weights."""
    from vlmrl.learner.preference.reward_model_trainer import RewardModelTrainer

    params = {"image_size": 16, "channels": [8, 16], "ensemble_size": 2}
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (21, 16, 16, 3), dtype=np.uint8)
    rows = [(frames[i], frames[i + 1], "t", float(i % 2), float(i), float(i + 1)) for i in range(20)]
    a = RewardModelTrainer(params, 1e-3, 50, seed=0)
    a.add_pairs(rows[:16], False)
    a.add_pairs(rows[16:], True)
    a.train(3, 4)
    save_state(tmp_path, {"trainer": a.get_state()})
    b = RewardModelTrainer(params, 1e-3, 50, seed=7)
    assert b.weights() != a.weights()
    assert b.load_state(load_state(tmp_path)["trainer"]) == (a.version, 1)
    assert b.weights() == a.weights() and b.sizes() == {"train_pairs": 16, "heldout_pairs": 4}
    assert b.evaluate() == a.evaluate()
    ma, mb = a.train(3, 4), b.train(3, 4)
    assert ma["version"] == mb["version"] and ma["version"].startswith("bt-2-") and ma["bt_loss"] == mb["bt_loss"]
    assert a.weights() == b.weights()
    # a model of another architecture is refused with the reason
    with pytest.raises(ValueError, match="architecture"):
        RewardModelTrainer({**params, "ensemble_size": 1}).load_state(a.get_state())


def test_preference_mode_hot_swaps_into_running_pool_and_serves_the_trained_weights(ray_local, tmp_path):
    """The saved weights are what the pool serves: a worker started from them scores like the trained model."""
    from vlmrl.learner.preference.reward_model_trainer import RewardModelTrainer, remote_trainer_class
    from vlmrl.reward_workers.client import RewardClient
    from vlmrl.reward_workers.pool import RewardWorkerPool

    cfg = load_config("train_toy_preference", overrides(tmp_path, "pool.registry_name=pref-swap"))
    pool = RewardWorkerPool(cfg)
    pool.start(1)
    client = RewardClient(cfg.client, registry=pool.registry_view(), scorer="bt_reward")
    try:
        trainer = remote_trainer_class().remote(dict(cfg.scorer.params), 1e-3, 100, 0, "cpu", 1)
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)
        rows = [(frames[i], frames[i + 1], "t", float(i % 2), 0.0, 0.0) for i in range(7)]
        ray.get(trainer.add_pairs.remote(rows, False))
        before = client.score("t", list(frames), timeout=60)
        assert {r.model_version for r in before} == {"init-0"}
        ray.get(trainer.train.remote(5, 4))
        version, state = ray.get(trainer.weights.remote())
        assert pool.update_weights(version, state) == {w: version for w in pool.addresses()}
        assert {w["model_version"] for w in pool.workers().values()} == {version}
        after = client.score("t", list(frames), timeout=60)
        assert {r.model_version for r in after} == {version}
        local = RewardModelTrainer(dict(cfg.scorer.params))
        from vlmrl.reward_workers.models.bt_reward_model import load_state_bytes

        load_state_bytes(local.model, state)
        expected = local.model(*local.model.preprocess(list(frames), ["t"] * 8)).mean(0).detach().numpy()
        np.testing.assert_allclose([r.reward for r in after], expected, atol=1e-5)
        ray.kill(trainer)
    finally:
        client.close()
        pool.shutdown()


def test_oracle_labeller_with_warmup_disagreement_sampling_budget_and_normalisation(ray_local, tmp_path):
    """preference.labeller=oracle (no labeller pool; labels from the env_reward / success carried with the frames),
    a warm-up batch trained before the first PPO iteration, ensemble-disagreement pair sampling, the label budget
    (cap reached, then no more labels), reward normalisation and a labelled-pair image in TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["train", "train_toy_preference", *overrides(
            tmp_path, "pool.registry_name=pref-oracle", "train.iterations=3", "preference.labeller=oracle",
            "preference.warmup_labels=24", "preference.warmup_env_steps=100", "preference.warmup_train_steps=20",
            "preference.pair_sampling=disagreement", "preference.disagreement_candidates=4",
            "scorer.params.ensemble_size=2", "preference.max_labels=88", "preference.normalize_reward=true",
            "preference.image_every=1")])
    text = out.getvalue()
    assert rc == 0, text[-3000:]
    assert "no labeller pool" in text and "labeller pool:" not in text and "preference warm-up:" in text
    s = scalars(tmp_path / "pref")
    # budget: 24 warm-up + 32 + 32 = 88 = the cap; the third iteration asks nothing
    assert s["preference/labels_asked_total"] == [56.0, 88.0, 88.0]
    assert s["preference/labels_failed"][-1] == 0.0 and s["preference/label_failures_total"][-1] == 0.0
    assert "preference/warmup_bt_loss" in s and "preference/warmup_frames" in s
    # the oracle agrees with itself (eps = 0); the reward model was trained 1 (warm-up) + 2 times, not on nothing
    assert s["preference/label_agreement_oracle_total"][-1] == 1.0
    assert s["preference/reward_model_updates"] == [2.0, 3.0, 3.0]
    assert "preference/reward_scale" in s and s["preference/reward_scale"][-1] > 0
    ev = [EventAccumulator(str(f)) for f in (tmp_path / "pref" / "tb").iterdir()]
    assert any("preference/pair" in e.Reload().Tags()["images"] for e in ev)


@pytest.mark.parametrize("extra, message", [
    (["preference.labeller=vlm"], "preference.labeller must be one of"),
    (["preference.pair_sampling=disagreement"], "ensemble_size >= 2"),
    (["preference.max_labels=1000"], "cannot be reached"),
    (["preference.pairs_per_iteration=0"], "asks no labels"),
    (["preference.oracle_epsilon=0.9"], "oracle_epsilon"),
    (["scorer.name=synthetic"], "scorer.name=bt_reward"),
    (["preference.labeller_registry_name=pref-reward"], "must differ from pool.registry_name"),
    (["reward.item_kind=pair"], "reward.item_kind must be auto or frame"),
    (["preference.heldout_fraction=1.0"], "heldout_fraction must be in"),
])
def test_bad_preference_configs_fail_with_the_reason(tmp_path, capsys, extra, message):
    assert main(["train", "train_toy_preference", *overrides(tmp_path, *extra)]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_labeller_lrm_is_refused_before_any_worker_starts(tmp_path, capsys):
    # the PushCube config's AI labeller (compact_lrm) without its folder: one line, exit 2, no Ray started
    assert main(["train", "train_pushcube_preference", f"output_dir={tmp_path}", "preference.labeller=pool",
                 f"preference.labeller_scorer.params.weights_dir={tmp_path}/no_such_lrm"]) == 2
    err = capsys.readouterr().err
    assert f"preference.labeller_scorer: compact_lrm cannot load weights_dir='{tmp_path}/no_such_lrm'" in err
    assert len(err.strip().splitlines()) == 1
