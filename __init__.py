"""vlmrl: distributed actor-learner RL whose rewards come from vision-language models.

Subpackages: ``system`` (launch, config, CLI), ``actors`` (env runners, frame capture),
``learner`` (RLlib algorithms, reward-model training, offline IQL), ``reward_workers``
(gRPC reward service, batching, scorers) and ``envs`` (ManiSkill tasks, dataset readers).
"""

__version__ = "0.1.0"
