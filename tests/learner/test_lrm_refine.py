"""``train.mode=lrm`` on the ToyReach test env: BC of scripted demos beats a random policy; the BC module is
really loaded into PPO (the env runner's actions equal the BC module's on fixed observations); the whole mode
through ``vlmrl train`` logs base and refined ground-truth success; bad configs fail with the reason."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vlmrl.envs.toy_reach_dataset import write_toy_dataset
from vlmrl.envs.toy_reach_env import ToyReachEnv
from vlmrl.learner.online.bc_pretrain import BcDataError, demos_to_episodes, train_bc
from vlmrl.learner.online.lrm_refine import final_policy, greedy_actions, greedy_success_rate, load_module_into
from vlmrl.learner.online.train_metrics import read_scalars
from vlmrl.learner.run_files import latest_checkpoint

NAMESPACE = "vlmrl-test-lrm"
EVAL_EPISODES = 30
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy_demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_demos") / "ds"
    write_toy_dataset(root, 24, sources=("demo", "random"), max_steps=30)  # 12 demos + 12 random episodes
    return root


@pytest.fixture(scope="module")
def bc_module_path(toy_demos, tmp_path_factory):
    data = demos_to_episodes(toy_demos)
    env = ToyReachEnv({})
    return train_bc(data, env.observation_space, env.action_space, tmp_path_factory.mktemp("bc"), [64, 64],
                    epochs=40, lr=1e-3, minibatch_size=64, seed=0, print_fn=lambda s: None)


def test_demo_conversion_keeps_only_demo_sources(toy_demos):
    data = demos_to_episodes(toy_demos)
    assert len(data.episodes) == 12 and data.demo_success_rate == 1.0
    assert (data.state_dim, data.action_dim) == (6, 2)
    ep = data.episodes[0]
    assert len(ep.get_observations()) == len(ep) + 1 and ep.is_terminated
    both = demos_to_episodes(toy_demos, sources=("demo", "random"))
    assert len(both.episodes) == 24
    with pytest.raises(BcDataError, match="no non-empty episodes with source"):
        demos_to_episodes(toy_demos, sources=("policy",))


def test_bc_policy_beats_random(bc_module_path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    module = RLModule.from_checkpoint(bc_module_path)
    env = ToyReachEnv({"capture_frames": False, "max_episode_steps": 30})
    bc = greedy_success_rate(module, env, EVAL_EPISODES, seed=5000)
    rng = np.random.default_rng(0)
    wins = 0
    for i in range(EVAL_EPISODES):
        env.reset(seed=5000 + i)
        done = False
        while not done:
            _, _, term, trunc, info = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
            done = term or trunc
        wins += int(info["success"])
    random_rate = wins / EVAL_EPISODES
    assert bc >= random_rate + 0.3, (bc, random_rate)


def test_bc_weights_are_loaded_into_ppo(ray_local, bc_module_path, tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    from vlmrl.learner.online.ppo_builder import build_ppo_config
    from vlmrl.system.config import load_config

    cfg = load_config("train_toy", ["train.mode=env", "env.reward_mode=dense", "train.train_batch_size=100",
                                    "train.rollout_fragment_length=50", "train.minibatch_size=50"])
    algo = build_ppo_config(cfg).build_algo()
    try:
        bc = RLModule.from_checkpoint(bc_module_path)
        obs = np.random.default_rng(1).uniform(-1, 1, (16, 6)).astype(np.float32)
        want = greedy_actions(bc, obs)
        assert not np.allclose(greedy_actions(algo.env_runner.module, obs), want, atol=1e-3)
        load_module_into(algo, bc_module_path)
        np.testing.assert_allclose(greedy_actions(algo.env_runner.module, obs), want, atol=1e-5)
        np.testing.assert_allclose(greedy_actions(algo.get_module(), obs), want, atol=1e-5)
    finally:
        algo.stop()


def test_critic_warmup_trains_the_value_function_and_leaves_the_policy(ray_local, bc_module_path):
    from vlmrl.learner.online.critic_warmup import set_policy_frozen
    from vlmrl.learner.online.ppo_builder import build_ppo_config
    from vlmrl.system.config import load_config

    cfg = load_config("train_toy", ["train.mode=env", "env.reward_mode=dense", "train.train_batch_size=100",
                                    "train.rollout_fragment_length=50", "train.minibatch_size=50",
                                    "train.hidden=[64,64]", "train.lr=0.003"])
    algo = build_ppo_config(cfg).build_algo()
    try:
        load_module_into(algo, bc_module_path)
        obs = np.random.default_rng(2).uniform(-1, 1, (16, 6)).astype(np.float32)

        def learner_state(learner):
            m = learner.module["default_policy"]
            with torch.no_grad():
                values = m.compute_values({"obs": torch.as_tensor(obs)}).numpy().copy()
            return greedy_actions(m, obs), values, float(learner.curr_kl_coeffs_per_module["default_policy"])

        def snapshot():
            return [r.get() for r in algo.learner_group.foreach_learner(learner_state)][0]

        actions0, values0, kl0 = snapshot()
        set_policy_frozen(algo, True)
        algo.train()
        actions1, values1, kl1 = snapshot()
        np.testing.assert_allclose(actions1, actions0, atol=1e-6)  # policy (and env runner's copy) untouched
        np.testing.assert_allclose(greedy_actions(algo.env_runner.module, obs), actions0, atol=1e-6)
        assert kl1 == kl0  # a frozen policy's zero KL does not shrink PPO's KL coefficient
        assert np.abs(values1 - values0).max() > 1e-3  # the critic learned
        set_policy_frozen(algo, False)
        algo.train()
        assert np.abs(snapshot()[0] - actions0).max() > 1e-4  # PPO updates the policy again
    finally:
        algo.stop()


def test_lrm_mode_end_to_end(ray_local, toy_demos, tmp_path):
    from vlmrl.system.cli import main

    args = ["train", "train_toy", f"output_dir={tmp_path}", "run_name=lrm", f"pool.namespace={NAMESPACE}",
            "pool.registry_name=lrm-smoke", "train.mode=lrm", f"lrm_refine.demos={toy_demos}",
            "lrm_refine.bc_epochs=20", "lrm_refine.bc_minibatch_size=64", "lrm_refine.eval_episodes=5",
            "train.free_log_std=true", "lrm_refine.refine_log_std=-1.0",
            "train.iterations=2", "train.train_batch_size=100", "train.rollout_fragment_length=50",
            "train.minibatch_size=50", "train.num_epochs=1", "train.image_every=0", "env.frame_size=16",
            "env.max_episode_steps=20", "scorer.params.fixed_ms=0", "scorer.params.per_item_ms=0"]
    assert main(args) == 0
    run = tmp_path / "lrm"
    base = json.loads((run / "base_eval.json").read_text())
    assert 0.0 <= base["success_base"] <= 1.0
    tags = {t: [v for _, v in sv] for t, sv in read_scalars(run).items()}
    assert tags["charts/success_base"] == [pytest.approx(base["success_base"])] * 2
    assert len(tags["charts/success"]) == 2 and all(0.0 <= v <= 1.0 for v in tags["charts/success"])
    assert any(t.startswith("reward/") for t in tags)
    from ray.rllib.core.rl_module.rl_module import RLModule

    bc = RLModule.from_checkpoint(base["bc_module"]).get_state()["pi.log_std"]
    np.testing.assert_allclose(bc, -1.0)  # PPO started from the BC module with its std reset for exploration
    env = ToyReachEnv({"max_episode_steps": 20})
    refined = final_policy(run)  # the run's newest checkpoint, as the benchmarks evaluate it
    obs = np.zeros((1, *env.observation_space.shape), np.float32)
    assert greedy_actions(refined, obs).shape == (1, *env.action_space.shape)
    assert not np.allclose(refined.get_state()["pi.log_std"], -1.0)  # PPO's policy, not the BC module
    named = final_policy(run, os.path.relpath(latest_checkpoint(run)["path"]))  # a checkpoint folder, relative path
    np.testing.assert_allclose(named.get_state()["pi.log_std"], refined.get_state()["pi.log_std"])


def test_final_policy_of_a_run_without_a_checkpoint_names_the_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no checkpoint in {tmp_path}"):
        final_policy(tmp_path)
    with pytest.raises(FileNotFoundError, match="iter_000007 is not a checkpoint of a vlmrl run"):
        final_policy(tmp_path, tmp_path / "checkpoints" / "iter_000007")


def test_lrm_mode_can_refine_on_the_env_reward_without_a_pool(ray_local, toy_demos, tmp_path):
    """lrm_refine.reward=env: the same BC base refined on the env's dense reward (the ground-truth control)."""
    from vlmrl.system.cli import main

    args = ["train", "train_toy", f"output_dir={tmp_path}", "run_name=lrm_env", f"pool.namespace={NAMESPACE}",
            "pool.registry_name=lrm-env-no-pool", "train.mode=lrm", "lrm_refine.reward=env",
            "env.reward_mode=dense", "env.capture_frames=false", f"lrm_refine.demos={toy_demos}",
            "lrm_refine.bc_epochs=5", "lrm_refine.bc_minibatch_size=64", "lrm_refine.eval_episodes=3",
            "lrm_refine.critic_warmup_iters=1", "train.iterations=2", "train.train_batch_size=100", "train.rollout_fragment_length=50",
            "train.minibatch_size=50", "train.num_epochs=1", "env.max_episode_steps=20"]
    assert main(args) == 0
    run = tmp_path / "lrm_env"
    assert (run / "base_eval.json").exists()
    tags = {t: [v for _, v in sv] for t, sv in read_scalars(run).items()}
    assert "charts/success" in tags and "charts/success_base" in tags
    assert tags["charts/policy_frozen"] == [1.0, 0.0]  # critic warm-up, then PPO on the policy
    assert tags["charts/success"][0] == pytest.approx(tags["charts/success_base"][0])  # frozen: still the base
    assert not any(t.startswith(("reward/", "workers/")) for t in tags)  # no reward worker was asked
    # ToyReach's dense reward is in (0, 1] per step: the returns PPO saw are env rewards, not pool rewards
    assert all(0.0 < r <= 20.0 for r in tags["charts/episode_return_mean"])


