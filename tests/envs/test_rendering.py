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
