"""The online PPO learner (RLlib new API stack) of ``vlmrl train``.

:func:`build_ppo_config` turns the config tree into an ``PPOConfig``: the env (the toy test env
or a ManiSkill task, registered with RLlib by name), env runners with the ground-truth metrics
callback and, in ``vlm-score`` mode, the reward callback of :mod:`vlmrl.actors.reward_callback`
whose rewards replace the env's before the learner sees them. Env runner failures are not
restarted: a reward that could not be obtained fails the iteration.

Env runners hold single CPU-sim envs that RLlib vectorizes (``train.num_envs_per_env_runner``), or, for ManiSkill's
GPU sim (``env.sim_backend=gpu``; ``env.vectorize``), one
:class:`~vlmrl.envs.maniskill_vector_env.ManiSkillTaskVectorEnv` of ``env.num_envs`` envs through RLlib's
``gym_env_vectorize_mode=vector_entry_point``; the reward callback and metrics are the same on both paths.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

TRAIN_MODES = ("vlm-score", "env", "preference", "lrm")
LATER_MODES = ()
REWARD_POOL_MODES = ("vlm-score", "preference", "lrm")
"""Modes whose PPO rewards come from the reward worker pool through the reward callback."""
LRM_REWARDS = ("pool", "env")
"""``lrm_refine.reward``: refine the BC base on the pool's (LRM) rewards, or on the env's own reward (control)."""


def uses_reward_pool(cfg: DictConfig) -> bool:
    """Whether the run's PPO rewards come from the reward worker pool (else from the env, per ``env.reward_mode``)."""
    if cfg.train.mode == "lrm":
        return cfg.lrm_refine.reward == "pool"
    return cfg.train.mode in REWARD_POOL_MODES


def register_env_for(cfg: DictConfig) -> str:
    """Register ``cfg.env.task``'s env with RLlib and return the name to pass to ``config.environment``."""
    from ray.tune.registry import register_env

    from vlmrl.envs.toy_reach_env import TOY_TASK, register_toy_reach

    if cfg.env.task == TOY_TASK:
        register_toy_reach()
        return TOY_TASK
    from vlmrl.envs.tasks import get_task

    get_task(cfg.env.task)  # a clear error for an unknown task before any env runner starts
    name = f"vlmrl-maniskill-{cfg.env.task}"

    def creator(env_config: Dict[str, Any]):
        from vlmrl.envs.rllib_env import rllib_env_creator

        return rllib_env_creator(env_config)

    register_env(name, creator)
    return name


def check_train_config(cfg: DictConfig) -> None:
    """Raise ValueError with the reason when the train/reward/env sections do not fit together."""
    t = cfg.train
    if t.mode in LATER_MODES:
        raise ValueError(f"train.mode={t.mode!r} is not implemented yet; available: {list(TRAIN_MODES)}")
    if t.mode not in TRAIN_MODES:
        raise ValueError(f"train.mode must be one of {list(TRAIN_MODES)}, got {t.mode!r}")
    for name in ("iterations", "train_batch_size", "minibatch_size", "num_epochs", "rollout_fragment_length",
                 "num_envs_per_env_runner"):
        if int(t[name]) < 1:
            raise ValueError(f"train.{name} must be >= 1, got {t[name]}")
    if int(t.num_env_runners) < 0:
        raise ValueError(f"train.num_env_runners must be >= 0, got {t.num_env_runners}")
    if float(t.num_gpus_per_env_runner) < 0:
        raise ValueError(f"train.num_gpus_per_env_runner must be >= 0, got {t.num_gpus_per_env_runner}")
    if _vector_env(cfg) and int(t.num_envs_per_env_runner) not in (1, int(cfg.env.num_envs)):
        raise ValueError(f"env.sim_backend={cfg.env.sim_backend} (env.vectorize={cfg.env.vectorize}) runs env.num_envs="
                         f"{cfg.env.num_envs} envs per env runner in one vector env; train.num_envs_per_env_runner="
                         f"{t.num_envs_per_env_runner} must be 1 or the same number")
    if t.mode == "lrm" and cfg.lrm_refine.reward not in LRM_REWARDS:
        raise ValueError(f"lrm_refine.reward must be one of {list(LRM_REWARDS)}, got {cfg.lrm_refine.reward!r}")
    if uses_reward_pool(cfg):
        if not cfg.env.capture_frames:
            raise ValueError(f"train.mode={t.mode} needs env.capture_frames=true (the reward comes from frames)")
        if float(cfg.reward.env_reward_weight) != 0.0 and cfg.env.reward_mode == "none":
            raise ValueError("reward.env_reward_weight is set but env.reward_mode=none returns no env reward; "
                             "use env.reward_mode=sparse (or dense)")
    if t.mode == "preference":
        from vlmrl.learner.preference.mode import check_preference_config

        check_preference_config(cfg)
    if not uses_reward_pool(cfg) and cfg.env.reward_mode == "none":
        what = "train.mode=env" if t.mode == "env" else f"train.mode={t.mode} with lrm_refine.reward=env"
        raise ValueError(f"{what} trains on the env's reward, but env.reward_mode=none returns 0; "
                         "use env.reward_mode=dense or sparse")
    if uses_reward_pool(cfg) and t.start_pool and not cfg.reward.addresses and not cfg.pool.ray_address:
        from vlmrl.reward_workers.scorers.base import check_scorer_section

        check_scorer_section(cfg.scorer, "scorer")  # this job starts the workers here: their weights must be here