def test_lrm_mode_bad_configs(tmp_path, capsys):
    from vlmrl.system.cli import main

    assert main(["train", "train_toy", "train.mode=lrm", f"output_dir={tmp_path}"]) == 2
    assert "lrm_refine.demos" in capsys.readouterr().err
    assert main(["train", "train_toy", "train.mode=lrm", f"lrm_refine.demos={tmp_path}",
                 f"output_dir={tmp_path}"]) == 2
    assert "no index.jsonl" in capsys.readouterr().err
    demos = tmp_path / "d"
    write_toy_dataset(demos, 2, sources=("demo",))
    assert main(["train", "train_toy", "train.mode=lrm", f"lrm_refine.demos={demos}", "lrm_refine.refine_log_std=-1",
                 f"output_dir={tmp_path}"]) == 2
    assert "needs train.free_log_std=true" in capsys.readouterr().err
    assert main(["train", "train_toy", "train.mode=lrm", f"lrm_refine.demos={demos}", "lrm_refine.reward=lrm",
                 f"output_dir={tmp_path}"]) == 2
    assert "lrm_refine.reward must be one of" in capsys.readouterr().err
    assert main(["train", "train_toy", "train.mode=lrm", f"lrm_refine.demos={demos}", "train.iterations=2",
                 "lrm_refine.critic_warmup_iters=2", f"output_dir={tmp_path}"]) == 2
    assert "critic_warmup_iters must be in [0, train.iterations=2)" in capsys.readouterr().err
    assert main(["train", "train_toy", "train.mode=lrm", f"lrm_refine.demos={demos}", "lrm_refine.reward=env",
                 "env.reward_mode=none", f"output_dir={tmp_path}"]) == 2
    assert "env.reward_mode=none returns 0" in capsys.readouterr().err


