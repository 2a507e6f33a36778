"""``vlmrl train`` in preference mode (RL-VLM-F) end to end on the ToyReach test env, one local Ray for the module:
the labeller pool (toy_reach_oracle, a ground-truth oracle standing in for the VLM) labels frame pairs, the
RewardModelTrainer actor trains the BT model, its weights are hot-swapped into the running bt_reward pool
(RewardWorkerPool.update_weights through Ray) and PPO trains on the learned reward."""

from __future__ import annotations

import numpy as np
import pytest
import ray
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vlmrl.system.cli import main
from vlmrl.system.config import load_config

NAMESPACE = "vlmrl-test-preference"


def overrides(tmp_path, *extra):
    return [f"output_dir={tmp_path}", "run_name=pref", f"pool.namespace={NAMESPACE}", "pool.registry_name=pref-reward",
            "preference.labeller_registry_name=pref-labeller", "train.train_batch_size=100",
            "train.rollout_fragment_length=50", "train.minibatch_size=50", "train.num_epochs=1",
            "train.checkpoint_every=0", "train.image_every=0", "env.frame_size=16", "env.max_episode_steps=20",
            "scorer.params.image_size=16", "scorer.params.channels=[8,16]", "preference.pairs_per_iteration=32",
            "preference.train_steps=10", "preference.batch_size=16", *extra]


def scalars(run_dir):
    out = {}
    for f in sorted((run_dir / "tb").iterdir()):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0})
        ea.Reload()
        for tag in ea.Tags()["scalars"]:
            out[tag] = [e.value for e in ea.Scalars(tag)]
    return out


def test_preference_mode_two_iterations_end_to_end(ray_local, tmp_path, capsys):
    assert main(["train", "train_toy_preference", *overrides(tmp_path, "train.iterations=2")]) == 0
    out = capsys.readouterr().out
    assert "labeller pool: 1 x toy_reach_oracle" in out and "reward worker pool: 1 x bt_reward" in out
    assert "iter 2/2" in out and "preference: labels +" in out
    s = scalars(tmp_path / "pref")
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
    version = (tmp_path / "pref" / "reward_model" / "latest_version.txt").read_text().strip()
    assert version.startswith("bt-2-")
    assert f"reward model {version}" in out
    # PPO trained on the bt_reward pool's rewards (composed from r(s) by the reward callback)
    for tag in ("reward/component_reward", "reward/reward_latency_ms", "losses/policy_loss",
                "reward/pearson_frame_score_vs_dense"):
        assert tag in s, f"missing {tag}"
    assert "preference/swap_s" in s and "preference/heldout_pearson_reward_vs_dense" in s or \
        "preference/bt_heldout_acc" not in s


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
        from vlmrl.reward_workers.scorers.bt_reward import load_state_bytes

        load_state_bytes(local.model, state)
        expected = local.model(*local.model.preprocess(list(frames), ["t"] * 8)).mean(0).detach().numpy()
        np.testing.assert_allclose([r.reward for r in after], expected, atol=1e-5)
        ray.kill(trainer)
    finally:
        client.close()
        pool.shutdown()


@pytest.mark.parametrize("extra, message", [
    (["scorer.name=synthetic"], "scorer.name=bt_reward"),
    (["preference.labeller_registry_name=pref-reward"], "must differ from pool.registry_name"),
    (["reward.item_kind=pair"], "reward.item_kind must be auto or frame"),
    (["preference.heldout_fraction=1.0"], "heldout_fraction must be in"),
])
def test_bad_preference_configs_fail_with_the_reason(tmp_path, capsys, extra, message):
    assert main(["train", "train_toy_preference", *overrides(tmp_path, *extra)]) == 2
    assert message in capsys.readouterr().err
