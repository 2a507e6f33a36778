"""Many envs of one ManiSkill task in one process, behind gymnasium's vector API: the GPU-simulation path.

ManiSkill's GPU simulation (``sim_backend=physx_cuda``) steps ``num_envs`` envs in lock-step and renders all
their cameras in one call, with batched torch tensors on the GPU. RLlib's env runners take such an env
through ``gym_env_vectorize_mode=vector_entry_point`` (:func:`vlmrl.learner.online.ppo_builder.build_ppo_config` sets it
when :func:`~vlmrl.envs.maniskill_env.uses_vector_env`): the registered creator then returns one
:class:`ManiSkillTaskVectorEnv` per env runner instead of single envs that RLlib vectorizes.

Each sub-env's ``info`` carries what :class:`~vlmrl.envs.maniskill_env.ManiSkillTaskEnv` puts in a single env's
(:mod:`vlmrl.envs.info_keys`), so the reward callback, the ground-truth metrics and the preference frame collector
run unchanged on either path:

- every sub-env has its own step counter, task text and frame schedule (reset, every ``frame_stride`` steps,
  episode end); a step renders the camera once (all envs) when any sub-env is due, and only the due ones get
  ``frame`` (gymnasium's ``_frame`` mask, which RLlib's ``DictInfoToList`` reads);
- autoreset is gymnasium's ``NEXT_STEP`` mode, the one RLlib's ``SingleAgentEnvRunner`` expects: the step after a
  sub-env's episode ended returns that sub-env's reset observation and info (reward 0, not done) and ignores its
  action. ManiSkill's batched sim steps all envs, then resets those that had ended (``options={"env_idx": ...}``);
- observations, rewards, flags and infos are numpy at the boundary (RLlib's env runners and the reward client
  work on numpy; a frame goes over gRPC anyway).

With ``sim_backend=cpu`` (``env.vectorize=maniskill``) it holds one CPU-sim env, which runs this very code on a
machine without a GPU (the tests do). The single CPU env's stale-contact fix at reset
(:meth:`ManiSkillTaskEnv._with_own_contacts`) is not applied here: ManiSkill's batched reset is used as it is.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from vlmrl.envs import info_keys as K
from vlmrl.envs.maniskill_env import (FrameSchedule, FrameSource, check_env_config, env_reward_for, frames_for,
                                      make_maniskill_env, resolve_env_config, single_observation_space, to_numpy)
from vlmrl.envs.tasks import TaskSpec, get_task


class ManiSkillTaskVectorEnv(VectorEnv):
    """``num_envs`` envs of a task on ManiSkill's batched (GPU) simulator as one gymnasium VectorEnv (module doc).

    Role in the reward path: the actors' frames (per sub-env ``info['frame']`` on its frame steps) and the ground
    truth (``success``, ``env_reward``) for evaluation, from thousands of envs per GPU in production.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, cfg: Any = None, frame_source: Optional[FrameSource] = None, **overrides: Any) -> None:
        """``cfg``: an ``EnvConfig`` (OmegaConf node, dataclass or dict); ``overrides``: field=value on top.
        ``frame_source``: render frames (N, H, W, 3) with this object instead of a ManiSkill camera (then no SAPIEN
        renderer is created); used by unit tests of the per-env frame bookkeeping."""
        c = resolve_env_config(cfg, overrides)
        check_env_config(c)
        self.config = c
        self.task: TaskSpec = get_task(c["task"])
        self.num_envs = int(c["num_envs"])
        self.reward_mode = c["reward_mode"]
        self.capture_frames = bool(c["capture_frames"])
        self.schedule = FrameSchedule(c["frame_stride"])
        self.text_split = c["text_split"]
        self.fixed_text = c["task_text"]
        self.end_on_success = bool(c["end_on_success"])

        self.env = make_maniskill_env(c, self.task, self.capture_frames and frame_source is None)
        base = self.env.unwrapped
        self.device = base.device
        self.frames = frames_for(base, c, frame_source)
        self.single_observation_space = single_observation_space(base, c)
        self.single_action_space = base.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self._rng = np.random.default_rng()
        self._steps = np.zeros(self.num_envs, np.int64)
        self._texts: List[str] = [self.fixed_text or self.task.seen[0]] * self.num_envs
        self._ended = np.zeros(self.num_envs, bool)
        """Sub-envs whose episode ended at the last step: the next step resets them (NEXT_STEP autoreset)."""

    # ------------------------------------------------------------------ gym vector API
    def reset(self, *, seed: Optional[int | List[int]] = None, options: Optional[dict] = None):
        """Resets every sub-env (``seed``: one int for all, or one per sub-env)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = dict(options or {})
        if "env_idx" in options:
            raise ValueError("ManiSkillTaskVectorEnv resets sub-envs itself (NEXT_STEP autoreset); reset() resets all")
        text = options.pop("task_text", None)
        obs, info = self.env.reset(seed=seed, options=options or None)
        self._steps[:] = 0
        self._ended[:] = False
        self._texts = [text or self._sample_text() for _ in range(self.num_envs)]
        dense = self.env.unwrapped.compute_normalized_dense_reward(obs=None, action=None, info=info)
        return self._obs(obs), self._infos(info, dense, episode_over=self._ended)

    def step(self, actions):
        import torch

        reset_now = self._ended.copy()
        act = torch.as_tensor(np.asarray(actions, np.float32), device=self.device)
        obs, dense, terminated, truncated, info = self.env.step(act)  # ManiSkill's reward = normalized dense
        terminated, truncated = _flags(terminated), _flags(truncated)
        if not self.end_on_success:  # ManiSkill's "ignore_terminations": success is only reported in info
            terminated[:] = False
        self._steps += 1
        if reset_now.any():  # NEXT_STEP autoreset: the sub-envs that ended last step start their next episode
            idx = np.flatnonzero(reset_now)
            reset_obs, reset_info = self.env.reset(options={"env_idx": torch.as_tensor(idx, device=self.device)})
            reset_dense = self.env.unwrapped.compute_normalized_dense_reward(obs=None, action=None, info=reset_info)
            obs = _rows_from(reset_now, reset_obs, obs)
            dense = _rows_from(reset_now, reset_dense, dense)
            info = {"success": _rows_from(reset_now, reset_info["success"], info["success"])}
            terminated[reset_now] = False
            truncated[reset_now] = False
            self._steps[reset_now] = 0
            for i in idx:
                self._texts[i] = self._sample_text()
        self._ended = terminated | truncated
        infos = self._infos(info, dense, episode_over=self._ended)
        rewards = np.asarray(env_reward_for(self.reward_mode, infos[K.SUCCESS], infos[K.ENV_REWARD]), np.float32)
        rewards[reset_now] = 0.0
        return self._obs(obs), rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        if getattr(self, "env", None) is not None:  # None when the constructor refused the config
            self.env.close()

    # ------------------------------------------------------------------ helpers
    def _sample_text(self) -> str:
        return self.fixed_text or self.task.sample_text(self._rng, self.text_split)

    def _obs(self, obs) -> np.ndarray:
        return to_numpy(obs).reshape(self.num_envs, -1).astype(np.float32, copy=False)

    def _infos(self, raw: Dict[str, Any], dense: Any, episode_over: np.ndarray) -> Dict[str, np.ndarray]:
        """gymnasium's vector info: one array per key, ``_<key>`` masks where only some sub-envs have the key."""
        n = self.num_envs
        infos: Dict[str, np.ndarray] = {
            K.TASK_TEXT: np.array(self._texts, dtype=object),
            K.STEP: self._steps.copy(),
            K.SUCCESS: to_numpy(raw["success"]).reshape(n).astype(bool),
            K.ENV_REWARD: to_numpy(dense).reshape(n).astype(np.float64),
        }
        due = (self._steps % self.schedule.stride == 0) | episode_over  # FrameSchedule.due, for every sub-env
        if self.frames is None:
            due[:] = False
        infos[K.HAS_FRAME] = due
        if due.any():  # one render for all sub-envs (the GPU renders them together); kept where due
            frames = to_numpy(self.frames.capture()).astype(np.uint8, copy=False)
            infos[K.FRAME] = frames.reshape((n,) + frames.shape[-3:])
            infos[K.FRAME_STEP] = self._steps.copy()
            infos["_" + K.FRAME] = due
            infos["_" + K.FRAME_STEP] = due
        return infos


def _flags(x: Any) -> np.ndarray:
    return to_numpy(x).reshape(-1).astype(bool)


def _rows_from(mask: np.ndarray, new: Any, old: Any):
    """``old`` with the rows where ``mask`` is set taken from ``new`` (torch tensors of the same shape)."""
    import torch

    m = torch.as_tensor(mask, device=old.device).reshape((-1,) + (1,) * (old.dim() - 1))
    return torch.where(m, new.to(old.dtype), old)
