"""ManiSkillTaskEnv without rendering: observation format, info keys, reward modes, frame bookkeeping."""

import numpy as np
import pytest

from vlmrl.envs.maniskill_env import FrameSchedule, ManiSkillTaskEnv, make_env
from vlmrl.system.config import load_config


@pytest.fixture(scope="module")
def state_env():
    env = make_env(load_config(None, ["env.capture_frames=false"]))  # root config: its env section is used
    yield env
    env.close()


def test_state_observation_and_info(state_env):
    obs, info = state_env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.ndim == 1 and state_env.observation_space.contains(obs)
    assert info["task_text"] in state_env.task.seen and info["step"] == 0 and info["has_frame"] is False
    assert "frame" not in info and isinstance(info["success"], bool) and isinstance(info["env_reward"], float)
    obs2, r, term, trunc, info = state_env.step(state_env.action_space.sample())
    assert obs2.shape == obs.shape and not np.allclose(obs, obs2)
    assert r == 0.0 and isinstance(term, bool) and isinstance(trunc, bool)  # reward_mode none
    assert 0.0 <= info["env_reward"] <= 1.0 and info["step"] == 1


def test_episode_truncates_at_task_limit(state_env):
    state_env.reset(seed=0)
    for i in range(state_env.task.max_episode_steps):
        _, _, term, trunc, _ = state_env.step(np.zeros(state_env.action_space.shape, np.float32))
    assert trunc and not term


@pytest.mark.parametrize("end_on_success", [True, False])
def test_end_on_success(end_on_success):
    """ManiSkill ends PushCube on success; end_on_success=False runs on to the time limit (success in info only)."""
    from vlmrl.envs.scripted import SCRIPTED_CONTROL_MODE, scripted_controller

    env = ManiSkillTaskEnv(None, capture_frames=False, control_mode=SCRIPTED_CONTROL_MODE,
                           end_on_success=end_on_success)
    env.reset(seed=0)
    ctl = scripted_controller(env.task.env_id, env)
    steps = []
    for _ in range(env.task.max_episode_steps):
        _, _, term, trunc, info = env.step(ctl.act())
        steps.append((term, trunc, info["success"]))
        if term or trunc:
            break
    first = next(i for i, (_, _, ok) in enumerate(steps) if ok)
    if end_on_success:
        assert steps[-1] == (True, False, True) and len(steps) == first + 1
    else:
        assert not any(t for t, _, _ in steps) and steps[-1][1] and len(steps) == env.task.max_episode_steps
        assert first < 40 and all(ok for _, _, ok in steps[first:])  # the pushed cube stays on the goal
    env.close()


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_reward_modes(mode):
    env = ManiSkillTaskEnv(None, capture_frames=False, reward_mode=mode)
    env.reset(seed=1)
    _, r, _, _, info = env.step(env.action_space.sample())
    expected = float(info["success"]) if mode == "sparse" else info["env_reward"]
    assert r == pytest.approx(expected) and (mode == "sparse" or r > 0.0)
    env.close()


def test_bad_config_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="reward_mode"):
        ManiSkillTaskEnv(None, capture_frames=False, reward_mode="shaped")
    with pytest.raises(ValueError, match="num_envs > 1 needs env.sim_backend=gpu"):
        ManiSkillTaskEnv(None, capture_frames=False, num_envs=4)
    with pytest.raises(ValueError, match="unknown env config keys"):
        ManiSkillTaskEnv(None, capture_frames=False, framesize=64)
    with pytest.raises(ValueError, match="frame_stride"):
        FrameSchedule(0)
    with pytest.raises(ValueError, match="camera_look_at must be"):
        ManiSkillTaskEnv(None, capture_frames=False, camera_look_at=[0.3, 0.0, 0.5])
    with pytest.raises(ValueError, match="camera_fov must be in"):
        ManiSkillTaskEnv(None, capture_frames=False, camera_fov=4.0)


def test_gpu_backend_needs_cuda():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present; this checks the CPU-machine error")
    with pytest.raises(ValueError, match="CUDA"):
        ManiSkillTaskEnv(None, capture_frames=False, sim_backend="gpu", num_envs=2)


class CountingFakeFrameSource:
    """FAKE renderer for the stride bookkeeping test only: returns a frame whose pixels encode the call count."""

    def __init__(self, size=8):
        self.calls = 0
        self.size = size

    def capture(self):
        self.calls += 1
        return np.full((1, self.size, self.size, 3), self.calls, np.uint8)


def test_frames_only_at_reset_stride_and_episode_end():
    fake = CountingFakeFrameSource()
    env = ManiSkillTaskEnv(None, frame_source=fake, frame_stride=4, max_episode_steps=10)
    _, info = env.reset(seed=0)
    steps_with_frames = [0] if info["has_frame"] else []
    while True:
        _, _, term, trunc, info = env.step(np.zeros(env.action_space.shape, np.float32))
        if info["has_frame"]:
            steps_with_frames.append(info["frame_step"])
            assert info["frame"].shape == (8, 8, 3) and info["frame"].dtype == np.uint8
        else:
            assert "frame" not in info
        if term or trunc:
            break
    assert steps_with_frames == [0, 4, 8, 10]  # reset, every 4th step, the final (truncated) step
    assert fake.calls == 4
    env.close()


def test_no_render_device_says_how_to_install_one(monkeypatch):
    """SAPIEN needs a Vulkan device even for state-only envs; without one the error names `make render-deps`."""
    import gymnasium as gym

    from vlmrl.envs.rendering import RenderingUnavailable

    def no_device(*args, **kwargs):
        raise RuntimeError("failed to find a rendering device")

    monkeypatch.setattr(gym, "make", no_device)
    with pytest.raises(RenderingUnavailable, match="make render-deps") as err:
        ManiSkillTaskEnv(None, capture_frames=False)
    assert "PushCube-v1" in str(err.value) and "state-only" in str(err.value)
