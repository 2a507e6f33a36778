"""IQL with advantage-weighted regression (AWR) policy extraction: RLlib's IQL, with the AWR weight clip
exposed and the value side of the losses logged.

Role in the reward path: the offline learner that turns reward-labelled transitions into a policy.
RLlib 2.60's ``IQLTorchLearner`` already implements IQL (Kostrikov et al. 2021) with AWR extraction:

* value (expectile) loss ``L_V = E[|tau - 1(u < 0)| u^2]``, ``u = min(Q1', Q2')(s, a) - V(s)`` (target Qs);
* Q loss ``L_Q = E[(r + gamma (1 - terminal) V(s') - Q_i(s, a))^2]`` (twin Q, each weighted 0.5);
* actor (AWR) loss ``L_pi = -E[min(exp(beta * (Q'(s, a) - V(s))), w_max) * log pi(a | s)]``.

RLlib's ``beta`` multiplies the advantage, i.e. it is the IQL paper's *inverse* temperature (larger = greedier;
the paper uses 3 on locomotion, 10 on AntMaze). RLlib hard-codes ``w_max = 100``; :class:`AwrIQLTorchLearner`
reads it from ``awr_weight_clip`` and logs what RLlib does not: the value loss, mean V / Q / advantage and
the mean and clipped fraction of the AWR weights. The loss terms and the optimizer split are RLlib's.

Target networks: :class:`AwrIQLTorchLearner` Polyak-updates the target Q networks after every learner update
(every ``target_network_update_freq`` updates when > 0; ``offline.target_update_every``), with rate ``tau``.
RLlib 2.60 does it in ``DQNLearner.after_gradient_based_update`` (ray/rllib/algorithms/dqn/dqn_learner.py:87-119),
which ``Learner.update`` calls ONCE per ``update()`` call, after looping over all ``dataset_num_iters_per_learner``
mini-batches (ray/rllib/core/learner/learner.py:1161-1166, with RLlib's own TODO on exactly this). For offline
IQL one ``update()`` is one whole iteration, so the target Q moved ``1 - (1 - tau)^iterations`` of the way to
Q (18% after 40 iterations x 50 updates at ``tau = 0.005``) instead of ``1 - (1 - tau)^updates``: V
(regressed onto the target Q) stayed at the random initial target's output (~0), Q = r + gamma V(s') never
propagated the sparse reward beyond the rewarded step and the advantages were ~0 (AWR = plain BC over all
data). The per-iteration sync is switched off and replaced by the per-update one.

:class:`AwrIQL` is RLlib's ``IQL`` whose ``restore_from_path`` works without env runners: RLlib 2.60's
``Algorithm.restore_from_path`` syncs the restored weights to ``env_runner_group`` unconditionally, which
is None for an offline algorithm (AttributeError after the state was already loaded).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Dict, Type, Union

import torch
from ray.rllib.algorithms.dqn.dqn_learner import QF_LOSS_KEY, QF_PREDS
from ray.rllib.algorithms.iql.iql import IQL, IQLConfig
from ray.rllib.algorithms.iql.iql_learner import QF_TARGET_PREDS, VF_LOSS, VF_PREDS_NEXT
from ray.rllib.algorithms.iql.torch.iql_torch_learner import IQLTorchLearner
from ray.rllib.algorithms.sac.sac_learner import QF_TWIN_LOSS_KEY, QF_TWIN_PREDS
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from ray.rllib.core.learner.utils import update_target_network
from ray.rllib.core.rl_module.apis import TargetNetworkAPI
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.metrics import NUM_TARGET_UPDATES

# Learner metric names (under the module id in ``result["learners"]``).
VALUE_MEAN = "value_mean"
Q_TARGET_MEAN = "q_target_mean"
ADVANTAGE_MEAN = "advantage_mean"
AWR_WEIGHT_MEAN = "awr_weight_mean"
AWR_WEIGHT_CLIPPED = "awr_weight_clipped_fraction"


class AwrIQL(IQL):
    """RLlib's IQL with an offline-safe ``restore_from_path`` (module doc)."""

    @classmethod
    def get_default_config(cls) -> "AwrIQLConfig":
        return AwrIQLConfig()

    def restore_from_path(self, path, *args, **kwargs):
        if self.env_runner_group is None:  # offline: nothing to sync the weights to
            return Checkpointable.restore_from_path(self, path, *args, **kwargs)
        return super().restore_from_path(path, *args, **kwargs)


