"""The scripted behaviour library (envs/behaviours.py): state layout, geometry-driven behaviours, errors."""

import numpy as np
import pytest

from vlmrl.envs.behaviours import (BEHAVIOURS, STATE_LAYOUT, Geometry, behaviour_seeds, behaviours_for,
                                   object_goal_distance, rollout)
from vlmrl.envs.scripted import _p, controller_class


def _env(task):
    from vlmrl.envs.behaviours import make_behaviour_env

    return make_behaviour_env({"task": task, "capture_frames": False}, task, frame_stride=1)


@pytest.mark.parametrize("task", sorted(STATE_LAYOUT))
def test_state_layout_matches_the_simulator(task):
    env = _env(task)
    try:
        for seed in (0, 7):
            obs, _ = env.reset(seed=seed)
            ctl = controller_class(task)(env)
            obj, goal = ctl.object_and_goal()
            lay = STATE_LAYOUT[task]
            np.testing.assert_allclose(obs[lay["object"]], obj, atol=1e-5)
            np.testing.assert_allclose(obs[lay["goal"]], goal, atol=1e-5)
            np.testing.assert_allclose(obs[lay["tcp"]], _p(env.unwrapped.agent.tcp), atol=1e-5)
    finally:
        env.close()


def test_behaviours_do_what_their_names_say_on_pushcube():
    env = _env("PushCube-v1")
    rng = np.random.default_rng(0)
    try:
        def run(name, seed=3):
            ep = rollout(env, BEHAVIOURS[name], seed, rng, 50)
            return ep, object_goal_distance(ep.env_id, ep.states)

        ep, d = run("solve")
        assert ep.success[-1] and ep.meta == {"behaviour": "solve", "category": "success"}
        for arm_only in ("arm_to_goal", "arm_around_object", "occlude_goal", "idle", "near_miss_stop_short"):
            ep, d = run(arm_only)
            assert not ep.success.any() and abs(d[-1] - d[0]) < 2e-3, arm_only  # the cube stays where it was
        ep, _ = run("arm_to_goal")
        env.reset(seed=3)
        solved = Geometry(controller_class("PushCube-v1")(env)).solved_tcp()
        assert np.linalg.norm(ep.states[-1, STATE_LAYOUT["PushCube-v1"]["tcp"]] - solved) < 0.03  # success pose
        ep, d = run("push_away")
        assert not ep.success.any() and d[-1] > d[0] + 0.1  # moved, the wrong way
        ep, d = run("solve_displaced")
        tcp = ep.states[:, STATE_LAYOUT["PushCube-v1"]["tcp"]]
        lo, hi = controller_class("PushCube-v1").miss_distance
        assert ep.success.any() and not ep.success[-1]  # solved, then undone
        assert lo - 1e-3 <= d[-1] <= hi + 1e-3 and abs(d[-1] - d[-10]) < 1e-3  # off the goal, at rest
        assert np.linalg.norm(tcp[-1] - tcp[-10]) < 5e-3  # the arm holds the pose it solved the task in
        moved = int(np.argmax(ep.success)) + int(np.argmax(~ep.success[np.argmax(ep.success):]))
        solved, _ = run("solve")  # same seed, same controller up to the move: the arm stays where the demo was then
        assert np.linalg.norm(tcp[-1] - solved.states[moved, STATE_LAYOUT["PushCube-v1"]["tcp"]]) < 0.01
    finally:
        env.close()


def test_library_per_task_and_errors():
    push = {b.name for b in behaviours_for("PushCube-v1")}
    pick = {b.name for b in behaviours_for("PickCube-v1")}
    assert push - pick == {"solve_retreat"}  # a lifted cube falls when the arm leaves
    assert {b.category for b in BEHAVIOURS.values()} == {"success", "non_progress"}
    assert len([n for n in pick if BEHAVIOURS[n].category == "non_progress"]) >= 12
    assert "solve_displaced" in pick  # the counterfactual runs on a lift task too (the object put back on the table)
    with pytest.raises(ValueError, match="no scripted controller for StackCube-v1"):
        behaviours_for("StackCube-v1")
    with pytest.raises(ValueError, match="unknown behaviour"):
        behaviours_for("PushCube-v1", ["moonwalk"])
    assert list(behaviour_seeds(3, 2, 100)) == [100, 101, 102, 103, 104, 105]
    assert object_goal_distance("StackCube-v1", np.zeros((3, 50))) is None
