"""Re-anchoring the compact-LRM reward on the policy's own states during a run (learner/online/reward_refresh.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from vlmrl.envs.synthetic_episodes import make_synthetic_episode, write_synthetic_dataset
from vlmrl.learner.online import reward_refresh as rr
from vlmrl.learner.reward_training.lrm_train import train_compact_lrm
from vlmrl.system.config import load_config, save_resolved

TINY = ["lrm_train.image_size=32", "lrm_train.widths=[8,16]", "lrm_train.embed_dim=16", "lrm_train.text_encoder=hashed",
        "lrm_train.epochs=1", "lrm_train.val_fraction=0.25", "lrm_train.batch_size=16", "lrm_train.num_threads=1",
        "lrm_train.restarts=1", "lrm_train.parallel_restarts=1"]


@pytest.fixture(scope="module")
def served_lrm(tmp_path_factory):
    """A compact LRM folder as `vlmrl lrm-train` leaves it: weights + the resolved config naming its data."""
    root = tmp_path_factory.mktemp("refresh")
    data = write_synthetic_dataset(root / "demos", 16, seed=3, image_size=32)
    cfg = load_config("demo", [*TINY, f"lrm_train.dataset_dirs=[{data}]", f"lrm_train.out_dir={root / 'lrm'}"])
    save_resolved(cfg, root / "lrm")
    train_compact_lrm(cfg.lrm_train, log=lambda m: None)
    return root / "lrm", data


def _cfg(lrm, tmp_path, *extra):
    return load_config("demo", ["train.mode=vlm-score", "scorer.name=compact_lrm", f"scorer.params.weights_dir={lrm}",
                                "reward_refresh.every=2", "reward_refresh.episodes=2", "reward_refresh.epochs=1",
                                "train.iterations=10", f"output_dir={tmp_path}", *extra])


class FakePool:
    """The part of RewardWorkerPool the round uses: the hot swap (what the workers would serve)."""

    def __init__(self):
        self.updates = []

    def update_weights(self, version, state):
        self.updates.append((version, state))
        return {"w0": version}


def test_config_is_checked_with_the_fix(served_lrm, tmp_path):
    lrm, _ = served_lrm
    rr.check_reward_refresh_config(_cfg(lrm, tmp_path))
    for extra, match in ((["train.mode=preference"], "train.mode=vlm-score"),
                         (["scorer.name=clip"], "scorer.name=compact_lrm"),
                         ([f"scorer.params.ensemble_dirs=[{lrm}]"], "ensemble_dirs"),
                         (["reward.addresses=[localhost:1]"], "reward.addresses"),
                         (["reward_refresh.episodes=0"], "1-1000"),
                         (["reward_refresh.epochs=0"], "epochs must be >= 1"),
                         (["reward_refresh.lr=0"], "lr must be > 0"),
                         ([f"scorer.params.weights_dir={tmp_path}"], "not a compact LRM folder"),
                         ([f"reward_refresh.dataset_dirs=[{tmp_path / 'missing'}]"], "missing")):
        with pytest.raises(ValueError, match=match):
            rr.check_reward_refresh_config(_cfg(lrm, tmp_path, *extra))
    # the data comes from the LRM folder's own config.yaml; without one, from this config or reward_refresh
    assert Path(rr.recipe(_cfg(lrm, tmp_path)).dataset_dirs[0]) == served_lrm[1]
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.safetensors", "config.json"):  # a servable LRM folder without lrm-train's config.yaml
        (bare / name).write_bytes((lrm / name).read_bytes())
    with pytest.raises(ValueError, match="reward_refresh.dataset_dirs"):
        rr.check_reward_refresh_config(_cfg(bare, tmp_path, "lrm_train.dataset_dirs=[]"))


def test_rounds_record_fine_tune_from_the_served_model_and_hot_swap(served_lrm, tmp_path, monkeypatch):
    """Each round: the policy's episodes are written with ground truth, the LRM is fine-tuned from the one served
    (round 2 from round 1's) on its own data + every round's episodes, and the pool serves it under a new version;
    a resume serves the newest round at or before the restored iteration again."""
    from safetensors.torch import load as load_safetensors

    lrm, demos = served_lrm
    calls = []

    def fake_episodes(module, env_cfg, seeds, frame_stride, name, run):  # no simulator: synthetic episodes
        calls.append((list(seeds), frame_stride, name))
        for s in seeds:
            yield make_synthetic_episode(seed=s, source="random", image_size=32)

    monkeypatch.setattr("vlmrl.learner.reward_training.policy_episodes.iter_module_episodes", fake_episodes)
    cfg = _cfg(lrm, tmp_path)
    mode = rr.RewardRefreshMode(cfg, tmp_path / "run", print_fn=lambda m: None)
    pool = FakePool()
    mode.start(pool)

    class Algo:
        def get_module(self):
            return "policy"

    assert mode.after_iteration(Algo(), 1) == {} and not pool.updates  # not a round's iteration
    s = mode.after_iteration(Algo(), 2)
    assert s["reward_refresh/round"] == 1.0 and 0.0 <= s["reward_refresh/val_progress_acc"] <= 1.0
    assert calls[0] == ([701_000, 701_001], 2, "policy_run_iter_000002")
    r1 = tmp_path / "run" / "reward_refresh" / "iter_000002"
    meta = json.loads((r1 / "round.json").read_text())
    assert meta["init_from"] == str(lrm) and meta["dataset_dirs"] == [str(demos), str(r1 / "episodes")]
    assert pool.updates[-1][0] == "refresh-iter_000002"
    assert pool.updates[-1][1] == (r1 / "lrm" / "model.safetensors").read_bytes()
    assert "reward refresh iter_000002" in mode.last_console_line
    before = load_safetensors((lrm / "model.safetensors").read_bytes())
    after = load_safetensors(pool.updates[-1][1])
    assert any(not np.allclose(before[k].numpy(), after[k].numpy()) for k in before)  # it was trained

    mode.after_iteration(Algo(), 4)
    r2 = tmp_path / "run" / "reward_refresh" / "iter_000004"
    meta2 = json.loads((r2 / "round.json").read_text())
    assert meta2["init_from"] == str(r1 / "lrm")
    # a round's folder names its data like lrm-train's output does: it can be served (and refreshed) again
    again = _cfg(r2 / "lrm", tmp_path)
    assert rr.recipe(again).dataset_dirs == meta2["dataset_dirs"]
    assert meta2["dataset_dirs"] == [str(demos), str(r1 / "episodes"), str(r2 / "episodes")]
    assert calls[1][0] == [702_000, 702_001]
    assert mode.after_iteration(Algo(), 10) == {}  # the last iteration: nothing left to train on it

    # resume at iteration 3: round 1 is served again, round 2 (after it) is neither served nor data
    resumed = rr.RewardRefreshMode(cfg, tmp_path / "run", print_fn=lambda m: None)
    pool2 = FakePool()
    resumed.start(pool2)
    resumed.on_restored(tmp_path / "run" / "checkpoints" / "iter_000003")
    assert pool2.updates == [("refresh-iter_000002", (r1 / "lrm" / "model.safetensors").read_bytes())]
    assert resumed.rounds(3) == [r1]


def test_train_refuses_reward_refresh_outside_vlm_score(served_lrm, tmp_path, capsys):
    from vlmrl.system.cli import main

    lrm, _ = served_lrm
    code = main(["train", "train_pushcube_preference", "reward_refresh.every=5", f"output_dir={tmp_path}"])
    assert code == 2
    assert "train.mode=vlm-score" in capsys.readouterr().err
