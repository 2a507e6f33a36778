"""Critic warm-up for PPO started from a pretrained policy (``lrm_refine.critic_warmup_iters``).

A behaviour-cloned base policy comes with an untrained value function (BC = MARWIL at beta=0 fits no value
head), so the first PPO updates follow advantages of a random critic and can undo what BC learned before the
reward model's signal arrives. :class:`CriticWarmupPPOLearner` is PPO's own torch Learner with one switch:
while the policy is frozen, the policy head's outputs are detached in the loss, so every PPO loss term
(surrogate, entropy, KL) leaves the policy, its log std and the KL coefficient unchanged, while the separate
value network (``vf_share_layers=False``) learns the rewards the pool pays. Role in the reward path: the first
iterations of refinement only fit the critic to the LRM's rewards.
"""

from __future__ import annotations

from typing import Any, Dict

from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns


class CriticWarmupPPOLearner(PPOTorchLearner):
    """PPO's torch learner whose policy can be frozen (value function still trained); see module doc."""

    policy_frozen: bool = False

    def freeze_policy(self, frozen: bool) -> bool:
        self.policy_frozen = bool(frozen)
        return self.policy_frozen

    def compute_loss_for_module(self, *, module_id, config, batch: Dict[str, Any], fwd_out: Dict[str, Any]):
        if self.policy_frozen:
            fwd_out = dict(fwd_out)
            fwd_out[Columns.ACTION_DIST_INPUTS] = fwd_out[Columns.ACTION_DIST_INPUTS].detach()
        return super().compute_loss_for_module(module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)

    def _update_module_kl_coeff(self, *, module_id, config, kl_loss: float) -> None:
        if not self.policy_frozen:  # a frozen policy's KL is 0: do not let it shrink the coefficient
            super()._update_module_kl_coeff(module_id=module_id, config=config, kl_loss=kl_loss)


def set_policy_frozen(algo: Any, frozen: bool) -> None:
    """Freeze / unfreeze the policy in every learner of ``algo`` (built with :class:`CriticWarmupPPOLearner`)."""
    answers = [r.get() for r in algo.learner_group.foreach_learner(lambda learner: learner.freeze_policy(frozen))]
    if not answers or any(a is not bool(frozen) for a in answers):
        raise RuntimeError(f"could not set policy_frozen={frozen} in the learners (answers: {answers})")
