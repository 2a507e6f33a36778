"""RL-VLM-F preference mode of ``vlmrl train`` (``train.mode=preference``); see :mod:`.mode`."""
