"""The ManiSkill environment an actor steps: state observations for the policy, camera frames for the
reward service, ground truth for evaluation.

:class:`ManiSkillTaskEnv` wraps ``gym.make(<ManiSkill env id>)`` (so ``env.unwrapped`` is ManiSkill's
env, which is what its motion planners need). Per step it returns

- ``obs``: the flattened state, float32 (S,);
- ``reward``: what ``EnvConfig.reward_mode`` asks for: ``none`` -> 0.0 (the VLM reward is added by the
  actor), ``sparse`` -> 1.0 on success, ``dense`` -> ManiSkill's normalized dense reward;
- ``info``: ``success`` (ground truth), ``env_reward`` (normalized dense reward), ``task_text``,
  ``step``, ``has_frame`` and, on frame steps only, ``frame`` (uint8 H x W x 3) and ``frame_step``.

Frames cost a fixed amount each (lavapipe on CPU: ~50-100 ms), so they are rendered only where the
reward path needs them: at reset, every ``frame_stride`` steps, and at the end of an episode
(:class:`FrameSchedule`). With ``capture_frames=False`` no renderer is created at all.

One env, ManiSkill's CPU simulator, numpy/python values (what RLlib's single-agent env runners
expect; RLlib vectorizes several of them). ManiSkill's GPU simulation steps many envs in one process:
that is :class:`~vlmrl.envs.maniskill_vector_env.ManiSkillTaskVectorEnv`, which shares this module's
config resolution, checks, ``gym.make`` arguments and cameras.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, Dict, Optional, Protocol, Tuple

import gymnasium as gym
import mani_skill.envs  # noqa: F401  (registers the ManiSkill env ids with gymnasium)
import numpy as np

from vlmrl.envs.tasks import TaskSpec, get_task

REWARD_MODES = ("none", "sparse", "dense")
SIM_BACKENDS = ("cpu", "gpu")
OBS_MODES = ("state",)
ENV_DENSE_REWARD = "normalized_dense"
"""The ManiSkill reward mode behind ``info['env_reward']`` (in [0, 1]; 1 means solved)."""


class FrameSchedule:
    """When the reward path needs a frame: after reset (step 0), every ``stride`` steps, and at episode end."""

    def __init__(self, stride: int) -> None:
        if int(stride) < 1:
            raise ValueError(f"frame_stride must be >= 1, got {stride}")
        self.stride = int(stride)

    def due(self, step: int, episode_over: bool = False) -> bool:
        return episode_over or step % self.stride == 0


class FrameSource(Protocol):
    """Something that renders the current state of the env as a batch of RGB frames (N, H, W, 3) uint8."""

    def capture(self) -> Any: ...


class ManiSkillCameraFrames:
    """Renders one camera of a ManiSkill env: a human-render camera (e.g. ``render_camera``, shows goal
    markers) or a sensor camera (e.g. ``base_camera``, goal markers hidden as the policy would see them)."""

    def __init__(self, base_env: Any, camera: str) -> None:
        self.base_env = base_env
        self.camera = camera
        human = list(getattr(base_env, "_human_render_cameras", {}) or {})
        sensors = list(getattr(base_env, "_sensors", {}) or {})
        if camera in human:
            self.kind = "human"
        elif camera in sensors:
            self.kind = "sensor"
        else:
            raise ValueError(f"camera {camera!r} not found in {type(base_env).__name__}: "
                             f"render cameras {human}, sensor cameras {sensors}")

    def capture(self):
        if self.kind == "human":
            return self.base_env.render_rgb_array(self.camera)
        return self.base_env._get_obs_sensor_data()[self.camera]["rgb"]


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def to_numpy(x: Any) -> np.ndarray:
    """A ManiSkill value (torch tensor on any device, or array-like) as a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


VECTORIZE_MODES = ("auto", "rllib", "maniskill")


