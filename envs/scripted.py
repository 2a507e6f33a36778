"""Scripted (closed-loop, privileged-state) controllers that solve tasks for demo recording.

Why: ManiSkill's motion planners need ``mplib==0.1.1``, whose compiled module was built against
numpy 1.x and crashes (segfault) under the numpy 2 this project uses; :func:`motion_planning_status`
says so. These controllers read object poses from the simulator (``env.unwrapped``) and command the
end effector in ``pd_ee_delta_pose`` (normalized position deltas, no rotation), the same control
mode as the RL policy's default, so demos, noisy demos, random episodes and policy episodes share
one action space.

Near misses (hard negatives for reward-model training, :func:`near_miss_controller`): the same controllers,
made to fail the way a policy that exploits a reward model does -- they look like a demo (the arm in the
pose of the task's motion) while the task is not done. Their counterpart, :class:`RetreatAfterSuccess`: a
demo whose arm leaves once the task is done, while the object stays done. Together they make "done" a
property of the object and the goal, not of the arm's pose.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

import numpy as np

SCRIPTED_CONTROL_MODE = "pd_ee_delta_pose"
POS_SCALE = 0.1
"""pd_ee_delta_pose maps a normalized action of 1 to 0.1 m."""
GRIPPER_OPEN, GRIPPER_CLOSED = 1.0, -1.0


def _p(actor: Any) -> np.ndarray:
    return actor.pose.p.detach().cpu().numpy().reshape(-1, 3)[0].astype(np.float64)


def _flag(x: Any) -> bool:
    """A ManiSkill per-env boolean (a tensor of one env, or a plain bool) as a Python bool."""
    return bool(x.reshape(-1)[0].item()) if hasattr(x, "reshape") else bool(x)


class ScriptedController:
    """Base: waypoint following with a proportional controller in end-effector space.

    ``goal_offset`` (m, added to the task's goal) and ``hold_phase`` (stop advancing when this phase is reached:
    hold the pose there) turn a controller into a near miss; the defaults solve the task."""

    gain = 1.0
    hold_before: int = 0
    """The phase that changes the task state (push / lift); ``stop_short`` near misses hold just before it."""
    miss_distance: Tuple[float, float] = (0.15, 0.25)
    """Range of the goal offset (m) of ``wrong_goal`` near misses: outside the task's success tolerance."""
    stays_done_without_arm = False
    """The task stays solved when the arm leaves (a pushed cube does; a lifted one falls)."""

    def __init__(self, env: Any, goal_offset: Optional[np.ndarray] = None, hold_phase: Optional[int] = None) -> None:
        self.base = env.unwrapped
        self.phase = 0
        self.goal_offset = np.zeros(3) if goal_offset is None else np.asarray(goal_offset, np.float64)
        self.hold_phase = hold_phase
        self._hold_at: Optional[np.ndarray] = None

    def task_done(self) -> bool:
        """The simulator's own success flag for the current state (privileged, like the object poses)."""
        return _flag(self.base.evaluate()["success"])

    def object_actor(self) -> Any:  # pragma: no cover - abstract
        """The simulator actor of the object the task moves."""
        raise NotImplementedError

    def object_and_goal(self) -> Tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        """Positions of the object the task moves and of the task's (true) goal."""
        raise NotImplementedError

    def goal(self, actor: Any) -> np.ndarray:
        return _p(actor) + self.goal_offset

    def holding(self, gripper: float) -> Optional[np.ndarray]:
        """The hold action once ``hold_phase`` is reached (the tcp stays where it was), else None."""
        if self.hold_phase is None or self.phase < self.hold_phase:
            return None
        if self._hold_at is None:
            self._hold_at = _p(self.base.agent.tcp)
        return self.move(self._hold_at, gripper)

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
    hold_before = 2
    miss_distance = (0.15, 0.25)  # PushCube's goal radius is 0.1 m
    stays_done_without_arm = True

    def object_actor(self) -> Any:
        return self.base.obj

    def object_and_goal(self) -> Tuple[np.ndarray, np.ndarray]:
        return _p(self.base.obj), _p(self.base.goal_region)

    def act(self) -> np.ndarray:
        hold = self.holding(GRIPPER_CLOSED)
        if hold is not None:
            return hold
        b = self.base
        cube, goal, h = _p(b.obj), self.goal(b.goal_region), float(b.cube_half_size)
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
    """PickCube: open above the cube, descend, close, lift the cube to the goal point.

    The phase is read off the state at every step (grasped -> lift; tcp at the cube -> close; tcp over the cube ->
    descend; else go above it), with no timers: the demo's action is then a function of what the policy observes
    (PickCube's state has ``is_grasped`` and the tcp-to-cube offset), which behaviour cloning needs. A timed
    close-then-lift gave BC 0-5% greedy success from 16-100 demos (RESULTS.md, session 8). A dropped cube is
    picked up again."""

    hold_before = 3
    miss_distance = (0.08, 0.15)  # PickCube's goal tolerance is 0.025 m
    close_at = 0.01
    """Close the gripper when the tcp is this close to the cube's centre (m)."""
    over = 0.015
    """Descend once the tcp is this close to the cube in x/y (m)."""

    def object_actor(self) -> Any:
        return self.base.cube

    def object_and_goal(self) -> Tuple[np.ndarray, np.ndarray]:
        return _p(self.base.cube), _p(self.base.goal_site)

    def state_phase(self) -> int:
        """0 go above the cube, 1 descend, 2 close, 3 lift to the goal (from the current state)."""
        b = self.base
        tcp, cube = _p(b.agent.tcp), _p(b.cube)
        dist = np.linalg.norm(tcp - cube)
        # is_grasping reads contact forces, which right after a reset can still be the last episode's
        if _flag(b.agent.is_grasping(b.cube)) and dist < 2 * self.close_at:
            return 3
        if dist < self.close_at:
            return 2
        return 1 if np.linalg.norm(tcp[:2] - cube[:2]) < self.over else 0

    def act(self) -> np.ndarray:
        self.phase = self.state_phase()
        hold = self.holding(GRIPPER_CLOSED if self.phase >= 2 else GRIPPER_OPEN)
        if hold is not None:
            return hold
        b = self.base
        cube, goal = _p(b.cube), self.goal(b.goal_site)
        if self.phase == 0:
            return self.move(cube + np.array([0, 0, 0.08]), GRIPPER_OPEN)
        if self.phase == 1:
            return self.move(cube, GRIPPER_OPEN)
        if self.phase == 2:
            return self.move(cube, GRIPPER_CLOSED)
        return self.move(goal, GRIPPER_CLOSED)


