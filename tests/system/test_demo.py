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
    assert f"tensorboard --logdir {run}" in out
    assert list((run / "tb").glob("events.out.tfevents.*"))  # the train stage's folder under the printed logdir
    assert "stage 1" not in out  # --quick skips the reward-service stage


def test_demo_lrm_stage_writes_tensorboard_under_the_printed_logdir(synthetic_dataset, tmp_path):
    """Issue 25: the LRM's curves were written outside the logdir the demo printed. The demo's lrm-train stage (its
    config, a tiny model on the synthetic dataset) writes its event files under ``tensorboard_logdir()``, in its own
    folder beside the train stage's."""
    from vlmrl.system.cli import main
    from vlmrl.system.demo_pipeline import DemoPipeline

    overrides = [f"output_dir={tmp_path}", f"lrm_train.dataset_dirs=[{synthetic_dataset}]", "lrm_train.epochs=1",
                 "lrm_train.image_size=32", "lrm_train.widths=[8,16]", "lrm_train.embed_dim=16",
                 "lrm_train.text_encoder=hashed", "lrm_train.val_fraction=0.25"]
    assert main(["lrm-train", "demo", *overrides]) == 0
    pipeline = DemoPipeline("demo", overrides)
    logdir = pipeline.tensorboard_logdir()
    assert logdir == pipeline.run_dir == tmp_path / "demo"
    dirs = pipeline.tensorboard_dirs()
    assert set(dirs) == {"lrm-train", "train"} and all(d.is_relative_to(logdir) for d in dirs.values())
    written = list(tmp_path.rglob("events.out.tfevents.*"))
    assert written and all(f.parent == dirs["lrm-train"] for f in written), written
    moved = DemoPipeline("demo", [*overrides, f"lrm_train.out_dir={tmp_path / 'elsewhere'}"])
    assert moved.tensorboard_logdir() == tmp_path  # an override that moves a stage widens the printed logdir