def test_log_std_reset_accepts_a_relative_module_path(bc_module_path, monkeypatch):
    """`make demo` passes run-relative paths (runs/demo/bc_module); RLlib reads checkpoint paths as URIs."""
    import os

    from vlmrl.learner.online.lrm_refine import with_log_std

    monkeypatch.chdir(bc_module_path.parent)
    try:
        out = with_log_std(os.path.relpath(bc_module_path), -1.5)
    except ValueError as e:  # a module without a free log std is refused with a clear message, not a URI error
        assert "free log std" in str(e)
    else:
        assert out.exists()


def test_exploration_noise_per_episode_matches_the_greedy_evaluation(bc_module_path, tmp_path, capsys):
    """benchmarks.exploration_noise at std 0 is the mode's greedy evaluation: its success column and its
    ``--per-episode`` line (one mark per start seed) agree with greedy_success_rate on the same seeds; noise changes
    the episodes (the run's env, seeds from lrm_refine.eval_seed)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    from benchmarks.exploration_noise import main as exploration_noise
    from vlmrl.learner.online.lrm_refine import make_eval_env
    from vlmrl.system.config import load_config, save_resolved

    cfg = load_config("train_toy", ["env.max_episode_steps=30", "lrm_refine.eval_seed=700"])
    save_resolved(cfg, tmp_path)
    episodes = 12
    assert exploration_noise([str(tmp_path), "--module", str(bc_module_path), "--std", "0,0.5",
                              "--episodes", str(episodes), "--per-episode", "--results-dir", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    recorded = json.loads(next((tmp_path / "results").glob("exploration_noise_*.json")).read_text())
    assert recorded["seeds"] == [0] and set(recorded["values"]) >= {"success_at_end_std0", "success_at_end_std0.5"}
    assert recorded["command"].startswith("python -m benchmarks.exploration_noise ")
    marks = {line.split("std ")[1].split(":")[0]: line.rsplit(" ", 1)[1]
             for line in out.splitlines() if line.startswith("per episode, std")}
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in out.splitlines()
            if line.startswith("| 0") and "---" not in line}
    assert set(marks) == {"0", "0.5"} and all(len(m) == episodes and set(m) <= {"1", "."} for m in marks.values())
    greedy = greedy_success_rate(RLModule.from_checkpoint(bc_module_path), make_eval_env(cfg), episodes, seed=700)
    assert marks["0"].count("1") / episodes == pytest.approx(greedy)
    assert rows["0"] == pytest.approx(greedy, abs=0.005)
    assert rows["0.5"] == pytest.approx(marks["0.5"].count("1") / episodes, abs=0.005)
    assert 0 < greedy and marks["0.5"] != marks["0"]  # the base solves some starts; std 0.5 noise changes outcomes
    assert recorded["values"]["success_at_end_std0"]["value"] == pytest.approx(greedy)
    with pytest.raises(SystemExit):  # the toy env has no scripted controller to read its object's start from
        exploration_noise([str(tmp_path), "--module", str(bc_module_path), "--by-start-x", "0", "--no-record"])
    assert "--by-start-x needs a ManiSkill task with a scripted controller" in capsys.readouterr().err


def test_success_split_by_object_start():
    from benchmarks.exploration_noise import split_by_edges

    x = np.array([-0.09, -0.05, -0.01, 0.02, 0.08])
    ok = np.array([0.0, 1.0, 1.0, 1.0, 0.0])
    assert split_by_edges(x, ok, [-0.04]) == "x < -0.04: 1/2, x >= -0.04: 2/3"
    assert split_by_edges(x, ok, [-0.04, 0.05]) == "x < -0.04: 1/2, -0.04 <= x < 0.05: 2/2, x >= 0.05: 0/1"
