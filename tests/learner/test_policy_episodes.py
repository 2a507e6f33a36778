"""A trained policy's own episodes as audit behaviours and hard negatives (learner/reward_training/policy_episodes.py,
``audit.policy_runs`` of vlmrl audit-reward)."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from ray.rllib.core.columns import Columns

from vlmrl.learner.reward_training import policy_episodes as pe


class SteadyPolicy:
    """The part of a PPO RLModule the rollout uses: one Gaussian (mean, log std) per action dimension, any obs."""

    def __init__(self, mean, std):
        self.out = torch.tensor([[*mean, *np.log(std)]], dtype=torch.float32)
        self.calls = 0

    def forward_inference(self, batch):
        self.calls += 1
        return {Columns.ACTION_DIST_INPUTS: self.out.expand(batch[Columns.OBS].shape[0], -1)}


def _run_dir(tmp_path, task="PushCube-v1", checkpoint=False):
    """A run folder with its resolved config; ``checkpoint``: its latest.json names a checkpoint (the policy itself
    comes from the test's ``final_policy``)."""
    import json

    from vlmrl.system.config import load_config

    cfg = load_config("train_pushcube_preference", [f"env.task={task}", "env.frame_size=32"])
    run = tmp_path / "run"
    (run / "checkpoints" / "iter_000002").mkdir(parents=True)
    OmegaConf.save(cfg, run / "config.yaml")
    if checkpoint:
        (run / "checkpoints" / "latest.json").write_text(json.dumps({"iteration": 2, "env_steps": 4000,
                                                                     "path": str(run / "checkpoints/iter_000002")}))
    return run


def test_seeds_names_and_folders():
    assert pe.policy_seeds(1_000_000, 0, 3) == range(1_090_000, 1_090_003)
    assert pe.policy_seeds(500_000, 2, 4) == range(592_000, 592_004)  # below --mine-negatives' 600000
    with pytest.raises(ValueError, match="1, 1000"):
        pe.policy_seeds(0, 0, 1001)
    assert pe.behaviour_name("runs/x/ai_s4") == "policy_ai_s4"
    assert pe.behaviour_name("runs/x/ai_s4/checkpoints/iter_000020") == "policy_ai_s4_iter_000020"


def test_missing_run_or_checkpoint_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        next(pe.iter_policy_episodes(tmp_path / "nothing", 1, 0, 0, 4))
    run = _run_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        next(pe.iter_policy_episodes(run, 1, 0, 0, 4))


@pytest.mark.slow
def test_policy_episodes_are_recorded_with_ground_truth_and_repeat_from_their_seed(tmp_path, monkeypatch):
    import vlmrl.learner.online.lrm_refine as lrm_refine

    run = _run_dir(tmp_path)
    policy = SteadyPolicy(mean=[0.2, 0.0, -0.3, 0.0, 0.0, 0.0, 1.0], std=[0.3] * 7)
    monkeypatch.setattr(lrm_refine, "final_policy", lambda run_dir, ckpt=None: policy)
    eps = list(pe.iter_policy_episodes(run, 2, 1_000, 0, 10))
    assert [e.seed for e in eps] == [91_000, 91_001]
    for ep in eps:
        assert ep.source == "policy" and ep.meta["behaviour"] == "policy_run" and ep.meta["category"] == "policy"
        assert ep.num_steps == 50 and policy.calls >= 50  # PushCube's time limit, one policy call a step
        assert ep.frame_steps.tolist() == [0, 10, 20, 30, 40, 50] and ep.frames.shape[1:] == (32, 32, 3)
        assert ep.states.shape[0] == 51 and np.isfinite(ep.rewards).all() and ep.success.shape == (51,)
        assert np.abs(ep.actions).max() <= 1.0  # sampled, then clipped to the action box
    # sampled actions (std 0.3 around the mean), from a generator seeded by the episode's seed: the same episode again
    assert eps[0].actions[:, 0].std() > 0.05
    again = next(pe.iter_policy_episodes(run, 1, 1_000, 0, 10))
    np.testing.assert_array_equal(again.actions, eps[0].actions)
    np.testing.assert_array_equal(again.frames, eps[0].frames)


def _cli(tmp_path, *overrides):
    from vlmrl.system.cli import main

    flags = [o for o in overrides if o.startswith("--")]
    return main(["audit-reward", *flags, "demo", f"output_dir={tmp_path}", "scorer.name=cnn", "scorer.params={}",
                 "reward.item_kind=auto", *[o for o in overrides if o not in flags]])


def test_bad_policy_runs_are_one_line_naming_the_fix(tmp_path, capsys):
    assert _cli(tmp_path, f"audit.policy_runs=[{tmp_path}/nope]") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is not a `vlmrl train` run folder" in err
    pick = _run_dir(tmp_path, task="PickCube-v1")
    assert _cli(tmp_path, f"audit.policy_runs=[{pick}]") == 2
    err = capsys.readouterr().err.strip()
    assert "is a PickCube-v1 run" in err and "audit.tasks=[PickCube-v1]" in err
    assert _cli(tmp_path, f"audit.policy_runs=[{pick}]", "audit.policy_episodes=0", "audit.tasks=[PickCube-v1]") == 2
    assert "audit.policy_episodes=0" in capsys.readouterr().err
    # a run without a checkpoint: refused before anything is recorded
    assert _cli(tmp_path, "--record-negatives", f"audit.policy_runs=[{pick}]", "audit.tasks=[PickCube-v1]") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no checkpoint" in err and "train.checkpoint_every" in err


@pytest.mark.slow
def test_record_negatives_records_the_policys_episodes_and_the_audit_scores_them(tmp_path, monkeypatch, capsys):
    import json

    import vlmrl.learner.online.lrm_refine as lrm_refine
    from vlmrl.envs.dataset import read_index

    run = _run_dir(tmp_path, checkpoint=True)
    monkeypatch.setattr(lrm_refine, "final_policy", lambda run_dir, ckpt=None: SteadyPolicy([0.0] * 7, [0.5] * 7))
    common = [f"audit.policy_runs=[{run}]", "audit.policy_episodes=1", "env.frame_size=32"]
    assert _cli(tmp_path, "--record-negatives", *common, "audit.negatives_per_behaviour=0",
                "audit.negatives_counts={}") == 0
    index = read_index(tmp_path / "demo" / "hard_negatives")
    assert [(e["source"], e["seed"], e["meta"]["behaviour"]) for e in index] == [("policy", 590_000, "policy_run")]
    assert "policy episodes: 1 of" in capsys.readouterr().out
    # the audit rolls the policy out on held-out seeds next to the library and orders everything by dense reward
    _cli(tmp_path, *common, "audit.behaviours=[solve,idle]", "audit.episodes_per_behaviour=1",
         "audit.frame_stride=10", "audit.max_margin=100", "audit.max_complete_share=1")
    report = json.loads((tmp_path / "demo" / "audit" / "audit.json").read_text())
    task = report["tasks"]["PushCube-v1"]
    assert task["behaviours"]["policy_run"]["category"] == "policy" and task["behaviours"]["policy_run"]["episodes"] == 1
    assert task["dense_order"]["frame_pairs"] > 0 and report["thresholds"]["min_dense_agreement"] is None
