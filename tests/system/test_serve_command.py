"""``vlmrl serve``: a real process serving the configured scorer, stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from vlmrl.reward_workers.frames import make_item
from vlmrl.reward_workers.proto import reward_pb2, reward_pb2_grpc
from vlmrl.system import cli


def test_serve_answers_and_stops_on_sigterm(tmp_path):
    cmd = [sys.executable, "-m", "vlmrl.system.cli", "serve", "scorer.name=synthetic", "scorer.params.fixed_ms=0",
           f"output_dir={tmp_path}", "run_name=srv", "server.max_wait_ms=1", "--stats-every", "0.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        address, lines, t0 = None, [], time.time()
        while address is None and time.time() - t0 < 60:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.match(r"serving synthetic .* on (\S+)$", line.strip())
            address = m.group(1) if m else None
        assert address, f"no 'serving' line; output: {''.join(lines)}"
        assert address.startswith("127.0.0.1:")
        with grpc.insecure_channel(address) as ch:
            item = make_item(np.full((4, 4, 3), 51, np.uint8), "frame")
            resp = reward_pb2_grpc.RewardServiceStub(ch).Score(
                reward_pb2.ScoreRequest(request_id="cli", task="t", items=[item]), timeout=10)
        assert resp.rewards[0].reward == pytest.approx(0.2)
        while "requests=1" not in (line := proc.stdout.readline()):  # a periodic stats line shows it
            assert line, "server exited early"
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, rest
        assert "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = Path(tmp_path) / "srv" / "config.yaml"
    assert saved.exists() and "synthetic" in saved.read_text()


def test_serve_unknown_scorer_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["serve", "scorer.name=nope", f"output_dir={tmp_path}"]) == 2
    assert "unknown scorer 'nope'" in capsys.readouterr().err
