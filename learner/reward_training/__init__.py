"""Training, evaluating and auditing reward models: the compact LRM (``vlmrl lrm-train``), LoRA fine-tuning of a VLM, held-out reward evaluation and ``vlmrl audit-reward``."""
