"""Recording scripted demos / noisy / random episodes into a dataset and reading them back."""

import numpy as np
import pytest

from vlmrl.envs.dataset import iter_episodes, read_index
from vlmrl.envs.rendering import rendering_status
from vlmrl.envs.scripted import NEAR_MISS_KINDS, SCRIPTED_CONTROL_MODE, motion_planning_status
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
    stats, lines = _record(tmp_path, False, num_demo=2, num_noisy=1, num_random=1, num_retreat=1, num_near_miss=3)
    index = read_index(tmp_path)
    assert [e["source"] for e in index] == ["demo", "demo", "noisy_demo", "random", "retreat"] + ["near_miss"] * 3
    assert stats.written == {"demo": 2, "noisy_demo": 1, "random": 1, "retreat": 1, "near_miss": 3} and len(lines) == 9
    assert lines[2].startswith("demos: the approach takes") and "lrm_train.near_miss_progress=" in lines[2]
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
    # a retreat demo succeeds and runs on to the time limit; near misses alternate their kinds and never succeed
    assert eps[4].num_steps == 50 and eps[4].success[-1]
    assert [ep.meta["near_miss"] for ep in eps[5:]] == list(NEAR_MISS_KINDS)
    assert all(ep.num_steps == 50 and not ep.success.any() for ep in eps[5:])
    # where the scripted controller began the push: before success in demos, in every near miss that got there
    for demo in eps[:2]:
        assert 0 < demo.meta["motion_start_step"] < int(np.argmax(demo.success))
    stop_short, wrong_goal, leave_undone = eps[5:]
    assert stop_short.meta["motion_start_step"] > 0 and wrong_goal.meta["motion_start_step"] > 0
    assert "left_at_step" not in stop_short.meta and 15 <= leave_undone.meta["left_at_step"] <= 31
    assert "motion_start_step" not in eps[2].meta  # replayed actions: no controller, no phases


def test_source_recorder_drops_wrong_outcomes_and_gives_up_after_enough_in_a_row():
    from vlmrl.envs.recording import EpisodeBuffer, _SourceRecorder

    written = []
    writer = type("Writer", (), {"write": lambda self, ep: written.append(ep)})()
    out = _SourceRecorder(writer, "PushCube-v1", {"camera": "base"}, seed=7, max_failures=3, log=lambda m: None)
    outcomes = iter([False, True, False, False, True, True])  # succeeded? the recorder keeps failures only

    def attempt():
        s, ok = out.next_seed(), next(outcomes)
        buf = EpisodeBuffer(task_text="push", seed=s)
        buf.add_state(np.zeros(3), {"success": False})
        buf.add_step(np.zeros(2), np.ones(3), {"success": ok, "env_reward": 0.5})
        return buf, {"kind": "x"}

    kept = out.record("near_miss", 3, attempt, keep=lambda b: b.first_success_step is None, dropped_why="succeeded")
    assert [b.seed for b in kept] == [7, 9, 10] and out.stats.attempts_dropped == 1
    assert [ep.meta for ep in written] == [{"camera": "base", "kind": "x"}] * 3
    assert out.stats.written == {"near_miss": 3} and out.stats.successes == {"near_miss": 0}
    with pytest.raises(RuntimeError, match="2 near_miss attempts in a row on PushCube-v1 succeeded; giving up"):
        out.max_failures = 2
        out.record("near_miss", 1, attempt, keep=lambda b: b.first_success_step is None, dropped_why="succeeded")
    assert len(written) == 3 and out.next_seed() == 13  # the seeds of dropped attempts are not reused


def test_near_misses_end_with_the_gripper_at_the_cube_and_the_task_undone():
    """What makes them hard negatives: the arm ends where a demo ends (at the cube), the cube is not on the goal.
    (A wrong-goal push can still slide the cube onto the goal now and then; the recorder drops those.)"""
    from vlmrl.envs.maniskill_env import ManiSkillTaskEnv
    from vlmrl.envs.scripted import _p, near_miss_controller

    cfg = load_config(None, ["env.capture_frames=false"])
    env = ManiSkillTaskEnv(cfg.env, task="PushCube-v1", control_mode=SCRIPTED_CONTROL_MODE, text_split="seen",
                           max_episode_steps=50)
    rng = np.random.default_rng(0)

    def run(seed, kind):
        env.reset(seed=seed)
        driver = near_miss_controller("PushCube-v1", env, kind, rng)
        ctl = getattr(driver, "inner", driver)  # leave_undone: a retreat around a near miss
        cube0, goal = ctl.object_and_goal()
        succeeded = any(bool(env.step(driver.act())[4]["success"]) for _ in range(50))
        cube, _ = ctl.object_and_goal()
        at_cube = np.linalg.norm(_p(env.unwrapped.agent.tcp)[:2] - cube[:2]) < 0.06
        return succeeded, at_cube, np.linalg.norm(cube[:2] - cube0[:2]), np.linalg.norm(cube[:2] - goal[:2])

    try:
        for seed in range(4):
            succeeded, at_cube, moved, _ = run(seed, "stop_short")
            assert not succeeded and at_cube and moved < 0.01, (seed, moved)
        wrong = [run(seed, "wrong_goal") for seed in range(10)]
        assert sum(s for s, *_ in wrong) <= 1
        pushed_elsewhere = [at_cube and moved > 0.05 and off > 0.1 for s, at_cube, moved, off in wrong]
        assert sum(pushed_elsewhere) >= 7, wrong
        for seed in range(4):  # leave_undone: the arm ends up and away, the cube is not on the goal
            succeeded, _, _, off = run(seed, "leave_undone")
            assert not succeeded and off > 0.1 and _p(env.unwrapped.agent.tcp)[2] > 0.08, seed  # arm up, away
    finally:
        env.close()


