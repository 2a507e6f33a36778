"""Builds the RLlib IQL algorithm config of ``vlmrl offline`` from the ``offline`` config section.

Role in the reward path: wires the converted transitions (:mod:`vlmrl.learner.offline.offline_conversion`), the
task-text embedding connector (:mod:`vlmrl.learner.offline.task_embedding_connector`) and the AWR learner
(:mod:`vlmrl.learner.offline.iql_awr`) into one ``AwrIQLConfig``. No env is attached: the observation/action
spaces come from the data, and the learner connector turns the state space into state ++ embedding.

Small-run settings (see benchmarks/offline_iql.py for where the time goes): no env runners, one local
learner (``num_learners=0``), one pre-learner map actor (``ActorPoolStrategy(size=1)``), and by default the mapped data
materialised once (``offline.materialize``) so iterations only iterate over ready batches.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import gymnasium as gym
import numpy as np

from vlmrl.learner.offline.offline_conversion import ConversionSummary


def check_offline_config(oc: Any) -> None:
    """Clear errors for values RLlib would reject late (or not at all)."""
    if not oc.dataset:
        raise ValueError("offline.dataset is required: a labelled dataset (vlmrl label) or an episode dataset folder")
    checks = [
        (oc.iterations >= 1, f"offline.iterations must be >= 1, got {oc.iterations}"),
        (oc.updates_per_iteration >= 1, f"offline.updates_per_iteration must be >= 1, got {oc.updates_per_iteration}"),
        (oc.batch_size >= 1, f"offline.batch_size must be >= 1, got {oc.batch_size}"),
        (oc.beta > 0, f"offline.beta must be > 0, got {oc.beta}"),
        (0.0 < oc.expectile < 1.0, f"offline.expectile must be in (0, 1), got {oc.expectile}"),
        (0.0 < oc.tau <= 1.0, f"offline.tau must be in (0, 1], got {oc.tau}"),
        (0.0 <= oc.gamma <= 1.0, f"offline.gamma must be in [0, 1], got {oc.gamma}"),
        (oc.awr_weight_clip > 0, f"offline.awr_weight_clip must be > 0, got {oc.awr_weight_clip}"),
        (len(oc.hidden) >= 1 and all(h > 0 for h in oc.hidden), f"offline.hidden must be positive sizes, got {list(oc.hidden)}"),
        (all(s in ("seen", "unseen", "all") for s in oc.eval_splits),
         f"offline.eval_splits must be seen / unseen / all, got {list(oc.eval_splits)}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)


def build_iql_config(oc: Any, summary: ConversionSummary, table: Mapping[str, np.ndarray], seed: int = 0):
    """The ``AwrIQLConfig`` for ``offline`` section ``oc`` on the converted data ``summary``."""
    from ray.data import ActorPoolStrategy
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from vlmrl.learner.offline.iql_awr import AwrIQLConfig
    from vlmrl.learner.offline.task_embedding_connector import AppendTaskEmbedding

    table = dict(table)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (summary.state_dim,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (summary.action_dim,), np.float32)

    def learner_connector(input_obs_space, input_act_space):
        return AppendTaskEmbedding(input_obs_space, input_act_space, table=table)

    iter_kwargs: Dict[str, Any] = {"prefetch_batches": 1}
    if oc.shuffle_buffer > 0:
        iter_kwargs["local_shuffle_buffer_size"] = int(oc.shuffle_buffer)
    hidden = [int(h) for h in oc.hidden]
    return (
        AwrIQLConfig()
        .environment(observation_space=obs_space, action_space=act_space)
        .framework("torch")
        .env_runners(num_env_runners=0)
        .learners(num_learners=0)
        .debugging(seed=int(seed))
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=hidden, head_fcnet_hiddens=[]))
        .training(
            beta=float(oc.beta), expectile=float(oc.expectile), awr_weight_clip=float(oc.awr_weight_clip),
            actor_lr=float(oc.actor_lr), critic_lr=float(oc.critic_lr), value_lr=float(oc.value_lr),
            tau=float(oc.tau), target_network_update_freq=int(oc.target_update_every), twin_q=bool(oc.twin_q),
            gamma=float(oc.gamma), train_batch_size_per_learner=int(oc.batch_size),
        )
        .learners(learner_connector=learner_connector)
        .offline_data(
            input_=[summary.data_file],
            input_read_method="read_parquet",
            dataset_num_iters_per_learner=int(oc.updates_per_iteration),
            materialize_mapped_data=bool(oc.materialize),
            map_batches_kwargs={"compute": ActorPoolStrategy(size=1)},
            iter_batches_kwargs=iter_kwargs,
        )
    )
