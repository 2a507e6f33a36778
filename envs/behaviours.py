"""A library of scripted behaviours per task, for auditing a reward (``vlmrl audit-reward``) and for mining hard
negatives for reward-model training: successes and many kinds of non-progress.

Every behaviour is driven by the task geometry read from the simulator state at run time -- the object's and the
goal's positions (through the task's scripted controller, :mod:`vlmrl.envs.scripted`), the tcp's position and the
frame camera's position -- never by pixel positions, so one library serves every task that has a scripted
controller (PushCube, PullCube, PickCube) and any camera.

Categories (:data:`CATEGORIES`):

* ``success``: the task's scripted controller (``solve``) and, on push tasks, a solve whose arm leaves afterwards
  (``solve_retreat``);
* ``non_progress``: the object is NOT brought to the goal -- arm-only motions to the pose the tcp has in a solved
  episode, around the goal and around / above the object (object left in place), the arm occluding the object or
  the goal from the frame camera, pushes / lifts in a wrong direction or past the goal (overshoot), idle, jitter,
  the recorded near-miss kinds (:data:`vlmrl.envs.scripted.NEAR_MISS_KINDS`), and one counterfactual,
  ``solve_displaced``: a solve after which the simulator moves the object off the goal while the arm holds its
  solved pose (:class:`DisplaceAfterSuccess`) -- the state an overshoot or a knocked-away object leaves, with the
  object anywhere around the goal rather than where one scripted motion sends it.

A reward that pays a non-progress behaviour nearly as much as a success is exploitable by a policy trained on it.
:func:`rollout` records one episode of a behaviour in the project's episode format; :func:`record_behaviours`
writes many into a dataset (``source`` = ``behaviour``, ``meta.behaviour`` / ``meta.category``), e.g. as
ground-truth-labelled hard negatives on training seeds.

Task geometry in recorded states (:data:`STATE_LAYOUT`, :func:`object_goal_distance`,
:func:`tcp_object_distance`): where the tcp, the goal and the object sit in the flat state vector of each task, so
targets can be computed from any recorded episode without a simulator (``vlmrl.learner.reward_training.lrm_data``'s
object- and reach-aware progress, the reward audit's ground-truth check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from vlmrl.envs.scripted import (GRIPPER_CLOSED, GRIPPER_OPEN, NEAR_MISS_KINDS, RetreatAfterSuccess,
                                 ScriptedController, _p, controller_class, near_miss_controller)

CATEGORIES = ("success", "non_progress")

STATE_LAYOUT: Dict[str, Dict[str, slice]] = {
    "PushCube-v1": {"tcp": slice(18, 21), "goal": slice(25, 28), "object": slice(28, 31)},
    "PullCube-v1": {"tcp": slice(18, 21), "goal": slice(25, 28), "object": slice(28, 31)},
    "PickCube-v1": {"tcp": slice(19, 22), "goal": slice(26, 29), "object": slice(29, 32)},
}
"""Positions (x, y, z) inside the flat ``obs_mode=state`` vector of ManiSkill 3 (checked against the simulator in
tests/envs/test_behaviours.py)."""

PLANAR_TASKS = ("PushCube-v1", "PullCube-v1")
"""Tasks whose goal is a region on the table: object-to-goal distance is measured in x/y."""


def object_goal_distance(env_id: str, states: np.ndarray) -> Optional[np.ndarray]:
    """Object-to-goal distance (m) at every recorded state, or None for a task without a known layout."""
    d = _difference(env_id, states, "object", "goal")
    if d is None:
        return None
    if env_id in PLANAR_TASKS:
        d = d[:, :2]
    return np.linalg.norm(d, axis=1)


def tcp_object_distance(env_id: str, states: np.ndarray) -> Optional[np.ndarray]:
    """Tcp-to-object distance (m, 3-D) at every recorded state, or None for a task without a known layout."""
    d = _difference(env_id, states, "tcp", "object")
    return None if d is None else np.linalg.norm(d, axis=1)


def _difference(env_id: str, states: np.ndarray, a: str, b: str) -> Optional[np.ndarray]:
    layout = STATE_LAYOUT.get(env_id)
    if layout is None or states.ndim != 2 or states.shape[1] < max(s.stop for s in layout.values()):
        return None
    return states[:, layout[a]] - states[:, layout[b]]


def camera_eye(base: Any, camera: str) -> Optional[np.ndarray]:
    """World position of the frame camera (a human-render or sensor camera of the ManiSkill env), or None."""
    for table in (getattr(base, "_human_render_cameras", None), getattr(base, "_sensors", None)):
        cam = (table or {}).get(camera)
        if cam is not None and hasattr(cam, "camera"):
            return _p_pose(cam.camera.global_pose)
    return None


def _p_pose(pose: Any) -> np.ndarray:
    p = pose.p
    p = p.detach().cpu().numpy() if hasattr(p, "detach") else np.asarray(p)
    return p.reshape(-1, 3)[0].astype(np.float64)


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else fallback


class Geometry:
    """The task geometry a behaviour is driven by, read from the simulator through the task's controller."""

    def __init__(self, ctl: ScriptedController, camera: str = "render_camera") -> None:
        self.ctl = ctl
        self.base = ctl.base
        self.obj, self.goal = ctl.object_and_goal()
        self.tcp = _p(self.base.agent.tcp)
        self.half = float(getattr(self.base, "cube_half_size", 0.02))
        self.eye = camera_eye(self.base, camera)
        flat = self.goal[:2] - self.obj[:2]
        self.u = np.append(_unit(flat, np.array([1.0, 0.0])), 0.0)
        """Unit x/y direction from the object to the goal."""
        self.planar = self.goal[2] < 2 * self.half  # the goal lies on the table (push / pull)

    def solved_tcp(self) -> np.ndarray:
        """Where the tcp is when the task is solved: behind the object at the goal (push) or at the goal (lift)."""
        if self.planar:
            return np.array([*(self.goal[:2] - self.u[:2] * (self.half + 0.02)), self.half])
        return self.goal.copy()

    def toward_camera(self, point: np.ndarray, dist: float = 0.08) -> np.ndarray:
        """A point ``dist`` from ``point`` on the way to the frame camera (straight above it without a camera)."""
        up = np.array([0.0, 0.0, 1.0])
        d = up if self.eye is None else _unit(self.eye - point, up)
        p = point + dist * d
        p[2] = max(p[2], point[2] + 2 * self.half + 0.02)  # above the object: never push it
        return p


