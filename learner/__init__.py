"""The learner floor: everything that updates a policy or a reward model, by role.

* :mod:`.online` -- ``vlmrl train``: the trainer job, RLlib PPO, the mode interface, metrics, and the LRM
  refinement mode (BC base policy, critic warm-up);
* :mod:`.preference` -- ``train.mode=preference`` (RL-VLM-F): frame collection, labellers, Bradley-Terry trainer;
* :mod:`.reward_training` -- training, evaluating and auditing reward models (compact LRM, LoRA VLM);
* :mod:`.offline` -- ``vlmrl offline``: dataset conversion, language-conditioned IQL with AWR, evaluation;
* :mod:`.labels` -- ``vlmrl label``: scoring offline datasets through the reward workers.

The models themselves live below, in :mod:`vlmrl.reward_workers.models`; config schemas in :mod:`.config`.

Modules that moved keep their old import path (``vlmrl.learner.lrm_train`` is
``vlmrl.learner.reward_training.lrm_train``, the same module object), with a DeprecationWarning, so code and
pickles (RLlib checkpoints name connector classes by module path) written before the move still load.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old module path -> where it lives now
MOVED_MODULES = {
    f"vlmrl.learner.{old}": f"vlmrl.learner.{new}"
    for old, new in {
        "online_trainer": "online.online_trainer",
        "ppo_builder": "online.ppo_builder",
        "training_mode": "online.training_mode",
        "train_metrics": "online.train_metrics",
        "lrm_refine": "online.lrm_refine",
        "bc_pretrain": "online.bc_pretrain",
        "critic_warmup": "online.critic_warmup",
        "lrm_train": "reward_training.lrm_train",
        "lrm_data": "reward_training.lrm_data",
        "lrm_lora": "reward_training.lrm_lora",
        "reward_eval": "reward_training.reward_eval",
        "reward_audit": "reward_training.reward_audit",
        "offline_trainer": "offline.offline_trainer",
        "offline_conversion": "offline.offline_conversion",
        "offline_eval": "offline.offline_eval",
        "iql_awr": "offline.iql_awr",
        "iql_builder": "offline.iql_builder",
        "task_embedding_connector": "offline.task_embedding_connector",
        "labelling": "labels.labelling",
        "label_workers": "labels.label_workers",
    }.items()
}
MOVED_MODULES.update({
    "vlmrl.learner.compact_lrm": "vlmrl.reward_workers.models.compact_lrm",
    "vlmrl.learner.text_embedding": "vlmrl.reward_workers.models.text_embedding",
})


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module path of :data:`MOVED_MODULES` to the module at its new path."""

    def __init__(self) -> None:
        self._specs = {}  # old path -> the moved module's own spec, restored after the import machinery sets the alias's

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._specs.pop(module.__spec__.name, module.__spec__)  # keep the module's own spec


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
