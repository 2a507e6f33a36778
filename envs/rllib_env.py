"""The env creator RLlib's env runners call (``ray.tune.register_env(name, rllib_env_creator)``): one place that
picks the single ManiSkill env or the GPU-sim vector env, so neither env module imports the other."""

from __future__ import annotations

from typing import Any, Dict

from vlmrl.envs.maniskill_env import ManiSkillTaskEnv, uses_vector_env
from vlmrl.envs.maniskill_vector_env import ManiSkillTaskVectorEnv


def rllib_env_creator(env_config: Dict[str, Any]):
    """For ``ray.tune.register_env(name, rllib_env_creator)``: RLlib passes the EnvConfig fields as a dict. A
    config that :func:`uses_vector_env` gets a :class:`ManiSkillTaskVectorEnv` (RLlib's
    ``gym_env_vectorize_mode=vector_entry_point`` adds ``num_envs``), any other one ManiSkillTaskEnv."""
    if uses_vector_env(env_config):
        return ManiSkillTaskVectorEnv(dict(env_config))
    return ManiSkillTaskEnv(dict(env_config))