class WaypointArm:
    """Moves the tcp through waypoints (lifting over the object first) and then holds the last one, or cycles
    through them (``cycle``); the object is never touched on purpose."""

    clearance = 0.15
    """Height (m) of the transit between waypoints: above the object and the goal marker."""

    def __init__(self, ctl: ScriptedController, targets: Sequence[np.ndarray], gripper: float = GRIPPER_CLOSED,
                 cycle: bool = False) -> None:
        self.ctl, self.gripper, self.cycle = ctl, gripper, cycle
        tcp = _p(ctl.base.agent.tcp)
        first = np.asarray(targets[0], np.float64)
        z = max(self.clearance, tcp[2], first[2])
        self.path = [np.array([tcp[0], tcp[1], z]), np.array([first[0], first[1], z])]
        self.loop = [np.asarray(t, np.float64) for t in targets]
        self.phase = 0

    def act(self) -> np.ndarray:
        if self.path:
            if self.ctl.reached(self.path[0], 0.02):
                self.path.pop(0)
            if self.path:
                return self.ctl.move(self.path[0], self.gripper)
        if len(self.loop) > 1 and self.ctl.reached(self.loop[0], 0.02):
            head = self.loop.pop(0)
            if self.cycle:
                self.loop.append(head)
        return self.ctl.move(self.loop[0], self.gripper)


class Idle:
    """No motion at all (the reset pose, held)."""

    def __init__(self, ctl: ScriptedController) -> None:
        self.ctl = ctl

    def act(self) -> np.ndarray:
        return np.array([0, 0, 0, 0, 0, 0, GRIPPER_OPEN], np.float32)


class Jitter:
    """Small random motions around the reset pose (targets redrawn every step within ``radius``)."""

    radius = 0.03

    def __init__(self, ctl: ScriptedController, rng: np.random.Generator) -> None:
        self.ctl, self.rng = ctl, rng
        self.home = _p(ctl.base.agent.tcp)

    def act(self) -> np.ndarray:
        target = self.home + self.rng.uniform(-self.radius, self.radius, 3)
        return self.ctl.move(target, GRIPPER_OPEN if self.rng.random() < 0.5 else GRIPPER_CLOSED)


