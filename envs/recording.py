"""Recording episodes of a :class:`~vlmrl.envs.maniskill_env.ManiSkillTaskEnv` into the episode
dataset format (``vlmrl.envs.dataset``): motion-planned demonstrations and mixed-quality episodes.

Sources (the ``source`` field of an episode):

- ``demo``: ManiSkill's Panda motion-planning solution for the task (``pd_joint_pos`` control);
- ``noisy_demo``: a demo's actions replayed from the same seed with Gaussian noise (often fails);
- ``random``: uniformly sampled actions;
- ``retreat``: a scripted demo whose arm, once the task is done, leaves and holds elsewhere while the
  object stays done (push tasks; ``vlmrl.envs.scripted.RetreatAfterSuccess``), to the episode's time limit;
- ``near_miss``: hard negatives, the scripted controller made to fail while looking like a demo
  (``vlmrl.envs.scripted.near_miss_controller``: stopping short of the push / lift, or moving the object to
  a wrong spot, or either followed by the arm leaving as in ``retreat``). Random and noisy episodes almost
  never show the arm in the task's pose with the task undone, so a reward model trained without them can pay
  for the pose alone (measured on PushCube, RESULTS.md).

Role in the reward path: these episodes train and evaluate the reward models (compact LRM,
preference/window scorers) and feed the offline mode; they carry ground-truth success per state
and the env's dense reward for evaluation only.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np

from vlmrl.envs.dataset import Episode

DEMO_CONTROL_MODE = "pd_joint_pos"
"""ManiSkill's motion planners output joint-position targets."""

MOTION_PLANNERS: Dict[str, str] = {
    "PushCube-v1": "solvePushCube",
    "PickCube-v1": "solvePickCube",
    "StackCube-v1": "solveStackCube",
    "PullCube-v1": "solvePullCube",
    "PegInsertionSide-v1": "solvePegInsertionSide",
}
"""env id -> name in ``mani_skill.examples.motionplanning.panda.solutions`` (needs ``mplib==0.1.1``)."""


class EpisodeCutoff(Exception):
    """Raised inside a planner's ``env.step`` to end a recording early (enough steps after success, or too long)."""


def motion_planner(env_id: str) -> Callable[..., Any]:
    """The ManiSkill motion-planning ``solve(env, seed, debug, vis)`` function for ``env_id``."""
    if env_id not in MOTION_PLANNERS:
        raise ValueError(f"no motion planner for {env_id}; available: {sorted(MOTION_PLANNERS)}")
    try:
        solutions = importlib.import_module("mani_skill.examples.motionplanning.panda.solutions")
    except ImportError as e:  # mplib missing or the wrong version
        raise RuntimeError(f"ManiSkill's motion planners cannot be imported ({e}); they need mplib==0.1.1") from e
    return getattr(solutions, MOTION_PLANNERS[env_id])


@dataclass
class EpisodeBuffer:
    """Collects one episode step by step from the env's returns; :meth:`to_episode` builds the dataset record."""

    task_text: str
    seed: int
    states: List[np.ndarray] = field(default_factory=list)
    actions: List[np.ndarray] = field(default_factory=list)
    rewards: List[float] = field(default_factory=list)
    success: List[bool] = field(default_factory=list)
    frames: List[np.ndarray] = field(default_factory=list)
    frame_steps: List[int] = field(default_factory=list)
    first_success_step: Optional[int] = None
    meta: Dict[str, Any] = field(default_factory=dict)
    """What the driver of the episode knows about it (a scripted controller's ``motion_start_step``, ...)."""

    def add_state(self, obs: np.ndarray, info: Dict[str, Any]) -> None:
        self.states.append(np.asarray(obs, dtype=np.float32).reshape(-1))
        self.success.append(bool(info["success"]))
        if info["success"] and self.first_success_step is None:
            self.first_success_step = len(self.states) - 1
        if info.get("has_frame"):
            self.frames.append(info["frame"])
            self.frame_steps.append(int(info["frame_step"]))

    def add_step(self, action: Any, obs: np.ndarray, info: Dict[str, Any]) -> None:
        self.actions.append(np.asarray(action, dtype=np.float32).reshape(-1))
        self.rewards.append(float(info["env_reward"]))
        self.add_state(obs, info)

    @property
    def num_steps(self) -> int:
        return len(self.actions)

    def to_episode(self, env_id: str, source: str, meta: Dict[str, Any]) -> Episode:
        if not self.actions:
            raise ValueError("an episode needs at least one step")
        frames = np.stack(self.frames) if self.frames else np.zeros((0, 1, 1, 3), np.uint8)
        return Episode(
            task=self.task_text, env_id=env_id, source=source, seed=int(self.seed), meta=dict(meta, **self.meta),
            frames=frames.astype(np.uint8), frame_steps=np.asarray(self.frame_steps, np.int32),
            states=np.stack(self.states).astype(np.float32),
            actions=np.stack(self.actions).astype(np.float32),
            rewards=np.asarray(self.rewards, np.float32), success=np.asarray(self.success, bool),
        ).validate()


