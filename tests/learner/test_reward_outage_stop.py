"""A run whose rewards stop (no reward worker within client.no_worker_wait_s) stops with the reason and a resumable
checkpoint of the last finished iteration (issue 22); other errors pass through untouched. No Ray: a stand-in algo."""

from __future__ import annotations

import json
from pathlib import Path

from vlmrl.learner.online.online_trainer import OnlineTrainer
from vlmrl.system.config import load_config


class SavingAlgo:
    def save_to_path(self, path: str) -> None:
        Path(path).mkdir(parents=True)
        (Path(path) / "state").write_text("weights")


def trainer(tmp_path, lines):
    t = OnlineTrainer(load_config("train_toy"), tmp_path, print_fn=lines.append)
    t.algo, t.iteration = SavingAlgo(), 3
    return t


def test_reward_outage_saves_a_resumable_checkpoint_and_says_why(tmp_path):
    lines: list[str] = []
    t = trainer(tmp_path, lines)
    err = RuntimeError("ray::EnvRunner.sample() failed\nRewardPathError: episode 7: the reward of the frame of step 4 "
                       "could not be obtained from the reward service: RewardUnavailableError: reward service "
                       "unavailable ...; no reward worker answered for 60.0s (client.no_worker_wait_s=60)")
    t._stop_on_reward_outage(err, 1200.0)
    latest = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert latest["iteration"] == 3 and latest["env_steps"] == 1200
    assert (Path(latest["path"]) / "state").read_text() == "weights"
    assert lines[0].startswith("run stopped at iteration 4: no rewards from the reward service (RewardPathError")
    assert "client.no_worker_wait_s=60" in lines[0]
    assert any("train.resume=true" in line for line in lines)


def test_other_errors_and_a_first_iteration_save_nothing(tmp_path):
    lines: list[str] = []
    t = trainer(tmp_path, lines)
    t._stop_on_reward_outage(ValueError("a learner bug"), 1200.0)
    assert lines == [] and not (tmp_path / "checkpoints").exists()
    t.iteration = 0
    t._stop_on_reward_outage(RuntimeError("RewardPathError: no reward"), None)
    assert "nothing to checkpoint" in lines[-1] and not (tmp_path / "checkpoints").exists()