def place_object(ctl: ScriptedController, position: np.ndarray) -> None:
    """Put the task's object at ``position`` (m, world frame), at rest, its orientation kept: the simulator moves it,
    no arm motion does."""
    import torch
    from mani_skill.utils.structs.pose import Pose

    actor = ctl.object_actor()
    q = actor.pose.q
    p = torch.as_tensor(np.asarray(position, np.float64).reshape(1, 3), dtype=q.dtype, device=q.device)
    actor.set_pose(Pose.create_from_pq(p=p, q=q))
    actor.set_linear_velocity(torch.zeros_like(p))
    actor.set_angular_velocity(torch.zeros_like(p))


class DisplaceAfterSuccess:
    """Counterfactual hard negative: the task's scripted controller until the task is done and its arm has settled
    (``settle_steps``); then the simulator puts the object on the table ``miss_distance`` (the controller's, outside
    the task's success tolerance) from the goal in a random direction, clear of the arm, and the arm holds the pose
    it solved the task in.

    No policy makes this move, but a policy reaches its state (a push that slides past the goal, an object knocked
    away): an arm that looks done next to an object that is not. A reward that reads "done" off the arm's pose pays
    for it; as training data it tells the model that the object's place, not the arm's, is what counts."""

    clearance = 0.08
    """Smallest tcp-to-object distance (m, x/y) after the move: the object never lands in the gripper."""
    tries = 64

    settle_steps = 10
    """Steps the controller goes on after the task is done (to the pose a finished demo holds) before the move;
    earlier once the tcp stands still."""

    def __init__(self, inner: ScriptedController, rng: np.random.Generator) -> None:
        self.inner, self.rng = inner, rng
        self.hold_at: Optional[np.ndarray] = None
        self.done_steps = 0
        self.last_tcp: Optional[np.ndarray] = None

    def act(self) -> np.ndarray:
        ctl = self.inner
        if self.hold_at is None:
            tcp = _p(ctl.base.agent.tcp)
            still = self.last_tcp is not None and np.linalg.norm(tcp - self.last_tcp) < 2e-3
            self.last_tcp = tcp
            self.done_steps += int(ctl.task_done())
            if not self.done_steps or (self.done_steps <= self.settle_steps and not still):
                return ctl.act()
            self.hold_at = tcp
            place_object(ctl, self.off_goal_position())
        return ctl.move(self.hold_at, GRIPPER_CLOSED)

    def off_goal_position(self) -> np.ndarray:
        """A resting position ``miss_distance`` from the goal (x/y), at least ``clearance`` from the tcp."""
        geo = Geometry(self.inner)
        lo, hi = type(self.inner).miss_distance
        for _ in range(self.tries):
            angle, dist = self.rng.uniform(0.0, 2 * np.pi), self.rng.uniform(lo, hi)
            xy = geo.goal[:2] + dist * np.array([np.cos(angle), np.sin(angle)])
            if np.linalg.norm(xy - geo.tcp[:2]) >= self.clearance:
                return np.array([*xy, geo.half])
        raise RuntimeError(f"no place {lo}-{hi} m from the goal is {self.clearance} m clear of the tcp")


def _circle(center: np.ndarray, radius: float, n: int = 8, start: float = 0.0) -> List[np.ndarray]:
    return [center + radius * np.array([np.cos(start + a), np.sin(start + a), 0.0])
            for a in np.linspace(0, 2 * np.pi, n, endpoint=False)]


def _offset_controller(env_id: str, env: Any, target: Callable[[Geometry], np.ndarray],
                       fast: bool = False) -> ScriptedController:
    """The task's own controller (the demo motion) aimed at ``target(geometry)`` instead of the goal; ``fast``:
    pushes at full speed (the object slides on)."""
    cls = controller_class(env_id)
    ctl = cls(env)
    geo = Geometry(ctl)
    ctl.goal_offset = target(geo) - geo.goal
    if fast and hasattr(ctl, "push_speed"):
        ctl.push_speed = 1.0
    return ctl


def _away(geo: Geometry) -> np.ndarray:
    dist = max(float(np.linalg.norm(geo.goal[:2] - geo.obj[:2])), type(geo.ctl).miss_distance[1])
    return np.array([*(geo.obj[:2] - geo.u[:2] * dist), geo.goal[2]])


def _sideways(geo: Geometry) -> np.ndarray:
    dist = max(float(np.linalg.norm(geo.goal[:2] - geo.obj[:2])), type(geo.ctl).miss_distance[1])
    side = np.array([-geo.u[1], geo.u[0], 0.0])
    return np.array([*(geo.obj[:2] + side[:2] * dist), geo.goal[2]])