SCRIPTED_CONTROLLERS: Dict[str, Type[ScriptedController]] = {
    "PushCube-v1": PushToGoal,
    "PullCube-v1": PushToGoal,
    "PickCube-v1": PickToGoal,
}


def controller_class(env_id: str) -> Type[ScriptedController]:
    """The scripted controller class of ``env_id``; a clear error lists the env ids that have one."""
    cls = SCRIPTED_CONTROLLERS.get(env_id)
    if cls is None:
        raise ValueError(f"no scripted controller for {env_id}; available: {sorted(SCRIPTED_CONTROLLERS)}")
    return cls


def scripted_controller(env_id: str, env: Any) -> ScriptedController:
    return controller_class(env_id)(env)


class RetreatAfterSuccess:
    """A demo (the task's scripted controller) until the task is done; then the arm leaves -- straight up, then
    to a random point above the table -- and holds there while the object stays on the goal.

    ``leave_at_step``: leave at this step whether or not the task is done (the ``leave_undone`` near miss: the
    same arm-away pose with the object off the goal, so the pose alone cannot mean "done")."""

    lift = 0.12
    """First retreat waypoint: this far above the tcp where the arm starts to leave (m)."""
    spread = 0.2
    """Second waypoint: up to this far (m, per axis in x/y) from the first, at 0.1-0.25 m height."""

    def __init__(self, inner: ScriptedController, rng: np.random.Generator,
                 leave_at_step: Optional[int] = None) -> None:
        if leave_at_step is None and not inner.stays_done_without_arm:
            raise ValueError(f"{type(inner).__name__}: its task is not done without the arm holding the object; "
                             "retreat episodes need a push task (PushCube, PullCube)")
        self.inner, self.rng, self.leave_at_step = inner, rng, leave_at_step
        self.steps = 0
        self.waypoints: Optional[list] = None

    def act(self) -> np.ndarray:
        ctl = self.inner
        self.steps += 1
        if self.waypoints is None:
            leave = ctl.task_done() if self.leave_at_step is None else self.steps > self.leave_at_step
            if not leave:
                return ctl.act()
            up = _p(ctl.base.agent.tcp) + np.array([0.0, 0.0, self.lift])
            far = np.array([up[0] + self.rng.uniform(-self.spread, self.spread),
                            up[1] + self.rng.uniform(-self.spread, self.spread), self.rng.uniform(0.1, 0.25)])
            self.waypoints = [up, far]
        if len(self.waypoints) > 1 and ctl.reached(self.waypoints[0], 0.02):
            self.waypoints.pop(0)
        return ctl.move(self.waypoints[0], GRIPPER_CLOSED)


NEAR_MISS_KINDS = ("stop_short", "wrong_goal", "leave_undone")
"""``stop_short``: the demo's approach, then the arm holds the pose from which the task-changing motion (push,
lift) would start; ``wrong_goal``: the whole demo motion, aimed at a point ``miss_distance`` from the goal;
``leave_undone``: a ``stop_short`` or ``wrong_goal`` whose arm leaves like a retreat demo's after 15-30 steps."""


def near_miss_controller(env_id: str, env: Any, kind: str, rng: np.random.Generator) -> Any:
    """A scripted controller for ``env_id`` that fails in the way ``kind`` (one of :data:`NEAR_MISS_KINDS`) says."""
    if kind not in NEAR_MISS_KINDS:
        raise ValueError(f"near-miss kind must be one of {NEAR_MISS_KINDS}, got {kind!r}")
    cls = controller_class(env_id)
    if kind == "leave_undone":
        inner = near_miss_controller(env_id, env, NEAR_MISS_KINDS[int(rng.integers(2))], rng)
        return RetreatAfterSuccess(inner, rng, leave_at_step=int(rng.integers(15, 31)))
    if kind == "stop_short":
        return cls(env, hold_phase=cls.hold_before)
    ctl = cls(env)
    obj, goal = ctl.object_and_goal()
    for _ in range(100):  # a wrong goal whose straight path from the object does not pass through the true goal
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(*cls.miss_distance)
        offset = np.array([dist * np.cos(angle), dist * np.sin(angle), 0.0])
        if _segment_distance(goal, obj, goal + offset) >= 0.8 * cls.miss_distance[0]:
            break
    ctl.goal_offset = offset
    return ctl


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Distance from point p to the segment a-b."""
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / (np.dot(ab, ab) + 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


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
