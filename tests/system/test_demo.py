"""``vlmrl demo`` (reward service with a worker killed halfway) runs end to end and loses no frame.

Slow (starts Ray and two CNN workers, ~30 s): excluded from ``make test``; run with ``make test-all``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_kills_a_worker_and_loses_no_frame():
    res = subprocess.run([sys.executable, "-m", "vlmrl.system.cli", "demo", "--frames", "160"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert ">>> killed reward worker" in res.stdout
    assert "OK: 160 of 160 frames scored, 0 lost, 20/20 requests answered exactly once" in res.stdout
