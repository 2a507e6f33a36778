"""``vlmrl train`` as a Ray cluster job (slow, not in CI): ``ray start --head`` on 127.0.0.1 with a temp dir and a
token (Ray 2.60 token auth), ``ray job submit`` of a short ToyReach training, wait for SUCCEEDED, stop the cluster.
The job's driver joins the cluster through RAY_ADDRESS (set by Ray for job drivers; pool.ray_address=None -> ray.init()
uses it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
VLMRL = str(Path(sys.executable).parent / "vlmrl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_vlmrl_train_runs_as_a_ray_job(tmp_path):
    token = uuid.uuid4().hex
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, OMP_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    gcs, dash = free_port(), free_port()
    # Every fixed default port too (dashboard agent 52365, client server 10001, ...): another Ray on the machine
    # (a local `ray.init`) holds them, and then the job agent never registers ("No available agent").
    own_ports = [f"--{flag}={free_port()}" for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                         "runtime-env-agent-port", "metrics-export-port",
                                                         "ray-client-server-port")]
    temp = Path("/tmp") / f"vlmrl-rayjob-{uuid.uuid4().hex[:6]}"  # short: Ray's unix socket paths have a length limit
    start = subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
                            "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", *own_ports, "--num-cpus=2",
                            f"--temp-dir={temp}", "--disable-usage-stats"],
                           env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stderr[-3000:]
    try:
        t0 = time.perf_counter()
        cmd = [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(REPO), "--",
               VLMRL, "train", "configs/train_toy.yaml", f"output_dir={tmp_path}", "run_name=job",
               "pool.ray_address=auto", "train.iterations=1", "train.train_batch_size=100",
               "train.rollout_fragment_length=50", "train.minibatch_size=50", "train.num_epochs=1",
               "env.frame_size=16", "env.max_episode_steps=20"]
        for _ in range(60):  # the head's job agent comes up some seconds after `ray start` returns (minutes when loaded)
            job = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=480)
            out = job.stdout + job.stderr
            if "No available agent to submit job" not in out:
                break
            time.sleep(3)
        wall = time.perf_counter() - t0
        assert job.returncode == 0, out[-4000:]
        assert "succeeded" in out and "iter 1/1" in out, out[-4000:]  # the CLI's SUCCEEDED message
        assert (tmp_path / "job" / "checkpoints" / "latest.json").exists()
        print(f"ray job submit: SUCCEEDED in {wall:.1f}s")
    finally:
        stop_own_cluster(temp, gcs)


def stop_own_cluster(temp: Path, gcs: int) -> None:
    """Stop THIS test's cluster only (``ray stop`` would kill every Ray instance on the machine): terminate the
    processes whose command line names its temp dir or GCS port, by pid."""
    import psutil

    marks = (str(temp), f"127.0.0.1:{gcs}", f"--gcs_server_port={gcs}")
    procs = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.pid != os.getpid() and any(m in cmd for m in marks):
            procs.append(proc)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for proc in alive:
        proc.kill()
