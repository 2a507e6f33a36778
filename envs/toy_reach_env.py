"""ToyReach: a TEST environment (not a benchmark task) for fast tests and CPU smoke runs of the online path.

A point agent in the square [-1, 1]^2 moves towards a goal disk. It mimics the interface of
:class:`vlmrl.envs.maniskill_env.ManiSkillTaskEnv` at a tiny fraction of its cost (no simulator,
no renderer process, numpy-drawn frames), so actor/learner tests can run many episodes per second:

- ``obs``: float32 (6,) = agent position, goal position, goal - agent;
- ``action``: float32 (2,) in [-1, 1], a velocity command (``step_size`` per unit);
- ``reward``: per ``reward_mode`` (``none`` -> 0, ``sparse`` -> 1.0 on success, ``dense`` -> ``env_reward``);
- ``info``: the keys of :mod:`vlmrl.envs.info_keys`: ``success``, ``env_reward`` (1 - distance / max
  distance, in [0, 1]), ``task_text``, ``step``, ``has_frame`` and on frame steps ``frame``
  (uint8 frame_size x frame_size x 3: dark background, green goal disk, white agent square) and
  ``frame_step``. Frames come at reset, every ``frame_stride`` steps and at episode end.

An episode terminates on success (agent within ``goal_radius`` of the goal; with ``end_on_success=False``
it runs on) and is truncated after ``max_episode_steps``. Registered as gymnasium id
``vlmrl/ToyReach-v0`` and RLlib env name ``ToyReach-v0`` (:func:`register_toy_reach`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import gymnasium as gym
import numpy as np

from vlmrl.envs import info_keys as K

TOY_TASK = "ToyReach-v0"
"""``env.task`` value that selects this env in ``vlmrl train``."""
GYM_ID = "vlmrl/ToyReach-v0"
TOY_TEXT = "move the white square onto the green disk"
DEFAULT_MAX_STEPS = 50
_MAX_DIST = float(np.sqrt(8.0))

# EnvConfig fields this env uses; the ManiSkill-only ones are accepted and ignored so that one
# ``env`` config section drives either env.
_USED = ("task", "task_text", "reward_mode", "capture_frames", "frame_size", "frame_stride", "max_episode_steps",
         "end_on_success")
_IGNORED = ("text_split", "obs_mode", "control_mode", "sim_backend", "num_envs", "vectorize", "camera", "camera_look_at",
            "camera_fov", "shader_pack", "lp_num_threads", "shader_cache_dir")


class ToyReachEnv(gym.Env):
    """Test env of the reward path: renders frames into ``info`` like the ManiSkill wrapper (see module doc)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, config: Optional[Dict[str, Any]] = None, step_size: float = 0.15,
                 goal_radius: float = 0.15) -> None:
        c = dict(config or {})
        unknown = sorted(set(c) - set(_USED) - set(_IGNORED))
        if unknown:
            raise ValueError(f"unknown ToyReach env config keys {unknown}; known: {sorted(_USED)}")
        if c.get("task", TOY_TASK) != TOY_TASK:
            raise ValueError(f"ToyReachEnv got env.task={c['task']!r}; it only runs {TOY_TASK!r}")
        self.reward_mode = c.get("reward_mode", "none")
        if self.reward_mode not in K.REWARD_MODES:
            raise ValueError(f"env.reward_mode must be one of {K.REWARD_MODES}, got {self.reward_mode!r}")
        self.capture_frames = bool(c.get("capture_frames", True))
        self.frame_size = int(c.get("frame_size", 64))
        self.frame_stride = int(c.get("frame_stride", 1))
        self.max_episode_steps = int(c.get("max_episode_steps") or DEFAULT_MAX_STEPS)
        self.end_on_success = bool(c.get("end_on_success", True))
        if self.frame_size < 8:
            raise ValueError(f"env.frame_size must be >= 8 pixels, got {self.frame_size}")
        if self.frame_stride < 1:
            raise ValueError(f"env.frame_stride must be >= 1, got {self.frame_stride}")
        if self.max_episode_steps < 1:
            raise ValueError(f"env.max_episode_steps must be >= 1, got {self.max_episode_steps}")
        self.task_text = c.get("task_text") or TOY_TEXT
        self.step_size = float(step_size)
        self.goal_radius = float(goal_radius)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._pos = np.zeros(2)
        self._goal = np.zeros(2)
        self._step = 0

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-0.9, 0.9, 2)
        self._goal = self.np_random.uniform(-0.7, 0.7, 2)
        while np.linalg.norm(self._goal - self._pos) < 3 * self.goal_radius:
            self._goal = self.np_random.uniform(-0.7, 0.7, 2)
        self._step = 0
        return self._obs(), self._info(episode_over=False)

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self._pos = np.clip(self._pos + self.step_size * a, -1.0, 1.0)
        self._step += 1
        info = self._info(episode_over=False)
        terminated = bool(info[K.SUCCESS]) and self.end_on_success
        truncated = not terminated and self._step >= self.max_episode_steps
        if (terminated or truncated) and not info[K.HAS_FRAME]:
            info = self._info(episode_over=True)
        reward = {"none": 0.0, "sparse": float(info[K.SUCCESS]), "dense": info[K.ENV_REWARD]}[self.reward_mode]
        return self._obs(), reward, terminated, truncated, info

    def render(self) -> np.ndarray:
        """The current state as uint8 (frame_size, frame_size, 3)."""
        n = self.frame_size
        img = np.full((n, n, 3), 30, np.uint8)
        yy, xx = np.mgrid[0:n, 0:n]

        def to_px(p):
            return (p + 1.0) * 0.5 * (n - 1)

        gx, gy = to_px(self._goal)
        r = self.goal_radius * 0.5 * (n - 1)
        img[(xx - gx) ** 2 + (yy - gy) ** 2 <= r * r] = (40, 200, 60)
        ax, ay = to_px(self._pos)
        h = max(1.0, n / 24)
        img[(np.abs(xx - ax) <= h) & (np.abs(yy - ay) <= h)] = (255, 255, 255)
        return img

    # ------------------------------------------------------------------ helpers
    def _obs(self) -> np.ndarray:
        return np.concatenate([self._pos, self._goal, self._goal - self._pos]).astype(np.float32)

    def _info(self, episode_over: bool) -> Dict[str, Any]:
        dist = float(np.linalg.norm(self._goal - self._pos))
        info: Dict[str, Any] = {
            K.TASK_TEXT: self.task_text, K.STEP: self._step,
            K.SUCCESS: dist <= self.goal_radius,
            K.ENV_REWARD: float(1.0 - min(dist / _MAX_DIST, 1.0)),
        }
        has_frame = self.capture_frames and K.frame_due(self._step, self.frame_stride, episode_over)
        info[K.HAS_FRAME] = has_frame
        if has_frame:
            info[K.FRAME] = self.render()
            info[K.FRAME_STEP] = self._step
        return info


def toy_env_creator(env_config: Dict[str, Any]) -> ToyReachEnv:
    """For ``ray.tune.register_env``: RLlib passes the ``env`` config section as a dict."""
    return ToyReachEnv(dict(env_config))


def register_toy_reach() -> None:
    """Register ``vlmrl/ToyReach-v0`` with gymnasium and ``ToyReach-v0`` with RLlib (idempotent)."""
    if GYM_ID not in gym.registry:
        gym.register(GYM_ID, entry_point=ToyReachEnv)
    from ray.tune.registry import register_env

    register_env(TOY_TASK, toy_env_creator)