def _vector_env(cfg: DictConfig) -> bool:
    """Whether each env runner holds one ManiSkill vector env (GPU sim) instead of single envs RLlib vectorizes."""
    from vlmrl.envs.toy_reach_env import TOY_TASK

    if cfg.env.task == TOY_TASK:
        return False
    from vlmrl.envs.maniskill_env import uses_vector_env

    return uses_vector_env(cfg.env)


def reward_settings(cfg: DictConfig, item_kind: str) -> Dict[str, Any]:
    """The plain-dict settings the reward callback gets in every env runner."""
    reward = OmegaConf.to_container(cfg.reward, resolve=True)
    reward["item_kind"] = item_kind
    return {
        "reward": reward,
        "client": OmegaConf.to_container(cfg.client, resolve=True),
        "registry": None if cfg.reward.addresses else {"name": cfg.pool.registry_name, "namespace": cfg.pool.namespace},
        "scorer": cfg.scorer.name,
    }


def build_ppo_config(cfg: DictConfig, item_kind: Optional[str] = None, extra_callbacks: Optional[List[Any]] = None,
                     learner_connector: Any = None):
    """The PPOConfig of a run (see module doc). ``item_kind``: resolved ``reward.item_kind`` (vlm-score mode)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from vlmrl.actors.ground_truth_metrics import GroundTruthMetricsCallback
    from vlmrl.actors.reward_callback import reward_callback_factory
    from vlmrl.learner.online.critic_warmup import CriticWarmupPPOLearner

    check_train_config(cfg)
    t = cfg.train
    callbacks: List[Any] = [GroundTruthMetricsCallback]
    if uses_reward_pool(cfg):
        callbacks.append(reward_callback_factory(reward_settings(cfg, item_kind or str(cfg.reward.item_kind))))
    callbacks += list(extra_callbacks or [])
    env_config = OmegaConf.to_container(cfg.env, resolve=True)
    if _vector_env(cfg):  # the env creator returns a gymnasium VectorEnv of env.num_envs envs (ManiSkill batches them)
        vectorize = dict(num_envs_per_env_runner=int(cfg.env.num_envs), gym_env_vectorize_mode="vector_entry_point")
    else:
        vectorize = dict(num_envs_per_env_runner=int(t.num_envs_per_env_runner), gym_env_vectorize_mode="sync")
    config = (
        PPOConfig()
        .environment(register_env_for(cfg), env_config=env_config)
        .env_runners(num_env_runners=int(t.num_env_runners), rollout_fragment_length=int(t.rollout_fragment_length),
                     num_cpus_per_env_runner=1, num_gpus_per_env_runner=float(t.num_gpus_per_env_runner),
                     sample_timeout_s=float(t.sample_timeout_s), **vectorize)
        .training(train_batch_size_per_learner=int(t.train_batch_size), minibatch_size=int(t.minibatch_size),
                  num_epochs=int(t.num_epochs), lr=float(t.lr), gamma=float(t.gamma), lambda_=float(t.lambda_),
                  entropy_coeff=float(t.entropy_coeff), vf_clip_param=float(t.vf_clip_param))
        .learners(num_learners=0, learner_connector=learner_connector,
                  learner_class=CriticWarmupPPOLearner)  # = PPOTorchLearner until a mode freezes the policy
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(t.hidden), fcnet_activation="tanh",
                                                   vf_share_layers=False, free_log_std=bool(t.free_log_std)))
        .callbacks(callbacks_class=callbacks)
        .fault_tolerance(restart_failed_env_runners=False)
        .debugging(seed=int(cfg.seed))
    )
    return config