class AwrIQLConfig(IQLConfig):
    """``IQLConfig`` + ``awr_weight_clip`` (the cap on exp(beta * advantage)); builds :class:`AwrIQL` with
    :class:`AwrIQLTorchLearner`."""

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or AwrIQL)
        self.awr_weight_clip = 100.0

    def training(self, *, awr_weight_clip: float | None = None, **kwargs: Any) -> "AwrIQLConfig":
        super().training(**kwargs)
        if awr_weight_clip is not None:
            self.awr_weight_clip = float(awr_weight_clip)
        return self

    def get_default_learner_class(self) -> Union[Type[Any], str]:
        return AwrIQLTorchLearner

    def validate(self) -> None:
        # MARWIL (IQL's base class) checks its own beta to lie in [0, 1]; IQL's beta is an inverse temperature
        # (> 0, the paper uses 3-10), so MARWIL's bound is skipped and IQL's own (beta > 0) applies.
        beta = self.beta
        self.beta = min(beta, 1.0) if beta > 0 else beta
        try:
            super().validate()
        finally:
            self.beta = beta
        if not self.awr_weight_clip > 0.0:
            self._value_error(f"awr_weight_clip must be > 0, got {self.awr_weight_clip}")


class AwrIQLTorchLearner(IQLTorchLearner):
    """RLlib's IQL losses with a configurable AWR weight clip, value-side metrics and target-network updates
    per learner update instead of per ``update()`` call (module doc)."""

    def build(self) -> None:
        super().build()
        self._updates_since_target_sync = defaultdict(int)

    def _update(self, batch: Dict[str, Any]):
        out = super()._update(batch)  # one gradient step on one mini-batch
        self._sync_target_networks()
        return out

    def _sync_target_networks(self) -> None:
        """Polyak-update (rate ``tau``) every module's target Q networks every ``target_network_update_freq``
        learner updates (0 or 1: after every update). The count restarts with the learner (a resumed run
        restarts the every-N phase; every-update syncing, the default, has no phase)."""
        for module_id, module in self.module._rl_modules.items():
            if not isinstance(module.unwrapped(), TargetNetworkAPI):
                continue
            config = self.config.get_config_for_module(module_id)
            self._updates_since_target_sync[module_id] += 1
            if self._updates_since_target_sync[module_id] < max(1, int(config.target_network_update_freq)):
                continue
            self._updates_since_target_sync[module_id] = 0
            for main_net, target_net in module.unwrapped().get_target_network_pairs():
                update_target_network(main_net=main_net, target_net=target_net, tau=config.tau)
            self.metrics.log_value((module_id, NUM_TARGET_UPDATES), 1, reduce="lifetime_sum")

    def after_gradient_based_update(self, *, timesteps: Dict[str, Any]) -> None:
        # DQNLearner (dqn_learner.py:97) syncs the targets here once per update() call when
        # ``timestep - last_update_ts_by_mid[mid] >= target_network_update_freq``: an infinite last-update
        # timestep switches that off (the targets are synced per learner update in ``_update``); the rest of
        # the chain (learning-rate schedules and their metrics) still runs.
        for module_id in self.module.keys():
            self.last_update_ts_by_mid[module_id] = math.inf
        super().after_gradient_based_update(timesteps=timesteps)

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: Dict, fwd_out: Dict):
        module = self._module[module_id]
        expectile = self.expectile[module_id]
        beta = self.temperature[module_id]
        w_max = float(getattr(config, "awr_weight_clip", 100.0))

        dist = module.get_train_action_dist_cls().from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        q_target, v = fwd_out[QF_TARGET_PREDS], fwd_out[Columns.VF_PREDS]
        adv = q_target - v
        value_loss = torch.mean(self._expectile_loss(adv, expectile))

        raw_w = torch.exp(beta * adv.detach())
        weights = torch.clamp(raw_w, max=w_max)
        actor_loss = -torch.mean(weights * dist.logp(batch[Columns.ACTIONS]))

        target = (batch[Columns.REWARDS]
                  + config.gamma * (1 - batch[Columns.TERMINATEDS].float()) * fwd_out[VF_PREDS_NEXT].detach())
        critic_loss = torch.mean((target - fwd_out[QF_PREDS]) ** 2)
        if config.twin_q:
            critic_twin_loss = 0.5 * torch.mean((target - fwd_out[QF_TWIN_PREDS]) ** 2)
            critic_loss = 0.5 * critic_loss
        total = value_loss + actor_loss + critic_loss

        self.metrics.log_dict({
            POLICY_LOSS_KEY: actor_loss, QF_LOSS_KEY: critic_loss, VF_LOSS: value_loss,
            VALUE_MEAN: v.mean(), Q_TARGET_MEAN: q_target.mean(), ADVANTAGE_MEAN: adv.mean(),
            AWR_WEIGHT_MEAN: weights.mean(), AWR_WEIGHT_CLIPPED: (raw_w > w_max).float().mean(),
        }, key=module_id, window=1)
        self._temp_losses[(module_id, POLICY_LOSS_KEY)] = actor_loss
        self._temp_losses[(module_id, QF_LOSS_KEY)] = critic_loss
        self._temp_losses[(module_id, VF_LOSS)] = value_loss
        if config.twin_q:
            total = total + critic_twin_loss
            self.metrics.log_value(key=(module_id, QF_TWIN_LOSS_KEY), value=critic_twin_loss, window=1)
            self._temp_losses[(module_id, QF_TWIN_LOSS_KEY)] = critic_twin_loss
        return total
