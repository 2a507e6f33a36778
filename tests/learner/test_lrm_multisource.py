"""Multi-source LRM data: lrm-train / eval-reward read a project-format dataset and a Minari HDF5 file together."""

import pytest
from omegaconf import OmegaConf

from vlmrl.envs.dataset import read_index
from vlmrl.envs.offline_readers import write_minari_hdf5
from vlmrl.envs.synthetic_episodes import SOURCES, make_synthetic_episode
from vlmrl.learner.reward_training.lrm_data import (ShuffleBufferBatches, TargetRule, check_datasets, dataset_sources,
                                    is_val_episode, iter_split_episodes, split_entries)
from vlmrl.system.config import LrmTrainConfig

KEYS = {"state_key": "observations/state", "image_key": "observations/pixels"}


@pytest.fixture(scope="module")
def minari_file(tmp_path_factory):
    eps = [make_synthetic_episode(seed=5000 + i, source=SOURCES[i % len(SOURCES)]) for i in range(12)]
    return write_minari_hdf5(tmp_path_factory.mktemp("minari") / "ext.hdf5", eps, task_in="none")


def _mix(synthetic_dataset, minari_file):
    return [str(synthetic_dataset), {"path": str(minari_file), "format": "minari_hdf5", "task_text": "push the cube",
                                      "hdf5": KEYS}]


def test_plain_paths_keep_their_split(synthetic_dataset, minari_file):
    (src,) = dataset_sources([str(synthetic_dataset)])
    assert src.format == "episodes" and not src.qualified
    val = split_entries([str(synthetic_dataset)], "val", 0.25)
    expected = [e["id"] for e in read_index(synthetic_dataset) if is_val_episode(e, 0.25)]  # the bare-id hash
    assert [e["id"] for _, e in val] == expected
    # adding a second source leaves the first source's split as it was; the HDF5 ids are qualified
    mixed = split_entries(_mix(synthetic_dataset, minari_file), "val", 0.25)
    assert [e["id"] for s, e in mixed if s.format == "episodes"] == expected
    ext = dataset_sources(_mix(synthetic_dataset, minari_file))[1]
    assert ext.name == "ext" and ext.qualified and ext.split_key({"id": "episode_3"}) == "ext/episode_3"


def test_mixed_split_is_deterministic_and_covers_both_sources(synthetic_dataset, minari_file):
    mix = _mix(synthetic_dataset, minari_file)
    train, val = split_entries(mix, "train", 0.3), split_entries(mix, "val", 0.3)
    assert split_entries(mix, "train", 0.3) == train and split_entries(mix[::-1], "val", 0.3) != []
    assert {e["id"] for s, e in split_entries(mix[::-1], "val", 0.3)} == {e["id"] for s, e in val}
    assert len(train) + len(val) == 24 + 12
    assert {s.format for s, _ in train} == {"episodes", "minari_hdf5"}
    # the same ids in a second HDF5 file named differently split independently (no collision)
    other = {**mix[1], "name": "other"}
    a = [e["id"] for s, e in split_entries([mix[1]], "val", 0.5)]
    b = [e["id"] for s, e in split_entries([other], "val", 0.5)]
    assert a != b
    eps = list(iter_split_episodes(mix, "val", 0.3))
    assert len(eps) == len(val) and any(ep.task == "push the cube" for ep in eps)


def test_shuffle_buffer_batches_draw_from_both_sources(synthetic_dataset, minari_file):
    train = split_entries(_mix(synthetic_dataset, minari_file), "train", 0.3)
    batches = ShuffleBufferBatches(train, 32, 64, TargetRule(), buffer_episodes=8, seed=0)
    tasks = set()
    for b in batches.epoch():
        tasks.update(b.tasks)
    assert "push the cube" in tasks and len(tasks - {"push the cube"}) > 0


def test_train_compact_lrm_on_a_mix_then_eval_reward_on_hdf5(synthetic_dataset, minari_file, tmp_path):
    from vlmrl.learner.reward_training.lrm_train import train_compact_lrm
    from vlmrl.system.cli import main

    mix = _mix(synthetic_dataset, minari_file)
    cfg = OmegaConf.merge(OmegaConf.structured(LrmTrainConfig), {
        "dataset_dirs": mix, "out_dir": str(tmp_path / "model"), "epochs": 1, "image_size": 32, "widths": [8, 16],
        "embed_dim": 16, "text_encoder": "hashed", "val_fraction": 0.3, "batch_size": 64, "buffer_episodes": 64})
    logs = []
    res = train_compact_lrm(cfg, log=logs.append)
    per = res["episodes_per_source"]
    assert per["ext"]["train"] > 0 and per[synthetic_dataset.name]["train"] > 0
    assert res["steps"] > 0 and any("ext: " in m for m in logs)
    assert (tmp_path / "model" / "model.safetensors").exists()

    ev = tmp_path / "eval"
    inp = "{path: %s, format: minari_hdf5, task_text: push the cube, hdf5: {state_key: observations/state, " \
          "image_key: observations/pixels}}" % minari_file
    rc = main(["eval-reward", f"eval_reward.dataset_dirs=[{inp}]", f"eval_reward.out_dir={ev}",
               "eval_reward.val_fraction=0.3", f"eval_reward.scorers=[{{name: compact_lrm, params: "
               f"{{weights_dir: {tmp_path / 'model'}}}}}]"])
    assert rc == 0 and (ev / "metrics.json").exists()


def test_bad_entries_are_clear(tmp_path, minari_file):
    assert "format" in check_datasets([{"path": str(minari_file), "format": "parquet"}])
    assert "needs a path" in check_datasets([{"format": "minari_hdf5"}])
    assert "no task text" in check_datasets([{"path": str(minari_file), "format": "minari_hdf5", "hdf5": KEYS}])
    assert "index.jsonl" in check_datasets([str(tmp_path)])
    assert check_datasets([{"path": str(minari_file), "format": "minari_hdf5", "task_text": "t", "hdf5": KEYS}]) is None


def test_folders_with_the_same_name_are_told_apart_by_their_parents(tmp_path):
    """Two rounds of ``audit-reward --record-negatives`` both write ``policy_negatives``: per-source counts and logs
    must name both (they were merged under one label); explicit names and distinct folder names stay as given."""
    a, b = tmp_path / "round1" / "policy_negatives", tmp_path / "round2" / "policy_negatives"
    sources = dataset_sources([str(tmp_path / "demos"), str(a), str(b), {"path": str(tmp_path / "x"), "name": "mine"}])
    assert [s.name for s in sources] == ["demos", "round1/policy_negatives", "round2/policy_negatives", "mine"]
    assert [s.path for s in sources][1:3] == [str(a), str(b)]
    assert [s.split_key({"id": "ep_000001"}) for s in sources[1:3]] == ["ep_000001", "ep_000001"]  # split unchanged