def test_retreat_demos_stay_done_with_the_arm_away_from_the_cube():
    from vlmrl.envs.maniskill_env import ManiSkillTaskEnv
    from vlmrl.envs.scripted import RetreatAfterSuccess, _p, scripted_controller

    cfg = load_config(None, ["env.capture_frames=false", "env.end_on_success=false"])
    env = ManiSkillTaskEnv(cfg.env, task="PushCube-v1", control_mode=SCRIPTED_CONTROL_MODE, text_split="seen")
    rng = np.random.default_rng(0)
    try:
        for seed in range(3):
            env.reset(seed=seed)
            ctl = RetreatAfterSuccess(scripted_controller("PushCube-v1", env), rng)
            success = [bool(env.step(ctl.act())[4]["success"]) for _ in range(50)]
            first = success.index(True)
            assert first < 30 and all(success[first:]), (seed, success)  # done, and stays done
            cube, _ = ctl.inner.object_and_goal()
            assert np.linalg.norm(_p(env.unwrapped.agent.tcp) - cube) > 0.1  # ... with the arm elsewhere
        env.reset(seed=0)
        with pytest.raises(ValueError, match="push task"):
            RetreatAfterSuccess(scripted_controller("PickCube-v1", env), rng)
    finally:
        env.close()


def test_pickcube_controller_reads_its_phase_off_the_state_and_holds_the_cube_at_the_goal():
    """PickCube's demo is Markov in what the policy observes (behaviour cloning needs that): phases follow each other
    approach -> descend -> close -> lift as the state changes, the cube is lifted only once grasped, and the arm holds
    it at the goal to the time limit. Its ``stop_short`` near miss grasps the cube and holds it on the table."""
    from vlmrl.envs.maniskill_env import ManiSkillTaskEnv
    from vlmrl.envs.scripted import _p, near_miss_controller, scripted_controller

    cfg = load_config(None, ["env.capture_frames=false", "env.end_on_success=false"])
    env = ManiSkillTaskEnv(cfg.env, task="PickCube-v1", control_mode=SCRIPTED_CONTROL_MODE, text_split="seen")
    try:
        for seed in range(3):
            env.reset(seed=seed)
            ctl = scripted_controller("PickCube-v1", env)
            phases, success, lifted_ungrasped = [], [], False
            for _ in range(env.task.max_episode_steps):
                info = env.step(ctl.act())[4]
                phases.append(ctl.phase)
                success.append(bool(info["success"]))
                cube, _ = ctl.object_and_goal()
                lifted_ungrasped |= cube[2] > 0.04 and not bool(env.unwrapped.agent.is_grasping(env.unwrapped.cube))
            firsts = [phases.index(k) for k in range(4)]
            assert firsts == sorted(firsts) and phases[-1] == 3, (seed, phases)
            assert not lifted_ungrasped and success[-1] and success.index(True) < 35, (seed, success)
        env.reset(seed=0)
        ctl = near_miss_controller("PickCube-v1", env, "stop_short", np.random.default_rng(0))
        success = [bool(env.step(ctl.act())[4]["success"]) for _ in range(30)]
        cube, _ = ctl.object_and_goal()
        assert not any(success) and ctl.phase == 3 and cube[2] < 0.03  # grasped, never lifted
        assert np.linalg.norm(_p(env.unwrapped.agent.tcp) - cube) < 0.02
    finally:
        env.close()


def test_an_episode_does_not_depend_on_the_one_before():
    """ManiSkill's CPU sim reads contacts from the last physics step, so right after a reset PickCube's
    ``is_grasped`` was the previous episode's grasp; ManiSkillTaskEnv.reset recomputes it from the reset state: the
    same seed and actions give the same observations after a grasping episode as on a fresh env."""
    from vlmrl.envs.maniskill_env import ManiSkillTaskEnv
    from vlmrl.envs.scripted import scripted_controller

    cfg = load_config(None, ["env.capture_frames=false", "env.end_on_success=false"])
    env = ManiSkillTaskEnv(cfg.env, task="PickCube-v1", control_mode=SCRIPTED_CONTROL_MODE, text_split="seen")
    try:
        actions = np.random.default_rng(0).uniform(-1, 1, (10, *env.action_space.shape)).astype(np.float32)

        def episode():
            obs = [env.reset(seed=0)[0]]
            return np.array(obs + [env.step(a)[0] for a in actions])

        first = episode()
        env.reset(seed=1)
        ctl = scripted_controller("PickCube-v1", env)
        for _ in range(60):
            env.step(ctl.act())
        assert bool(env.unwrapped.agent.is_grasping(env.unwrapped.cube))  # this episode ends holding the cube
        np.testing.assert_array_equal(episode(), first)
    finally:
        env.close()


def test_motion_planner_status_is_explained():
    why = motion_planning_status()
    if why:
        assert "mplib" in why
    with pytest.raises((RuntimeError, ValueError)):
        cfg = load_config(None, ["record_demos.demo_policy=teleop", "env.capture_frames=false"])
        from vlmrl.envs.recording import record_dataset
        record_dataset(cfg.env, cfg.record_demos, log=lambda m: None)
    if not why:  # a working motion planner: near misses still need the scripted controllers
        cfg = load_config(None, ["record_demos.demo_policy=motion_planner", "record_demos.num_near_miss=1",
                                 "env.capture_frames=false"])
        with pytest.raises(ValueError, match="need demo_policy=scripted"):
            record_dataset(cfg.env, cfg.record_demos, log=lambda m: None)
