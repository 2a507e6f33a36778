"""``vlmrl demo``: stage 1 (reward service with a worker killed halfway) loses no frame (slow, ~30 s: excluded
from ``make test``, run with ``make test-all``); stage 2's pipeline in its ``--quick`` ToyReach variant (demos ->
BC -> PPO on pool rewards) runs end to end and reports base vs refined success and the TensorBoard command.
The full PushCube demo (~15 min) is not a test: run ``make demo``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_kills_a_worker_and_loses_no_frame():
    res = subprocess.run([sys.executable, "-m", "vlmrl.system.cli", "demo", "--service-only", "--frames", "160"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert ">>> killed reward worker" in res.stdout
    assert "OK: 160 of 160 frames scored, 0 lost, 20/20 requests answered exactly once" in res.stdout


def test_demo_quick_runs_the_lrm_pipeline(tmp_path, capsys):
    import json
    import re

    from vlmrl.system.cli import main

    assert main(["demo", "--quick", f"output_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "demo_quick"
    base = json.loads((run / "base_eval.json").read_text())["success_base"]
    m = re.search(r"base policy (\d\.\d\d) -> after LRM refinement (\d\.\d\d)", out)
    assert m, out[-3000:]
    assert float(m.group(1)) == pytest.approx(base, abs=0.005)
    assert 0.0 <= float(m.group(2)) <= 1.0
    assert f"tensorboard --logdir {run / 'tb'}" in out
    assert any((run / "tb").iterdir())
    assert "stage 1" not in out  # --quick skips the reward-service stage
