"""Real SAPIEN rendering: the diagnosis is clear when impossible, and frames come out when possible."""

import numpy as np
import pytest

from vlmrl.envs import rendering
from vlmrl.envs.rendering import RenderingUnavailable, check_rendering, rendering_status


def test_missing_vulkan_driver_is_reported_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("VK_ICD_FILENAMES", str(tmp_path / "intel_icd.json"))
    rendering_status.cache_clear()
    try:
        with pytest.raises(RenderingUnavailable, match="no usable Vulkan driver"):
            check_rendering()
    finally:
        rendering_status.cache_clear()


def test_old_mesa_is_reported_clearly(monkeypatch):
    monkeypatch.setattr(rendering, "_icd_files", lambda: ["/usr/share/vulkan/icd.d/lvp_icd.json"])
    monkeypatch.setattr(rendering, "_mesa_version", lambda: "22.3.6-1+deb12u1")
    rendering_status.cache_clear()
    try:
        status = rendering_status()
        assert not status.ok and "too old" in status.reason and "make render-deps" in status.reason
    finally:
        rendering_status.cache_clear()


def _require_rendering():
    status = rendering_status()
    if not status.ok:
        pytest.skip(f"rendering unavailable: {status.reason}")


@pytest.mark.render
def test_real_frames_at_stride():
    _require_rendering()
    from vlmrl.envs.maniskill_env import ManiSkillTaskEnv

    env = ManiSkillTaskEnv(None, frame_size=64, frame_stride=2, max_episode_steps=4)
    _, info = env.reset(seed=0)
    frames = [info["frame"]]
    for _ in range(4):
        _, _, _, trunc, info = env.step(env.action_space.sample())
        if info["has_frame"]:
            frames.append(info["frame"])
    env.close()
    assert trunc and len(frames) == 3  # steps 0, 2, 4
    for f in frames:
        assert f.shape == (64, 64, 3) and f.dtype == np.uint8
        assert f.std() > 5  # a real scene, not a blank image
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.1  # the arm moved


def _cube_pixels(frame):
    """Pixels of PushCube's blue cube (blue well above red and green; the table is orange, the arm grey)."""
    f = frame.astype(int)
    return int(((f[..., 2] > f[..., 0] + 40) & (f[..., 2] > f[..., 1] + 40)).sum())


@pytest.mark.render
def test_camera_look_at_moves_the_frame_camera_closer_to_the_cube():
    _require_rendering()
    from vlmrl.envs.maniskill_env import ManiSkillTaskEnv

    cube_px = []
    for look in (None, [0.6, 0.0, 0.35, 0.05, 0.0, 0.0]):  # the task's view; the goal-side view of RESULTS.md
        env = ManiSkillTaskEnv(None, frame_size=64, camera_look_at=look, camera_fov=None if look is None else 1.0)
        _, info = env.reset(seed=0)
        cube_px.append(_cube_pixels(info["frame"]))
        env.close()
    assert cube_px[0] > 0 and cube_px[1] >= 1.4 * cube_px[0], cube_px  # measured: 11 -> 17
    with pytest.raises(ValueError, match="'base_camera' is not one of PushCube-v1's"):
        ManiSkillTaskEnv(None, frame_size=64, camera="base_camera", camera_look_at=[0.3, 0, 0.5, 0, 0, 0])