class RecordingWrapper(gym.Wrapper):
    """Records every reset/step of a ManiSkillTaskEnv into an :class:`EpisodeBuffer` (also when a motion
    planner drives the env) and cuts the episode with :class:`EpisodeCutoff` when it is long enough."""

    def __init__(self, env: gym.Env, max_steps: int, stop_after_success_steps: Optional[int] = None) -> None:
        super().__init__(env)
        self.max_steps = int(max_steps)
        self.stop_after_success_steps = stop_after_success_steps
        self.buffer: Optional[EpisodeBuffer] = None

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.buffer = EpisodeBuffer(task_text=info["task_text"], seed=-1 if seed is None else int(seed))
        self.buffer.add_state(obs, info)
        return obs, info

    def step(self, action):
        if self.buffer is None:
            raise RuntimeError("step() before reset()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.buffer.add_step(action, obs, info)
        b = self.buffer
        done_after_success = (self.stop_after_success_steps is not None and b.first_success_step is not None
                              and b.num_steps >= b.first_success_step + self.stop_after_success_steps)
        if done_after_success or b.num_steps >= self.max_steps:
            self._ensure_last_frame()
            raise EpisodeCutoff()
        return obs, reward, terminated, truncated, info

    def finish(self) -> EpisodeBuffer:
        """The recorded episode, with a frame of its last state (the reward path always sees the end)."""
        if self.buffer is None:
            raise RuntimeError("nothing recorded")
        self._ensure_last_frame()
        return self.buffer

    def _ensure_last_frame(self) -> None:
        b, env = self.buffer, self.env
        last = b.num_steps
        if getattr(env, "frames", None) is not None and (not b.frame_steps or b.frame_steps[-1] != last):
            b.frames.append(env.render_frame())
            b.frame_steps.append(last)


def run_planner(rec: RecordingWrapper, solve: Callable[..., Any], seed: int) -> EpisodeBuffer:
    """Drive ``rec`` with a motion-planning solution from ``seed``; the planner's failure (-1 or an
    exception inside planning) leaves a (failed) recording, never an exception here."""
    try:
        solve(rec, seed=seed, debug=False, vis=False)
    except EpisodeCutoff:
        pass
    except Exception as e:  # mplib raises plain exceptions when no plan is found
        if rec.buffer is None:
            raise
        rec.buffer.planner_error = f"{type(e).__name__}: {e}"  # type: ignore[attr-defined]
    return rec.finish()


def run_actions(rec: RecordingWrapper, actions: np.ndarray, seed: int, task_text: Optional[str] = None) -> EpisodeBuffer:
    """Replay an action sequence from ``seed`` (stops early at episode end or cutoff)."""
    _, _ = rec.reset(seed=seed, options={"task_text": task_text} if task_text else None)
    try:
        for a in actions:
            _, _, terminated, truncated, _ = rec.step(a)
            if truncated:
                break
    except EpisodeCutoff:
        pass
    return rec.finish()


def run_random(rec: RecordingWrapper, seed: int, num_steps: int, rng: np.random.Generator) -> EpisodeBuffer:
    """Uniformly random actions in the env's action space for ``num_steps`` steps."""
    rec.reset(seed=seed)
    space = rec.action_space
    try:
        for _ in range(num_steps):
            _, _, _, truncated, _ = rec.step(rng.uniform(space.low, space.high).astype(np.float32))
            if truncated:
                break
    except EpisodeCutoff:
        pass
    return rec.finish()


def noisy_actions(actions: np.ndarray, noise_std: float, rng: np.random.Generator, low: np.ndarray,
                  high: np.ndarray) -> np.ndarray:
    """Demo actions + Gaussian noise, clipped to the action space."""
    noisy = actions + rng.normal(0.0, noise_std, size=actions.shape)
    return np.clip(noisy, low, high).astype(np.float32)


def run_scripted(rec: RecordingWrapper, env_id: str, seed: int, near_miss: str = "", retreat: bool = False,
                 rng: Optional[np.random.Generator] = None) -> EpisodeBuffer:
    """One episode driven by the task's scripted controller (``vlmrl.envs.scripted``); ``near_miss`` (a kind of
    ``NEAR_MISS_KINDS``) makes it a hard negative, ``retreat`` a demo whose arm leaves after success; both draw
    their random targets from ``rng``. The buffer's meta says where the controller began the task's motion
    (``motion_start_step``: the step whose action starts the push / lift, None if it never did) and, when the arm
    left, ``left_at_step`` (LRM progress targets of near misses, ``vlmrl.learner.reward_training.lrm_data``)."""
    from vlmrl.envs.scripted import RetreatAfterSuccess, near_miss_controller, scripted_controller

    rec.reset(seed=seed)
    rng = rng if rng is not None else np.random.default_rng(seed)
    if near_miss:
        ctl = near_miss_controller(env_id, rec.env, near_miss, rng)
    elif retreat:
        ctl = RetreatAfterSuccess(scripted_controller(env_id, rec.env), rng)
    else:
        ctl = scripted_controller(env_id, rec.env)
    inner = getattr(ctl, "inner", ctl)  # the task's controller inside a RetreatAfterSuccess
    meta: Dict[str, Any] = {"motion_start_step": None}
    try:
        for _ in range(rec.max_steps):
            action = ctl.act()
            step = rec.buffer.num_steps
            if meta["motion_start_step"] is None and inner.phase >= inner.hold_before:
                meta["motion_start_step"] = step
            if "left_at_step" not in meta and getattr(ctl, "waypoints", None) is not None:
                meta["left_at_step"] = step
            _, _, _, truncated, _ = rec.step(action)
            if truncated:
                break
    except EpisodeCutoff:
        pass
    buf = rec.finish()
    buf.meta.update(meta)
    return buf


@dataclass
class RecordStats:
    """Progress counters printed while recording."""

    written: Dict[str, int] = field(default_factory=dict)
    successes: Dict[str, int] = field(default_factory=dict)
    steps: int = 0
    attempts_dropped: int = 0

    def add(self, source: str, ep: Episode) -> None:
        self.written[source] = self.written.get(source, 0) + 1
        self.successes[source] = self.successes.get(source, 0) + int(ep.succeeded)
        self.steps += ep.num_steps


Attempt = Callable[[], Tuple[EpisodeBuffer, Dict[str, Any]]]
"""Records one episode; returns it with the meta keys it adds to the dataset's."""


class _SourceRecorder:
    """Writes episodes of one dataset into ``writer`` source by source: attempts until a source has its count,
    drops attempts with the wrong outcome, and gives up after ``max_failures`` drops in a row."""

    def __init__(self, writer: Any, env_id: str, meta: Dict[str, Any], seed: int, max_failures: int,
                 log: Callable[[str], None]) -> None:
        self.writer, self.env_id, self.meta, self.max_failures, self.log = writer, env_id, meta, max_failures, log
        self.stats = RecordStats()
        self._seed = seed
        self._t0 = time.time()

    def next_seed(self) -> int:
        """A fresh env seed (the dataset's seeds run up from ``record_demos.seed``)."""
        self._seed += 1
        return self._seed - 1

    def record(self, source: str, target: int, attempt: Attempt,
               keep: Optional[Callable[[EpisodeBuffer], bool]] = None, dropped_why: str = "") -> List[EpisodeBuffer]:
        """Record ``target`` episodes of ``source`` (kept ones only); returns their buffers."""
        kept: List[EpisodeBuffer] = []
        failures = 0
        while len(kept) < target:
            buf, extra = attempt()
            if keep is not None and not keep(buf):
                failures += 1
                self.stats.attempts_dropped += 1
                if failures >= self.max_failures:
                    raise RuntimeError(f"{failures} {source} attempts in a row on {self.env_id} {dropped_why}; "
                                       f"giving up")
                continue
            failures = 0
            kept.append(buf)
            ep = buf.to_episode(self.env_id, source, dict(self.meta, **extra))
            self.writer.write(ep)
            st = self.stats
            st.add(source, ep)
            n, s = st.written[source], st.successes[source]
            self.log(f"[{source} {n}/{target}] seed={ep.seed} steps={ep.num_steps} success={ep.succeeded} | "
                     f"{source} success rate {s / n:.2f}, {st.steps / (time.time() - self._t0):.1f} steps/s")
        return kept


def record_dataset(env_cfg: Any, rc: Any, log: Callable[[str], None] = print) -> RecordStats:
    """Record ``rc.num_demo`` successful demos, ``rc.num_noisy`` noisy demos, ``rc.num_random`` random
    episodes, ``rc.num_retreat`` retreat demos and ``rc.num_near_miss`` near misses of ``rc.task or env_cfg.task``
    into the dataset at ``rc.output_dir``."""
    from vlmrl.envs.dataset import EpisodeWriter
    from vlmrl.envs.maniskill_env import ManiSkillTaskEnv
    from vlmrl.envs.scripted import NEAR_MISS_KINDS, SCRIPTED_CONTROL_MODE, motion_planning_status

    policy = rc.demo_policy
    if policy not in ("scripted", "motion_planner"):
        raise ValueError(f"record_demos.demo_policy must be 'scripted' or 'motion_planner', got {policy!r}")
    for key in ("num_demo", "num_noisy", "num_random", "num_retreat", "num_near_miss"):
        if int(getattr(rc, key)) < 0:
            raise ValueError(f"record_demos.{key} must be >= 0, got {getattr(rc, key)}")
    if policy == "motion_planner":
        why = motion_planning_status()
        if why:
            raise RuntimeError(f"demo_policy=motion_planner is unavailable: {why}")
        control_mode = DEMO_CONTROL_MODE
        if int(rc.num_near_miss) or int(rc.num_retreat):
            raise ValueError("record_demos.num_near_miss / num_retreat need demo_policy=scripted (they are scripted)")
    else:
        control_mode = SCRIPTED_CONTROL_MODE
    task = rc.task or _get(env_cfg, "task")
    env = ManiSkillTaskEnv(env_cfg, task=task, control_mode=control_mode, frame_stride=int(rc.frame_stride),
                           text_split="seen", max_episode_steps=int(rc.max_steps))
    env_id = env.task.env_id
    if policy == "motion_planner":
        solve = motion_planner(env_id)
    meta = dict(control_mode=control_mode, frame_size=env.frame_size, frame_stride=int(rc.frame_stride),
                camera=env.config["camera"], camera_look_at=env.config["camera_look_at"],
                camera_fov=env.config["camera_fov"], obs_mode=env.config["obs_mode"], demo_policy=policy,
                env_reward=ENV_REWARD_NAME)
    out = _SourceRecorder(EpisodeWriter(rc.output_dir), env_id, meta, int(rc.seed), int(rc.max_plan_failures), log)
    rng = np.random.default_rng(int(rc.seed))
    length = min(int(rc.max_steps), env.task.max_episode_steps)  # whole episodes, as long as a policy's

    def demo() -> EpisodeBuffer:
        rec, s = RecordingWrapper(env, int(rc.max_steps), int(rc.stop_after_success_steps)), out.next_seed()
        return run_planner(rec, solve, s) if policy == "motion_planner" else run_scripted(rec, env_id, s)

    # never solved, or solved at reset already (nothing to demonstrate)
    demos = out.record("demo", int(rc.num_demo), lambda: (demo(), {}), keep=lambda b: bool(b.first_success_step),
                       dropped_why="failed")
    share = approach_share(demos)
    if share is not None:
        log(f"demos: the approach takes {share:.2f} of the time to success (mean over {len(demos)}; "
            f"lrm_train.near_miss_progress={share:.2f} labels near misses' approaches like the demos')")

    low, high = env.action_space.low, env.action_space.high

    def noisy() -> Tuple[EpisodeBuffer, Dict[str, Any]]:
        i = out.stats.written.get("noisy_demo", 0)
        base = demos[i % len(demos)] if demos else demo()  # no demos asked for: plan one (not written) to perturb
        acts = noisy_actions(np.stack(base.actions), float(rc.noise_std), rng, low, high)
        buf = run_actions(RecordingWrapper(env, int(rc.max_steps), None), acts, base.seed, task_text=base.task_text)
        return buf, dict(noise_std=float(rc.noise_std), base_seed=base.seed)

    out.record("noisy_demo", int(rc.num_noisy), noisy)
    out.record("random", int(rc.num_random), lambda: (run_random(
        RecordingWrapper(env, int(rc.max_steps), None), out.next_seed(), env.task.max_episode_steps, rng), {}))
    out.record("retreat", int(rc.num_retreat), lambda: (run_scripted(
        RecordingWrapper(env, length, None), env_id, out.next_seed(), retreat=True, rng=rng), {}),
        keep=lambda b: b.first_success_step is not None, dropped_why="failed before the retreat")

    def near_miss() -> Tuple[EpisodeBuffer, Dict[str, Any]]:
        kind = NEAR_MISS_KINDS[out.stats.written.get("near_miss", 0) % len(NEAR_MISS_KINDS)]
        return run_scripted(RecordingWrapper(env, length, None), env_id, out.next_seed(), near_miss=kind,
                            rng=rng), dict(near_miss=kind)

    # an accidental success (the object reached the goal after all) is not a near miss
    out.record("near_miss", int(rc.num_near_miss), near_miss, keep=lambda b: b.first_success_step is None,
               dropped_why="succeeded by accident")
    env.close()
    return out.stats


ENV_REWARD_NAME = "maniskill_normalized_dense"


def approach_share(demos: List[EpisodeBuffer]) -> Optional[float]:
    """Mean share of the steps to first success that scripted demos spend before the task's motion began
    (None without such demos): the LRM progress a demo's frames have when the push / lift starts."""
    shares = [b.meta["motion_start_step"] / b.first_success_step for b in demos
              if b.meta.get("motion_start_step") is not None and b.first_success_step]
    return float(np.mean(shares)) if shares else None


def _get(cfg: Any, key: str) -> Any:
    return cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key)
