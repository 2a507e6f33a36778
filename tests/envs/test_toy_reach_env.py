"""ToyReach (the test env of the online path): info keys like the ManiSkill wrapper, frame schedule, reward modes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from vlmrl.envs import info_keys as K
from vlmrl.envs.toy_reach_env import GYM_ID, ToyReachEnv, register_toy_reach


def run_episode(env, seed=0, policy=None):
    obs, info = env.reset(seed=seed)
    infos, rewards = [info], []
    while True:
        a = policy(obs) if policy else env.action_space.sample()
        obs, r, term, trunc, info = env.step(a)
        infos.append(info)
        rewards.append(r)
        if term or trunc:
            return infos, rewards, term


def toward_goal(obs):
    d = obs[4:6]
    return np.clip(d / max(np.linalg.norm(d), 1e-6), -1, 1)


def test_frames_at_reset_every_stride_and_at_episode_end():
    env = ToyReachEnv({"frame_stride": 3, "max_episode_steps": 10, "frame_size": 16})
    env.action_space.seed(0)
    infos, _, term = run_episode(env, policy=lambda o: np.zeros(2, np.float32))  # never reaches: truncated at 10
    assert not term and len(infos) == 11
    framed = [i[K.STEP] for i in infos if i[K.HAS_FRAME]]
    assert framed == [0, 3, 6, 9, 10]
    for i in infos:
        assert set(i) >= {K.SUCCESS, K.ENV_REWARD, K.TASK_TEXT, K.STEP, K.HAS_FRAME}
        assert (K.FRAME in i) == i[K.HAS_FRAME]
        if i[K.HAS_FRAME]:
            assert i[K.FRAME].shape == (16, 16, 3) and i[K.FRAME].dtype == np.uint8 and i[K.FRAME_STEP] == i[K.STEP]


def test_success_terminates_with_a_final_frame_and_reward_modes():
    for mode in ("none", "sparse", "dense"):
        env = ToyReachEnv({"reward_mode": mode, "frame_stride": 7})
        infos, rewards, term = run_episode(env, seed=1, policy=toward_goal)
        assert term and infos[-1][K.SUCCESS] and infos[-1][K.HAS_FRAME]
        gt = [i[K.ENV_REWARD] for i in infos[1:]]
        expected = {"none": [0.0] * len(gt), "sparse": [0.0] * (len(gt) - 1) + [1.0], "dense": gt}[mode]
        assert rewards == pytest.approx(expected)
        assert gt[-1] > gt[0]  # moving towards the goal raises the dense reward


def test_end_on_success_false_runs_to_the_time_limit_and_keeps_paying_for_success():
    env = ToyReachEnv({"reward_mode": "sparse", "end_on_success": False, "max_episode_steps": 30})
    infos, rewards, term = run_episode(env, seed=1, policy=toward_goal)
    first = next(i for i, info in enumerate(infos) if info[K.SUCCESS])
    assert not term and len(infos) == 31 and 0 < first < 30  # succeeded early, ran on to the limit
    assert rewards == pytest.approx([float(i[K.SUCCESS]) for i in infos[1:]]) and sum(rewards) > 1


def test_frame_shows_the_agent_moving():
    env = ToyReachEnv({"frame_size": 32})
    _, info0 = env.reset(seed=3)
    _, _, _, _, info1 = env.step(np.array([1.0, 1.0], np.float32))
    assert not np.array_equal(info0[K.FRAME], info1[K.FRAME])


def test_bad_config_is_rejected_with_the_reason():
    with pytest.raises(ValueError, match="reward_mode"):
        ToyReachEnv({"reward_mode": "shaped"})
    with pytest.raises(ValueError, match="unknown ToyReach env config keys"):
        ToyReachEnv({"frame_strid": 2})
    with pytest.raises(ValueError, match="only runs"):
        ToyReachEnv({"task": "PushCube-v1"})
    with pytest.raises(ValueError, match="frame_stride"):
        ToyReachEnv({"frame_stride": 0})


def test_registered_with_gymnasium():
    register_toy_reach()
    env = gym.make(GYM_ID, config={"frame_stride": 2})
    obs, info = env.reset(seed=0)
    assert obs.shape == (6,) and info[K.HAS_FRAME]


def test_toy_dataset_gives_every_task_text_every_source(tmp_path):
    """Text and data quality must be independent, or a language-conditioned policy reads quality off the wording."""
    from collections import Counter

    from vlmrl.envs.offline_readers import open_reader
    from vlmrl.envs.toy_reach_dataset import SOURCES, TOY_TEXTS, write_toy_dataset

    n = 2 * len(SOURCES) * len(TOY_TEXTS["seen"])
    pairs = Counter((ep.task, ep.source) for ep in open_reader(write_toy_dataset(tmp_path / "ds", n, max_steps=3)))
    assert pairs == Counter({(t, s): 2 for t in TOY_TEXTS["seen"] for s in SOURCES})
