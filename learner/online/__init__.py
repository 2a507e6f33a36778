"""``vlmrl train``: the online trainer job, RLlib PPO, the interface of a training mode, its metrics, and the LRM refinement mode (behaviour-cloned base policy, critic warm-up)."""
