"""Recording scripted demos / noisy / random episodes into a dataset and reading them back."""

import numpy as np
import pytest

from vlmrl.envs.dataset import iter_episodes, read_index
from vlmrl.envs.rendering import rendering_status
from vlmrl.envs.scripted import SCRIPTED_CONTROL_MODE, motion_planning_status
from vlmrl.system.config import load_config


def _record(tmp_path, capture_frames, **counts):
    from vlmrl.envs.recording import record_dataset

    overrides = [f"record_demos.output_dir={tmp_path}", "env.frame_size=32", "record_demos.frame_stride=5",
                 f"env.capture_frames={str(capture_frames).lower()}"]
    overrides += [f"record_demos.{k}={v}" for k, v in counts.items()]
    cfg = load_config(None, overrides)
    lines = []
    stats = record_dataset(cfg.env, cfg.record_demos, log=lines.append)
    return stats, lines


def test_state_only_recording_round_trips(tmp_path):
    stats, lines = _record(tmp_path, False, num_demo=2, num_noisy=1, num_random=1)
    index = read_index(tmp_path)
    assert [e["source"] for e in index] == ["demo", "demo", "noisy_demo", "random"]
    assert stats.written == {"demo": 2, "noisy_demo": 1, "random": 1} and len(lines) == 4
    assert "success rate" in lines[0] and "steps/s" in lines[0]
    eps = list(iter_episodes(tmp_path))
    for ep in eps:
        assert ep.meta["control_mode"] == SCRIPTED_CONTROL_MODE
        assert ep.task in __import__("vlmrl.envs.tasks", fromlist=["x"]).get_task("PushCube-v1").seen
        assert ep.actions.shape[1] == 7 and len(ep.frames) == 0
    demo = eps[0]
    assert demo.succeeded and not demo.success[0] and demo.success[-1]
    assert np.all(np.diff(demo.success.astype(int)) >= 0)  # a pushed cube stays on the goal
    assert eps[3].num_steps == 50 and not eps[3].succeeded  # random: full episode, fails
    # the noisy demo starts from its demo's seed and first action, perturbed
    assert eps[2].seed == eps[0].seed and not np.allclose(eps[2].actions[0], eps[0].actions[0])


@pytest.mark.render
def test_recording_with_frames(tmp_path):
    status = rendering_status()
    if not status.ok:
        pytest.skip(f"rendering unavailable: {status.reason}")
    _record(tmp_path, True, num_demo=1, num_noisy=0, num_random=0)
    (ep,) = list(iter_episodes(tmp_path))
    T = ep.num_steps
    first_success = int(np.argmax(ep.success))
    # every 5th step, and every step from success on: ManiSkill terminates on success, and the recorder
    # keeps stepping a few steps after it (each of those steps ends an episode, so each gets a frame)
    expected = sorted(set(range(0, T + 1, 5)) | set(range(first_success, T + 1)))
    assert ep.frame_steps.tolist() == expected and ep.frames.shape[1:] == (32, 32, 3)
    assert ep.frames[-1].std() > 5


def test_motion_planner_status_is_explained():
    why = motion_planning_status()
    if why:
        assert "mplib" in why
    with pytest.raises((RuntimeError, ValueError)):
        cfg = load_config(None, ["record_demos.demo_policy=teleop", "env.capture_frames=false"])
        from vlmrl.envs.recording import record_dataset
        record_dataset(cfg.env, cfg.record_demos, log=lambda m: None)
