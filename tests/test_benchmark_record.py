"""benchmarks/record.py: the machine-readable result file every benchmark writes (benchmarks/results/<topic>.json)."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks.record import RESULTS_DIR, add_record_args, record_from_args, record_result, topic_part, val


def test_record_result_writes_topic_date_commit_machine_command_seeds_values(tmp_path):
    path = record_result("demo_topic", {"ratio": val(0.84, goal=">= 0.8", unit="ratio", note="median of 3"),
                                        "bare": 3, "nan": val(float("nan"))},
                         seeds=[0, 1], notes="n", command="python -m benchmarks.x --a 1", results_dir=tmp_path)
    assert path == tmp_path / "demo_topic.json"
    r = json.loads(path.read_text())
    assert r["topic"] == "demo_topic" and r["seeds"] == [0, 1] and r["notes"] == "n"
    assert r["command"] == "python -m benchmarks.x --a 1"
    assert r["date"].endswith("Z") and r["date"][:4].isdigit()
    assert r["commit"] and r["commit"] != "unknown"  # run inside the project's git checkout
    assert r["machine"]["nproc"] >= 1 and r["machine"]["cpu"] and r["machine"]["gpu"]
    assert r["values"]["ratio"] == {"value": 0.84, "goal": ">= 0.8", "unit": "ratio", "note": "median of 3"}
    assert r["values"]["bare"] == {"value": 3}
    assert r["values"]["nan"] == {"value": None}  # a ratio over zero is recorded as null, not invalid JSON NaN
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("topic", ["", "a/b", "../x", "a b", ".hidden"])
def test_record_result_refuses_a_topic_that_is_not_a_file_stem(tmp_path, topic):
    with pytest.raises(ValueError, match="topic"):
        record_result(topic, {"x": 1}, results_dir=tmp_path)


def test_record_result_refuses_no_values(tmp_path):
    with pytest.raises(ValueError, match="no values"):
        record_result("t", {}, results_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_record_from_args_honours_no_record_results_dir_and_topic(tmp_path, capsys):
    p = argparse.ArgumentParser()
    add_record_args(p)
    assert record_from_args(p.parse_args(["--no-record"]), "t", {"x": 1}) is None
    a = p.parse_args(["--results-dir", str(tmp_path), "--topic", "mine"])
    path = record_from_args(a, "default_topic", {"x": 1}, argv=["--topic", "mine"])
    assert path == tmp_path / "mine.json" and "[record]" in capsys.readouterr().out
    assert json.loads(path.read_text())["command"].endswith("--topic mine")
    assert not (RESULTS_DIR / "default_topic.json").exists()


def test_topic_part_makes_a_file_stem():
    assert topic_part("runs/push bc8") == "runs_push_bc8"
    assert topic_part("lrm_refine_s0") == "lrm_refine_s0"


def test_online_learning_records_its_means_and_ratios_under_a_topic_named_by_env_and_runs(tmp_path):
    from benchmarks.online_learning import record_online

    a = argparse.Namespace(env="pushcube", quick=False, no_record=False, results_dir=str(tmp_path), topic=None)
    result = {"runs": ["lrm_reward", "env_dense"], "seeds": [3, 4], "env_steps_per_run": 100000, "eval_episodes": 20,
              "mean": {"env_dense": 0.2, "env_dense_train_episodes": 0.1, "lrm_reward": 0.3,
                       "lrm_reward_train_episodes": 0.15},
              "ratios": {"lrm_reward/env_dense": 1.5, "lrm_reward/env_dense_train_episodes": 1.5}}
    record_online(a, result, ["--env", "pushcube"])
    r = json.loads((tmp_path / "online_pushcube_scratch.json").read_text())
    assert r["seeds"] == [3, 4]
    assert r["values"]["ratio_lrm_reward_over_env_dense"] == {"value": 1.5, "goal": ">= 0.9", "unit": "ratio"}
    # the same names as the file transcribed from the history, so a rerun replaces it field for field
    transcribed = json.loads((RESULTS_DIR / "online_pushcube_scratch.json").read_text())["values"]
    assert set(r["values"]) <= set(transcribed)
    # refinement rows are named by the base's demo count (--bc-demos), as the transcribed PushCube / PickCube rows
    a.bc_demos = 8
    result.update(runs=["lrm_refine", "env_refine"], mean={"bc_base": 0.75, "lrm_refine": 0.76, "env_refine": 0.75},
                  ratios={"lrm_refine/env_refine": 1.01})
    record_online(a, result, [])
    r = json.loads((tmp_path / "online_pushcube_refine_bc8.json").read_text())
    transcribed = json.loads((RESULTS_DIR / "online_pushcube_refine_bc8.json").read_text())["values"]
    assert set(r["values"]) <= set(transcribed) and "bc_base_success" in r["values"]


def test_a_test_cannot_write_into_the_repos_results_folder():
    with pytest.raises(RuntimeError, match="--no-record or --results-dir"):
        record_result("from_a_test", {"x": 1})
    assert not (RESULTS_DIR / "from_a_test.json").exists()


def test_preference_export_keeps_earlier_numbers_it_does_not_produce_again(tmp_path):
    from benchmarks.preference_learning import export

    path = tmp_path / "preference_pushcube.json"
    path.write_text(json.dumps({"summary_commit": "abc1234", "date": "2026-12-05", "numbers": [
        {"name": "oracle-lrmenc seed 3", "greedy_success": 0.05},
        {"name": "oracle seed 4", "greedy_success": 0.5}]}))
    run = {"condition": "oracle", "seed": 4, "greedy_success": 0.0}
    export({"vs_env_dense": {}, "unfinished": [], "runs": [run]}, path)
    numbers = {n["name"]: n for n in json.loads(path.read_text())["numbers"]}
    assert numbers["oracle seed 4"]["greedy_success"] == 0.0 and "from_summary" not in numbers["oracle seed 4"]
    assert numbers["oracle-lrmenc seed 3"]["greedy_success"] == 0.05  # its run folder is not here: kept, marked
    assert numbers["oracle-lrmenc seed 3"]["from_summary"] == "abc1234 (2026-12-05)"
    export({"vs_env_dense": {}, "unfinished": [], "runs": [run]}, path)  # a second export keeps the first origin
    again = {n["name"]: n for n in json.loads(path.read_text())["numbers"]}
    assert again["oracle-lrmenc seed 3"]["from_summary"] == "abc1234 (2026-12-05)" and len(again) == 2


def test_pair_accuracy_by_terciles_of_gap_and_level():
    import numpy as np

    from benchmarks.preference_learning import accuracy_by_terciles

    dense = np.linspace(0.0, 1.0, 300)
    perfect = accuracy_by_terciles(dense * 3 + 1, dense, np.zeros(300), 5000, tie=0.005)
    assert perfect["all"] == 1.0 and perfect["gap_low"] == 1.0 and perfect["pairs"] > 4000
    # a reward that only sees coarse steps of 0.25 is at chance on the smallest gaps, right on the largest
    coarse = accuracy_by_terciles(np.floor(dense * 4), dense, np.zeros(300), 5000, tie=0.005)
    assert coarse["gap_low"] < 0.5 < 0.95 < coarse["gap_high"]
    # success comes first: a reward that pays the one success frame most is right on its pairs
    success = np.zeros(300, bool)
    success[10] = True
    flipped = accuracy_by_terciles(np.where(success, 5.0, dense), dense, success, 5000, tie=0.005)
    assert flipped["all"] == 1.0


def test_bt_trainer_speed_times_both_modes_and_records_that_they_agree(tmp_path):
    from benchmarks import bt_trainer_speed

    assert bt_trainer_speed.main(["--steps", "2", "--pairs", "12", "--batch", "4", "--ensemble", "1",
                                  "--results-dir", str(tmp_path)]) == 0
    values = json.loads((tmp_path / "bt_trainer_speed.json").read_text())["values"]
    assert values["same_rewards"]["value"] is True
    assert values["seconds_per_step_uncached"]["value"] > 0 and values["seconds_per_step_cached"]["value"] > 0
    assert values["speedup"]["value"] == pytest.approx(
        values["seconds_per_step_uncached"]["value"] / values["seconds_per_step_cached"]["value"], rel=1e-3)


def test_bt_offline_reports_the_model_before_any_label_and_learns_less_from_flipped_labels(monkeypatch):
    import numpy as np

    from benchmarks import preference_learning as pl
    from vlmrl.learner.preference.frame_buffer import FrameRecord

    def records(src, split):  # brightness frames whose dense reward is their level
        rng = np.random.default_rng(0 if split == "train" else 1)
        return [FrameRecord(np.full((16, 16, 3), int(255 * v), np.uint8), "brighten", float(v), f"{src}{i}", i)
                for i, v in enumerate(rng.uniform(0, 1, 120))]

    monkeypatch.setattr(pl, "records_of", records)
    params = [{"image_size": 16, "channels": [8, 16], "embed_dim": 8, "hidden": 16}]
    clean, noisy = (pl.bt_offline(["a"], params, 200, 60, 200, 32, 0.005, epsilon=e)[0] for e in (0.0, 0.4))
    assert [c["steps"] for c in clean["curve"]] == [0, 100, 200] and clean["curve"][0]["bt_train_acc"] is None
    assert clean["epsilon"] == 0.0 and noisy["epsilon"] == 0.4
    assert clean["curve"][-1]["bt_heldout_acc"] > 0.9  # held-out labels are the clean oracle's in both
    assert noisy["curve"][-1]["bt_train_acc"] < clean["curve"][-1]["bt_train_acc"] - 0.2  # 40 % flipped to learn
