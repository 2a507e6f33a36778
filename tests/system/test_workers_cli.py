"""``vlmrl workers``: the status table, and one subprocess smoke test of start / status / scale / Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from vlmrl.system.commands.workers import format_status


def test_format_status_table():
    rows = [
        {"worker_id": "w0", "address": "10.0.0.1:5000", "queue_depth": 3, "items_per_s": 123.45,
         "model_version": "v7", "batches": 9, "mean_batch_size": 4.0, "cache_hits": 2},
        {"worker_id": "w1", "address": "10.0.0.2:5000", "model_version": "v7", "error": "RayActorError: died"},
    ]
    lines = format_status(rows).splitlines()
    assert lines[0].split()[:5] == ["WORKER", "ADDRESS", "QUEUE", "ITEMS/S", "MODEL"]
    assert lines[1].split() == ["w0", "10.0.0.1:5000", "3", "123.5", "v7", "9", "4.0", "2"]
    assert lines[2].startswith("w1") and "RayActorError" in lines[2]
    assert "(no workers)" in format_status([])


# Token auth off: with it on, attaching by explicit GCS address fails here ("InvalidAuthToken") even
# though `--address auto` works; the test attaches by explicit address so that it cannot pick up
# another Ray cluster running on the same machine.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}


def _vlmrl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlmrl.system.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


@pytest.mark.slow  # 20-50 s here (three Ray drivers); status/scale are covered through the Python API in tests/reward_workers/test_pool.py
def test_workers_cli_start_status_scale_stop(tmp_path):
    common = ["scorer.name=synthetic", "pool.num_cpus_per_worker=0.5", "pool.registry_name=cli-test-registry",
              "pool.namespace=vlmrl-cli-test"]
    start = subprocess.Popen(
        [sys.executable, "-m", "vlmrl.system.cli", "workers", "start", *common, "pool.num_workers=1",
         f"output_dir={tmp_path}", "run_name=cli"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    out = []
    try:
        deadline = time.monotonic() + 120
        address = None
        for line in start.stdout:
            out.append(line)
            if m := re.match(r"ray address: (\S+)", line):
                address = m.group(1)
            if "Ctrl-C stops" in line or time.monotonic() > deadline:
                break
        assert address, "".join(out)
        assert (tmp_path / "cli" / "config.yaml").exists()
        status = _vlmrl("workers", "status", "--address", address, *common)
        assert status.returncode == 0, status.stderr
        assert re.search(r"^w0\s+127\.0\.0\.1:\d+\s+0\s+0\.0\s+synthetic-1", status.stdout, re.M), status.stdout
        scaled = _vlmrl("workers", "scale", "2", "--address", address, *common)
        assert scaled.returncode == 0, scaled.stderr
        assert "pool now has 2 worker(s)" in scaled.stdout and re.search(r"^w1\s", scaled.stdout, re.M)
    finally:
        start.send_signal(signal.SIGINT)
        try:
            rest, _ = start.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            start.kill()
            rest, _ = start.communicate()
        out.append(rest)
    assert start.returncode == 0, "".join(out)
    assert "stopping the reward worker pool" in "".join(out)



def test_scale_takes_options_between_positionals():
    import argparse

    from vlmrl.system.commands import workers

    parser = argparse.ArgumentParser()
    workers.add_arguments(parser)
    args = parser.parse_args(["scale", "3", "--address", "10.0.0.1:6379", "reward_service", "pool.namespace=x"])
    assert (args.n, args.address, args.config, args.overrides) == (3, "10.0.0.1:6379", "reward_service", ["pool.namespace=x"])


def test_format_health_line():
    from vlmrl.system.commands.workers import format_health

    h = {"target": 3, "live": 2, "starting": 1, "counters": {"lost": 2, "replaced": 1, "scale_ups": 1},
         "last_error": "reward worker w4 failed to start: boom",
         "autoscale": {"min": 1, "max": 4, "metric": "queue_depth", "target": 8.0, "observed": 12.5}}
    out = format_health(h)
    assert out.splitlines()[0] == ("pool: target 3, 2 serving, 1 starting; lost 2, replaced 1, scale-ups 1, "
                                   "scale-downs 0; autoscale 1..4 on queue_depth (target 8, observed 12.5)")
    assert out.splitlines()[1] == "last error: reward worker w4 failed to start: boom"


def test_pool_scalars_and_console_part():
    from vlmrl.learner.online.train_metrics import console_line, pool_scalars

    s = pool_scalars({"target": 2, "live": 1, "starting": 1, "counters": {"lost": 3, "replaced": 2, "scale_ups": 1}})
    assert s["workers/pool_target"] == 2 and s["workers/pool_lost"] == 3 and s["workers/pool_scale_downs"] == 0
    s.update({"workers/num_workers": 1.0, "workers/client_no_worker_wait_s": 4.25,
              "workers/client_no_worker_bound_s": 60.0, "charts/env_steps": 10.0})
    line = console_line(3, 10, s)
    assert "pool 1/2, lost 3, replaced 2, scale +1/-0, no-worker wait 4.2 s (bound 60 s)" in line, line