def _overshoot(geo: Geometry) -> np.ndarray:
    """Past the goal along the motion, by more than the task's success tolerance."""
    beyond = type(geo.ctl).miss_distance[1]
    if geo.planar:
        return geo.goal + geo.u * beyond
    return geo.goal + _unit(geo.goal - geo.obj, np.array([0.0, 0.0, 1.0])) * beyond


@dataclass(frozen=True)
class BehaviourSpec:
    """One behaviour of the library: its name, category and how to build its controller for a task's env."""

    name: str
    category: str
    make: Callable[[str, Any, np.random.Generator, str], Any]
    """(env_id, env, rng, camera) -> an object with ``act() -> action``."""
    doc: str
    push_only: bool = False
    """Only for tasks whose object stays done without the arm (push / pull)."""


def _geo(env_id: str, env: Any, camera: str) -> Geometry:
    return Geometry(controller_class(env_id)(env), camera)


def _arm(targets: Callable[[Geometry], Sequence[np.ndarray]], cycle: bool = False):
    def make(env_id: str, env: Any, rng: np.random.Generator, camera: str) -> Any:
        geo = _geo(env_id, env, camera)
        return WaypointArm(geo.ctl, targets(geo), cycle=cycle)
    return make


def _near_miss(kind: str):
    return lambda env_id, env, rng, camera: near_miss_controller(env_id, env, kind, rng)


def _offset(target: Callable[[Geometry], np.ndarray], fast: bool = False):
    return lambda env_id, env, rng, camera: _offset_controller(env_id, env, target, fast)


BEHAVIOURS: Dict[str, BehaviourSpec] = {b.name: b for b in (
    BehaviourSpec("solve", "success", lambda e, env, rng, cam: controller_class(e)(env),
                  "the task's scripted controller"),
    BehaviourSpec("solve_retreat", "success",
                  lambda e, env, rng, cam: RetreatAfterSuccess(controller_class(e)(env), rng),
                  "solve, then the arm leaves while the object stays on the goal", push_only=True),
    BehaviourSpec("arm_to_goal", "non_progress", _arm(lambda g: [g.solved_tcp()]),
                  "the tcp to where it is in a solved episode, object left in place"),
    BehaviourSpec("arm_around_goal", "non_progress",
                  _arm(lambda g: _circle(g.solved_tcp() if g.planar else g.goal, 0.06), cycle=True),
                  "the tcp circling the goal, object left in place"),
    BehaviourSpec("arm_over_object", "non_progress",
                  _arm(lambda g: [g.obj + np.array([0.0, 0.0, 2 * g.half + 0.03])]),
                  "the tcp held just above the object without touching it"),
    BehaviourSpec("arm_around_object", "non_progress",
                  _arm(lambda g: _circle(g.obj + np.array([0.0, 0.0, g.half + 0.01]), g.half + 0.06), cycle=True),
                  "the tcp circling the object at its height without touching it"),
    BehaviourSpec("occlude_object", "non_progress", _arm(lambda g: [g.toward_camera(g.obj)]),
                  "the arm between the frame camera and the object"),
    BehaviourSpec("occlude_goal", "non_progress", _arm(lambda g: [g.toward_camera(g.goal)]),
                  "the arm between the frame camera and the goal"),
    BehaviourSpec("push_away", "non_progress", _offset(_away),
                  "the task's motion aimed away from the goal (object moved the wrong way)"),
    BehaviourSpec("push_sideways", "non_progress", _offset(_sideways),
                  "the task's motion aimed at right angles to the goal direction"),
    BehaviourSpec("overshoot", "non_progress", _offset(_overshoot, fast=True),
                  "the task's motion carried past the goal by more than its tolerance"),
    BehaviourSpec("idle", "non_progress", lambda e, env, rng, cam: Idle(controller_class(e)(env)),
                  "no motion"),
    BehaviourSpec("jitter", "non_progress", lambda e, env, rng, cam: Jitter(controller_class(e)(env), rng),
                  "small random motions around the reset pose"),
    *(BehaviourSpec(f"near_miss_{k}", "non_progress", _near_miss(k), f"the recorded near-miss kind {k!r}")
      for k in NEAR_MISS_KINDS),
    BehaviourSpec("solve_displaced", "non_progress",
                  lambda e, env, rng, cam: DisplaceAfterSuccess(controller_class(e)(env), rng),
                  "solve, then the simulator moves the object off the goal while the arm holds its solved pose"),
)}