def resolve_env_config(cfg: Any = None, overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """An ``EnvConfig`` (OmegaConf node, dataclass or dict) plus field=value ``overrides`` as a plain dict of every
    EnvConfig field; unknown keys are refused."""
    from vlmrl.envs.config import EnvConfig

    overrides = dict(overrides or {})
    fields = asdict(EnvConfig())
    given = cfg if not is_dataclass(cfg) else asdict(cfg)
    unknown = sorted(set((dict(given) if given is not None else {})) - set(fields)) if isinstance(given, dict) else []
    unknown += sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown env config keys {unknown}; known: {sorted(fields)}")
    c = {k: overrides.get(k, _cfg_get(given, k, v)) for k, v in fields.items()}
    if c["camera_look_at"] is not None:  # plain floats (OmegaConf gives a ListConfig; datasets store it as JSON)
        c["camera_look_at"] = [float(v) for v in c["camera_look_at"]]
    return c


def check_env_config(c: Dict[str, Any]) -> None:
    """Raise ValueError with the reason for a resolved env config that cannot run (on this machine)."""
    def bad(key, allowed):
        raise ValueError(f"env.{key} must be one of {allowed}, got {c[key]!r}")
    if c["reward_mode"] not in REWARD_MODES:
        bad("reward_mode", REWARD_MODES)
    if c["sim_backend"] not in SIM_BACKENDS:
        bad("sim_backend", SIM_BACKENDS)
    if c["obs_mode"] not in OBS_MODES:
        bad("obs_mode", OBS_MODES)
    if c["vectorize"] not in VECTORIZE_MODES:
        bad("vectorize", VECTORIZE_MODES)
    if c["text_split"] not in ("seen", "unseen", "all"):
        bad("text_split", ("seen", "unseen", "all"))
    if int(c["num_envs"]) < 1:
        raise ValueError(f"env.num_envs must be >= 1, got {c['num_envs']}")
    if c["sim_backend"] == "cpu" and int(c["num_envs"]) != 1:
        raise ValueError("env.num_envs > 1 needs env.sim_backend=gpu (ManiSkill's CPU sim runs one env per "
                         "process; use more env runners instead)")
    if c["sim_backend"] == "gpu" and c["vectorize"] == "rllib":
        raise ValueError("env.sim_backend=gpu steps its env.num_envs envs in one process: it needs "
                         "env.vectorize=auto or maniskill, not rllib")
    look = c["camera_look_at"]
    if look is not None and (len(look) != 6 or np.allclose(look[:3], look[3:])):
        raise ValueError(f"env.camera_look_at must be [eye_x, eye_y, eye_z, target_x, target_y, target_z] with the "
                         f"eye away from the target, got {list(look)}")
    if c["camera_fov"] is not None and not 0.0 < float(c["camera_fov"]) < np.pi:
        raise ValueError(f"env.camera_fov must be in (0, pi) radians, got {c['camera_fov']}")
    if int(c["frame_size"]) < 8:
        raise ValueError(f"env.frame_size must be >= 8 pixels, got {c['frame_size']}")
    if c["sim_backend"] == "gpu":
        import torch
        if not torch.cuda.is_available():
            raise ValueError("env.sim_backend=gpu needs a CUDA GPU; none is visible (use sim_backend=cpu)")


def uses_vector_env(c: Any) -> bool:
    """Whether an env config runs as one :class:`ManiSkillTaskVectorEnv` per env runner (ManiSkill batches the
    envs: always for the GPU sim; ``vectorize=maniskill`` with the CPU sim holds one env) rather than as single
    envs that RLlib vectorizes."""
    mode = _cfg_get(c, "vectorize", "auto")
    return mode == "maniskill" or (mode == "auto" and _cfg_get(c, "sim_backend", "cpu") == "gpu")


def make_maniskill_env(c: Dict[str, Any], task: TaskSpec, needs_renderer: bool):
    """``gym.make`` of the task's ManiSkill env for a resolved, checked config: ``num_envs`` envs on the config's
    simulator, the frame camera where ``camera_look_at`` / ``camera_fov`` put it, or no renderer at all."""
    if needs_renderer:
        from vlmrl.envs.rendering import configure_render_env
        configure_render_env(c["shader_cache_dir"], c["lp_num_threads"])
    try:
        return gym.make(task.env_id, **_make_kwargs(c, needs_renderer))
    except AttributeError as e:  # ManiSkill's answer to a per-camera override naming no human-render camera
        if _camera_placement(c) and c["camera"] in str(e):
            raise ValueError(f"env.camera_look_at / camera_fov move a human-render camera (render_camera); "
                             f"{c['camera']!r} is not one of {task.env_id}'s") from e
        raise
    except RuntimeError as e:  # SAPIEN builds render materials even with render_backend="none"
        if "rendering device" in str(e):
            from vlmrl.envs.rendering import SETUP_HINT, RenderingUnavailable
            raise RenderingUnavailable(
                f"{task.env_id}: SAPIEN found no Vulkan device ({e}); ManiSkill needs one even for state-only "
                f"envs (env.capture_frames=false): {SETUP_HINT}") from e
        raise


def frames_for(base_env: Any, c: Dict[str, Any], frame_source: Optional[FrameSource] = None) -> Optional[FrameSource]:
    """What renders an env's frames: ``frame_source`` when given, the config's camera when it captures frames,
    else None."""
    if frame_source is not None or not c["capture_frames"]:
        return frame_source
    return ManiSkillCameraFrames(base_env, c["camera"])


def single_observation_space(base_env: Any, c: Dict[str, Any]) -> gym.spaces.Box:
    """One env's observation space (flat float32 Box) of a ManiSkill env."""
    single_obs = base_env.single_observation_space
    if not isinstance(single_obs, gym.spaces.Box):
        raise ValueError(f"obs_mode {c['obs_mode']!r} gives {type(single_obs).__name__}, expected a flat Box")
    return gym.spaces.Box(-np.inf, np.inf, single_obs.shape, np.float32)


def _make_kwargs(c: Dict[str, Any], needs_renderer: bool) -> Dict[str, Any]:
    size = int(c["frame_size"])
    cam = dict(width=size, height=size, shader_pack=c["shader_pack"])
    kwargs: Dict[str, Any] = dict(
        obs_mode=c["obs_mode"], control_mode=c["control_mode"], reward_mode=ENV_DENSE_REWARD,
        num_envs=int(c["num_envs"]), sim_backend="physx_cuda" if c["sim_backend"] == "gpu" else "physx_cpu",
        max_episode_steps=int(c["max_episode_steps"] or get_task(c["task"]).max_episode_steps),
    )
    if needs_renderer:
        import torch
        kwargs.update(render_mode="rgb_array", render_backend="gpu" if torch.cuda.is_available() else "cpu",
                      human_render_camera_configs=dict(cam, **_camera_placement(c)), sensor_configs=dict(cam))
    else:
        kwargs.update(render_backend="none")
    return kwargs


def _camera_placement(c: Dict[str, Any]) -> Dict[str, Any]:
    """ManiSkill's per-camera override (``{camera: {pose, fov}}``) from ``env.camera_look_at`` / ``camera_fov``."""
    placed: Dict[str, Any] = {}
    if c["camera_look_at"] is not None:
        from mani_skill.utils import sapien_utils
        look = c["camera_look_at"]
        placed["pose"] = sapien_utils.look_at(look[:3], look[3:])
    if c["camera_fov"] is not None:
        placed["fov"] = float(c["camera_fov"])
    return {c["camera"]: placed} if placed else {}


class ManiSkillTaskEnv(gym.Wrapper):
    """A task of the registry as a gymnasium env for RLlib env runners and demo recording.

    Role in the reward path: produces the frames (``info['frame']``) that actors send to the reward
    workers, and the ground truth (``success``, ``env_reward``) used only to evaluate rewards.
    """

    def __init__(self, cfg: Any = None, frame_source: Optional[FrameSource] = None, **overrides: Any) -> None:
        """``cfg``: an ``EnvConfig`` (OmegaConf node, dataclass or dict); ``overrides``: field=value on top.
        ``frame_source``: render frames with this object instead of a ManiSkill camera (then no SAPIEN
        renderer is created); used by unit tests of the frame bookkeeping."""
        c = resolve_env_config(cfg, overrides)
        self.config = c
        self.task: TaskSpec = get_task(c["task"])
        check_env_config(c)
        if c["sim_backend"] != "cpu" or int(c["num_envs"]) != 1:
            raise ValueError(f"env.sim_backend={c['sim_backend']} with env.num_envs={c['num_envs']} is a batched env: "
                             "ManiSkillTaskEnv holds one CPU-sim env; use vlmrl.envs.maniskill_vector_env."
                             "ManiSkillTaskVectorEnv (vlmrl train does, see env.vectorize)")
        self.reward_mode = c["reward_mode"]
        self.capture_frames = bool(c["capture_frames"])
        self.schedule = FrameSchedule(c["frame_stride"])
        self.frame_size = int(c["frame_size"])
        self.text_split = c["text_split"]
        self.fixed_text = c["task_text"]
        self.max_episode_steps = int(c["max_episode_steps"] or self.task.max_episode_steps)
        self.end_on_success = bool(c["end_on_success"])

        needs_renderer = self.capture_frames and frame_source is None
        env = make_maniskill_env(c, self.task, needs_renderer)
        super().__init__(env)

        base = env.unwrapped
        self.frames = frames_for(base, c, frame_source)
        self.observation_space = single_observation_space(base, c)
        self.action_space = base.single_action_space
        self._rng = np.random.default_rng()
        self._step = 0
        self.task_text = self.fixed_text or self.task.seen[0]

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = dict(options or {})
        text = options.pop("task_text", None) or self.fixed_text or self.task.sample_text(self._rng, self.text_split)
        self.task_text = text
        _, info = self.env.reset(seed=seed, options=options or None)
        obs, info = self._with_own_contacts(info)
        self._step = 0
        # ManiSkill computes the dense reward only in step(); the reset state's value is computed here.
        dense = self.env.unwrapped.compute_normalized_dense_reward(obs=None, action=None, info=info)
        return self._obs(obs), self._info(info, dense, episode_over=False)

    def step(self, action):
        obs, dense, terminated, truncated, info = self.env.step(action)  # ManiSkill's reward = normalized dense
        self._step += 1
        if not self.end_on_success:  # ManiSkill's "ignore_terminations": success is only reported in info
            terminated = terminated & False
        terminated, truncated = _scalar(terminated, bool), _scalar(truncated, bool)
        out = self._info(info, dense, episode_over=terminated or truncated)
        return self._obs(obs), env_reward_for(self.reward_mode, out["success"], out["env_reward"]), terminated, \
            truncated, out

    def render_frame(self):
        """A frame of the current state outside the schedule (e.g. the last state of a cut-off recording)."""
        if self.frames is None:
            raise RuntimeError("this env renders no frames (capture_frames=False)")
        frame = to_numpy(self.frames.capture())
        return frame.reshape(frame.shape[-3:]).astype(np.uint8, copy=False)

    # ------------------------------------------------------------------ helpers
    def _with_own_contacts(self, reset_info: Dict[str, Any]):
        """The reset observation and info recomputed with the reset state's own contacts.

        ManiSkill's CPU simulator answers contact queries (``agent.is_grasping``, PickCube's ``is_grasped``
        observation) from the last physics step, which right after a reset is the previous episode's: an episode
        that follows a grasp starts with ``is_grasped`` = 1, the policy's first action differs and so does the rest
        of the episode (RESULTS.md, sessions 10-11). One physics step from the reset state, then that state restored
        exactly, leaves the contacts of the reset configuration and the same state. The step's contact cache carries
        into the first real step, so trajectories differ from a reset without it by up to 2e-4 (PickCube, scripted
        demos); they no longer depend on the previous episode. The GPU sim's batched reset
        (:class:`~vlmrl.envs.maniskill_vector_env.ManiSkillTaskVectorEnv`) is left as ManiSkill gives it."""
        base = self.env.unwrapped
        state = base.get_state_dict()
        base.scene.px.step()
        base.set_state_dict(state)
        info = base.get_info()
        info["reconfigure"] = reset_info.get("reconfigure", False)
        obs = base.get_obs(info)
        return obs, info

    def _obs(self, obs):
        return to_numpy(obs).reshape(-1).astype(np.float32, copy=False)

    def _info(self, raw: Dict[str, Any], dense: Any, episode_over: bool) -> Dict[str, Any]:
        info: Dict[str, Any] = {"task_text": self.task_text, "step": self._step,
                                "success": _scalar(raw["success"], bool), "env_reward": _scalar(dense, float)}
        has_frame = self.frames is not None and self.schedule.due(self._step, episode_over)
        info["has_frame"] = has_frame
        if has_frame:
            info["frame"] = self.render_frame()
            info["frame_step"] = self._step
        return info


def env_reward_for(reward_mode: str, success: Any, env_reward: Any) -> Any:
    """The reward an env returns per ``env.reward_mode`` (a float for one env, an array for a vector of them);
    ground truth stays in ``info`` either way."""
    if reward_mode == "dense":
        return env_reward
    if reward_mode == "sparse":
        return success * 1.0
    return env_reward * 0.0


def _scalar(x: Any, kind: type):
    return kind(to_numpy(x).reshape(-1)[0])


def make_env(cfg: Any = None, **overrides: Any) -> ManiSkillTaskEnv:
    """Factory: an ``EnvConfig`` (or a root ``VlmrlConfig``, whose ``env`` section is used) -> env."""
    if cfg is not None and _cfg_get(cfg, "env") is not None and _cfg_get(cfg, "task") is None:
        cfg = _cfg_get(cfg, "env")
    return ManiSkillTaskEnv(cfg, **overrides)
