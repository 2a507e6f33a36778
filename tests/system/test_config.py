"""The config tree: schema defaults, YAML, dotlist overrides, clear errors, saved resolved config."""

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from vlmrl.system.config import ConfigError, load_config, save_resolved


def test_defaults_yaml_and_overrides_merge_in_order():
    cfg = load_config("reward_service", ["server.max_batch=7", "pool.num_workers=3"])
    assert cfg.scorer.name == "cnn"  # from the YAML
    assert cfg.server.max_batch == 7 and cfg.pool.num_workers == 3  # overrides win
    assert cfg.server.host == "127.0.0.1"  # schema default


@pytest.mark.parametrize(
    "overrides, fragment",
    [(["server.no_such_key=1"], "no_such_key"), (["server.max_batch=many"], "max_batch"), (["max_batch"], "key=value")],
)
def test_bad_overrides_are_clear_errors(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, overrides)


def test_missing_file_is_a_clear_error():
    with pytest.raises(ConfigError, match="not found"):
        load_config("does/not/exist.yaml")


def test_resolved_config_is_saved_and_reloads(tmp_path):
    cfg = load_config(None, ["run_name=x", "server.max_wait_ms=2.5"])
    path = save_resolved(cfg, tmp_path)
    again = OmegaConf.load(path)
    assert again.server.max_wait_ms == 2.5 and again.run_name == "x"


def test_cli_prints_resolved_config():
    out = subprocess.run([sys.executable, "-m", "vlmrl.system.cli", "config", "reward_service", "server.port=5005"],
                         capture_output=True, text=True, check=True).stdout
    assert "port: 5005" in out and "name: cnn" in out


def test_cli_bad_override_exits_2_with_message():
    proc = subprocess.run([sys.executable, "-m", "vlmrl.system.cli", "config", "server.max_batch=lots"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "max_batch" in proc.stderr


def test_a_weight_table_written_whole_replaces_the_default_instead_of_adding_to_it():
    # demo.yaml writes {progress: 1.0, completion: 0.5}; OmegaConf's key-by-key merge kept the schema's
    # {reward: 1.0} beside it, so every LRM run also trained on the scorer's scalar reward as a per-step rate
    assert dict(load_config("demo").reward.components) == {"progress": 1.0, "completion": 0.5}
    assert dict(load_config(None).reward.components) == {"reward": 1.0}  # no table given: the default stays
    one_key = load_config("demo", ["reward.components.reward=2.0"]).reward.components
    assert dict(one_key) == {"progress": 1.0, "completion": 0.5, "reward": 2.0}  # a single weight adds
    whole = load_config("demo", ["reward.components={cosine: 1.0}"]).reward.components
    assert dict(whole) == {"cosine": 1.0}


def test_lora_task_weights_written_whole_leave_the_unnamed_questions_out(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lrm_train:\n  vlm:\n    task_weights: {progress: 1.0}\n")
    assert dict(load_config(str(path)).lrm_train.vlm.task_weights) == {"progress": 1.0}


def test_renaming_the_scorer_on_the_command_line_drops_the_yaml_params_of_the_other_scorer():
    # configs/reward_service.yaml gives the cnn's image_size; synthetic has no such parameter.
    cfg = load_config("reward_service", ["scorer.name=synthetic"])
    assert cfg.scorer.name == "synthetic" and dict(cfg.scorer.params) == {}
    cfg = load_config("reward_service", ["scorer.name=synthetic", "scorer.params.cost_ms=3"])
    assert dict(cfg.scorer.params) == {"cost_ms": 3}
    # the same name, or params alone, keep the YAML's params
    assert dict(load_config("reward_service", ["scorer.name=cnn"]).scorer.params) == {"image_size": 64}
    assert dict(load_config("reward_service", ["scorer.params.image_size=32"]).scorer.params) == {"image_size": 32}
