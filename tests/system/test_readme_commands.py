"""The README's ``vlmrl`` commands can't rot: every one parses and loads its config as written, and the fast ones
run as written (help, config printing, serve + one Score call, train_toy and offline_toy for one iteration)."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from vlmrl.reward_workers.frames import make_item
from vlmrl.reward_workers.proto import reward_pb2, reward_pb2_grpc
from vlmrl.system.cli import COMMANDS
from vlmrl.system.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands() -> list[list[str]]:
    """Each ``vlmrl ...`` command of the README's bash blocks as argv (continuations and multi-line quotes joined,
    comments dropped; a ``<placeholder>`` the user fills in becomes one word, ``PLACEHOLDER``)."""
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", README.read_text(), re.S):
        pending = ""
        for line in re.sub(r"<[^<>\n]*>", "PLACEHOLDER", block.replace("\\\n", " ")).splitlines():
            pending = f"{pending}\n{line}" if pending else line
            try:
                argv = shlex.split(pending, comments=True)
            except ValueError:  # a quote opened on this line closes on a later one
                continue
            pending = ""
            if argv[:1] == ["vlmrl"]:
                commands.append(argv[1:])
    return commands


COMMANDS_IN_README = readme_commands()


def test_the_readme_has_vlmrl_commands():
    assert len(COMMANDS_IN_README) >= 15
    assert {argv[0] for argv in COMMANDS_IN_README} >= {"serve", "train", "offline", "config", "workers"}


@pytest.mark.parametrize("argv", COMMANDS_IN_README, ids=[" ".join(a)[:60] for a in COMMANDS_IN_README])
def test_each_readme_command_parses_and_loads_its_config(argv):
    name, rest = argv[0], argv[1:]
    assert name in COMMANDS, f"README names an unknown subcommand: vlmrl {name}"
    parser = argparse.ArgumentParser(prog=f"vlmrl {name}")
    importlib.import_module(COMMANDS[name][0]).add_arguments(parser)
    args = parser.parse_args(rest)
    config = getattr(args, "config", None)
    overrides = list(getattr(args, "overrides", None) or [])
    if config is not None and "=" in config:
        config, overrides = None, [config, *overrides]
    if config is not None or overrides:
        load_config(config, overrides)  # raises ConfigError on an unknown key or a bad type


def run_cli(argv: list[str], timeout: float) -> str:
    out = subprocess.run([sys.executable, "-m", "vlmrl.system.cli", *argv], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    return text


def readme_command(prefix: list[str]) -> list[str]:
    return next(a for a in COMMANDS_IN_README if a[: len(prefix)] == prefix)


def test_help_and_config_printing_run_as_written():
    assert "serve" in run_cli(["--help"], 60)
    out = run_cli(readme_command(["config", "reward_service"]), 60)
    assert "max_batch: 16" in out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_as_written_answers_one_score_call(tmp_path):
    argv = [a if not a.startswith("server.port=") else f"server.port={free_port()}"
            for a in readme_command(["serve", "reward_service"])]
    proc = subprocess.Popen([sys.executable, "-m", "vlmrl.system.cli", *argv, f"output_dir={tmp_path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"serving .* on (\S+)$", line.strip())
            if m:
                address = m.group(1)
                break
        else:
            pytest.fail("serve exited without a 'serving' line:\n" + "".join(lines))
        with grpc.insecure_channel(address) as ch:
            resp = reward_pb2_grpc.RewardServiceStub(ch).Score(reward_pb2.ScoreRequest(
                request_id="readme", task="t", items=[make_item(np.full((4, 4, 3), 51, np.uint8), "frame")]),
                timeout=30)
        assert resp.rewards[0].reward == pytest.approx(0.2)
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0 and "Traceback" not in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()


def test_train_toy_as_written_runs_one_iteration(tmp_path):
    out = run_cli([*readme_command(["train", "train_toy"]), "train.iterations=1", f"output_dir={tmp_path}"], 300)
    assert re.search(r"iter 1/1 .*return", out), out[-2000:]
    assert "Casting input x" not in out  # no per-iteration warning spam
    assert (tmp_path / "train_toy" / "checkpoints").is_dir()


def test_offline_toy_as_written_writes_its_data_and_runs_one_iteration(tmp_path):
    out = run_cli([*readme_command(["offline", "offline_toy"]), "offline.iterations=1", "offline.eval_every=1",
                   "offline.eval_episodes=2", f"output_dir={tmp_path}", f"offline.dataset={tmp_path}/toy_reach"], 300)
    assert "test episodes to" in out and (tmp_path / "toy_reach" / "index.jsonl").exists()
    assert re.search(r"iter 1/1 .*eval success", out), out[-2000:]
