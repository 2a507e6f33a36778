"""Shared pytest fixtures."""

import os

# Keep Ray and torch small on 2-core CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
