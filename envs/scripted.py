"""Scripted (closed-loop, privileged-state) controllers that solve tasks for demo recording.

Why: ManiSkill's motion planners need ``mplib==0.1.1``, whose compiled module was built against
numpy 1.x and crashes (segfault) under the numpy 2 this project uses; :func:`motion_planning_status`
says so. These controllers read object poses from the simulator (``env.unwrapped``) and command the
end effector in ``pd_ee_delta_pose`` (normalized position deltas, no rotation), the same control
mode as the RL policy's default, so demos, noisy demos, random episodes and policy episodes share
one action space.
"""

from __future__ import annotations

from typing import Any, Dict, Type

import numpy as np

SCRIPTED_CONTROL_MODE = "pd_ee_delta_pose"
POS_SCALE = 0.1
"""pd_ee_delta_pose maps a normalized action of 1 to 0.1 m."""
GRIPPER_OPEN, GRIPPER_CLOSED = 1.0, -1.0


def _p(actor: Any) -> np.ndarray:
    return actor.pose.p.detach().cpu().numpy().reshape(-1, 3)[0].astype(np.float64)


class ScriptedController:
    """Base: waypoint following with a proportional controller in end-effector space."""

    gain = 1.0

    def __init__(self, env: Any) -> None:
        self.base = env.unwrapped
        self.phase = 0
        self.timer = 0

    def move(self, target: np.ndarray, gripper: float) -> np.ndarray:
        tcp = _p(self.base.agent.tcp)
        delta = np.clip(self.gain * (target - tcp) / POS_SCALE, -1.0, 1.0)
        return np.concatenate([delta, np.zeros(3), [gripper]]).astype(np.float32)

    def reached(self, target: np.ndarray, tol: float = 0.01) -> bool:
        return bool(np.linalg.norm(_p(self.base.agent.tcp) - target) < tol)

    def act(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class PushToGoal(ScriptedController):
    """PushCube / PullCube: put the closed gripper behind the cube (seen from the goal) and push it onto the goal."""

    push_speed = 0.4
    """Largest normalized action while pushing (faster pushes make the cube slide past the goal)."""

    def act(self) -> np.ndarray:
        b = self.base
        cube, goal, h = _p(b.obj), _p(b.goal_region), float(b.cube_half_size)
        d = goal[:2] - cube[:2]
        d = d / (np.linalg.norm(d) + 1e-9)
        behind = np.array([cube[0] - d[0] * (h + 0.03), cube[1] - d[1] * (h + 0.03), h])
        above = behind + np.array([0, 0, 0.08])
        if self.phase == 0:
            if self.reached(above, 0.015):
                self.phase = 1
            return self.move(above, GRIPPER_CLOSED)
        if self.phase == 1:
            if self.reached(behind, 0.01):
                self.phase = 2
            return self.move(behind, GRIPPER_CLOSED)
        # stop with the cube centred on the goal (tcp one cube half + finger behind it), pushing gently
        push_to = np.array([goal[0] - d[0] * (h + 0.02), goal[1] - d[1] * (h + 0.02), h])
        a = self.move(push_to, GRIPPER_CLOSED)
        a[:3] = np.clip(a[:3], -self.push_speed, self.push_speed)
        return a


class PickToGoal(ScriptedController):
    """PickCube: open above the cube, descend, close, lift the cube to the goal point."""

    def act(self) -> np.ndarray:
        b = self.base
        cube, goal = _p(b.cube), _p(b.goal_site)
        above = cube + np.array([0, 0, 0.08])
        if self.phase == 0:
            if self.reached(above, 0.015):
                self.phase = 1
            return self.move(above, GRIPPER_OPEN)
        if self.phase == 1:
            if self.reached(cube, 0.008):
                self.phase = 2
            return self.move(cube, GRIPPER_OPEN)
        if self.phase == 2:
            self.timer += 1
            if self.timer >= 6:
                self.phase = 3
            return self.move(cube, GRIPPER_CLOSED)
        return self.move(goal, GRIPPER_CLOSED)


SCRIPTED_CONTROLLERS: Dict[str, Type[ScriptedController]] = {
    "PushCube-v1": PushToGoal,
    "PullCube-v1": PushToGoal,
    "PickCube-v1": PickToGoal,
}


def scripted_controller(env_id: str, env: Any) -> ScriptedController:
    if env_id not in SCRIPTED_CONTROLLERS:
        raise ValueError(f"no scripted controller for {env_id}; available: {sorted(SCRIPTED_CONTROLLERS)}")
    return SCRIPTED_CONTROLLERS[env_id](env)


def motion_planning_status() -> str:
    """'' when ManiSkill's mplib motion planners can run here, else why not (checked without crashing)."""
    try:
        from importlib.metadata import version
        mplib_version = version("mplib")
    except Exception:
        return "mplib is not installed (ManiSkill's motion planners need mplib==0.1.1)"
    if mplib_version == "0.1.1" and int(np.__version__.split(".")[0]) >= 2:
        return (f"mplib 0.1.1 is built against numpy 1.x and segfaults under numpy {np.__version__} "
                "(planner construction); using scripted controllers instead")
    return ""