def behaviours_for(env_id: str, names: Optional[Sequence[str]] = None) -> List[BehaviourSpec]:
    """The behaviours of the library that run on ``env_id`` (all, or ``names``); clear errors for unknown ones."""
    controller_class(env_id)  # ValueError naming the tasks that have scripted controllers
    cls = controller_class(env_id)
    if names:
        unknown = sorted(set(names) - set(BEHAVIOURS))
        if unknown:
            raise ValueError(f"unknown behaviour(s) {unknown}; the library has {sorted(BEHAVIOURS)}")
        specs = [BEHAVIOURS[n] for n in names]
    else:
        specs = list(BEHAVIOURS.values())
    return [b for b in specs if not (b.push_only and not cls.stays_done_without_arm)]


def rollout(env: Any, spec: BehaviourSpec, seed: int, rng: np.random.Generator, max_steps: int,
            camera: str = "render_camera") -> Any:
    """One episode of ``spec`` on ``env`` (a ManiSkillTaskEnv) from ``seed``, as a dataset :class:`Episode` whose
    meta names the behaviour and its category."""
    from vlmrl.envs.recording import EpisodeCutoff, RecordingWrapper

    rec = RecordingWrapper(env, max_steps, None)
    rec.reset(seed=seed)
    ctl = spec.make(env.task.env_id, rec.env, rng, camera)
    try:
        for _ in range(max_steps):
            _, _, _, truncated, _ = rec.step(ctl.act())
            if truncated:
                break
    except EpisodeCutoff:
        pass
    buf = rec.finish()
    return buf.to_episode(env.task.env_id, "behaviour", {"behaviour": spec.name, "category": spec.category})


def make_behaviour_env(env_cfg: Any, task: str, frame_stride: int, max_steps: Optional[int] = None) -> Any:
    """A ManiSkillTaskEnv for behaviour rollouts: the config's camera and frame size, the scripted control mode,
    episodes that run to the time limit (success does not end them)."""
    from vlmrl.envs.maniskill_env import ManiSkillTaskEnv
    from vlmrl.envs.scripted import SCRIPTED_CONTROL_MODE

    return ManiSkillTaskEnv(env_cfg, task=task, control_mode=SCRIPTED_CONTROL_MODE, frame_stride=int(frame_stride),
                            end_on_success=False, reward_mode="none", text_split="seen",
                            max_episode_steps=max_steps, sim_backend="cpu", num_envs=1)


def behaviour_seeds(num_behaviours: int, per_behaviour: int, seed: int) -> range:
    """The env seeds of ``per_behaviour`` rounds over ``num_behaviours`` behaviours from ``seed`` (one each)."""
    return range(seed, seed + num_behaviours * per_behaviour)


def iter_behaviour_episodes(env_cfg: Any, task: str, names: Sequence[str], per_behaviour: int, seed: int,
                            frame_stride: int, max_steps: Optional[int] = None) -> Iterator[Any]:
    """Episodes of the behaviours ``names`` (empty: all of ``task``'s), round by round, on seeds ``seed, seed + 1,
    ...`` (:func:`behaviour_seeds`); the env is closed when the iteration ends."""
    env = make_behaviour_env(env_cfg, task, frame_stride, max_steps)
    try:
        specs = behaviours_for(env.task.env_id, names)
        rng = np.random.default_rng(seed)
        seeds = iter(behaviour_seeds(len(specs), per_behaviour, seed))
        for _ in range(per_behaviour):
            for spec in specs:
                yield rollout(env, spec, next(seeds), rng, env.max_episode_steps, env.config["camera"])
    finally:
        env.close()


def record_behaviours(env_cfg: Any, task: str, out_dir: str, names: Sequence[str], per_behaviour: int, seed: int,
                      frame_stride: int = 1, log: Callable[[str], None] = print) -> Dict[str, Tuple[int, int]]:
    """Write ``per_behaviour`` episodes of each behaviour ``names`` of ``task`` into the dataset ``out_dir``;
    returns ``{behaviour: (episodes, successes at the end)}``."""
    from vlmrl.envs.dataset import EpisodeWriter

    writer, counts, seeds = EpisodeWriter(out_dir), {}, []
    for ep in iter_behaviour_episodes(env_cfg, task, names, per_behaviour, seed, frame_stride):
        writer.write(ep)
        seeds.append(ep.seed)
        n, k = counts.get(ep.meta["behaviour"], (0, 0))
        counts[ep.meta["behaviour"]] = (n + 1, k + int(bool(ep.success[-1])))
    log(f"behaviours: {len(seeds)} episodes of {len(counts)} behaviours on {task} "
        f"(seeds {min(seeds)}..{max(seeds)}) -> {out_dir}")
    return counts
