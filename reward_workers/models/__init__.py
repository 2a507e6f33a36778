"""Reward models, one home below both their trainers (``vlmrl.learner``) and their scorers (``scorers/``).

* :mod:`.compact_lrm` -- the compact Large Reward Model (progress, completion, contrastive heads) the CPU default
  scorer serves and ``vlmrl lrm-train`` trains;
* :mod:`.text_embedding` -- task-text embeddings (MiniLM, hashed tokens) the models condition on;
* :mod:`.bt_reward_model` -- the Bradley-Terry reward model of the preference mode (RL-VLM-F);
* :mod:`.prompt_templates` / :mod:`.prompts` and ``templates/*.yaml`` -- the VLM questions of the ``lrm``,
  ``preference`` and ``window`` scorers (and of ``lrm_lora`` fine-tuning).

Scorers are thin adapters over these; trainers import them, never a scorer.
"""
