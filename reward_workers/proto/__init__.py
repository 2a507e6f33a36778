"""Protocol buffers of the reward service (generated from reward.proto; see generate.py)."""
