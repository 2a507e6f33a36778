"""The compact_lrm scorer: registered, batched == one by one, weighted reward, versioned by its weights."""

import re

import numpy as np
import pytest
import torch

from vlmrl.reward_workers.models.compact_lrm import CompactLRM, CompactLRMConfig
from vlmrl.reward_workers.scorers.base import ItemKind, ScorerError, available_scorers, build_scorer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = CompactLRM(CompactLRMConfig(image_size=32, widths=[8, 16], embed_dim=16, text_encoder="hashed"))
    return str(model.save_pretrained(tmp_path_factory.mktemp("lrm")))


def _items(n, rng, sizes=((40, 40), (32, 32), (24, 48))):
    return [rng.integers(0, 256, (2, *sizes[i % len(sizes)], 3), dtype=np.uint8) for i in range(n)]


def test_batched_equals_one_by_one_and_reward_is_weighted_sum(weights_dir):
    assert "compact_lrm" in available_scorers()
    weights = {"progress": 0.5, "completion": 2.0, "contrastive": -1.0}
    sc = build_scorer("compact_lrm", {"weights_dir": weights_dir, "weights": weights})
    assert sc.item_kind == ItemKind.PAIR and sc.frames_per_item == 2
    rng = np.random.default_rng(0)
    items = _items(7, rng)
    tasks = ["push the cube", "stack", "push the cube", "", "a", "b", "c"]
    batched = sc.score_batch(tasks, items)
    single = [sc.score_batch([t], [it])[0] for t, it in zip(tasks, items)]
    for x, y in zip(batched, single):
        assert set(x.components) == {"progress", "completion", "contrastive"}
        for k in x.components:
            assert x.components[k] == pytest.approx(y.components[k], abs=1e-5)
        expected = sum(weights[k] * x.components[k] for k in weights)
        assert x.reward == pytest.approx(expected, abs=1e-6)
    assert sc.score_batch([], []) == []


def test_weights_naming_one_component_leave_the_others_at_zero(weights_dir):
    # the schema's default weights (progress 1, completion 1) must not survive beside a table given whole
    sc = build_scorer("compact_lrm", {"weights_dir": weights_dir, "weights": {"progress": 1.0}})
    (x,) = sc.score_batch(["push the cube"], _items(1, np.random.default_rng(1)))
    assert x.components["completion"] != 0.0
    assert x.reward == pytest.approx(x.components["progress"], abs=1e-6)


def test_model_version_is_the_weights_hash(weights_dir, tmp_path):
    a = build_scorer("compact_lrm", {"weights_dir": weights_dir})
    assert a.model_version == build_scorer("compact_lrm", {"weights_dir": weights_dir}).model_version
    torch.manual_seed(1)
    other = CompactLRM(CompactLRMConfig(image_size=32, widths=[8, 16], embed_dim=16, text_encoder="hashed"))
    b = build_scorer("compact_lrm", {"weights_dir": str(other.save_pretrained(tmp_path / "o"))})
    assert a.model_version != b.model_version and len(a.model_version) == 12


def test_bad_params_and_items_are_clear_errors(weights_dir, tmp_path):
    with pytest.raises(ScorerError, match="weights_dir"):
        build_scorer("compact_lrm", {})
    with pytest.raises(ScorerError, match="cannot load"):
        build_scorer("compact_lrm", {"weights_dir": str(tmp_path)})
    with pytest.raises(ScorerError, match="unknown components"):
        build_scorer("compact_lrm", {"weights_dir": weights_dir, "weights": {"progres": 1.0}})
    sc = build_scorer("compact_lrm", {"weights_dir": weights_dir})
    with pytest.raises(ScorerError, match="pairs"):
        sc.score_batch(["t"], [np.zeros((1, 8, 8, 3), np.uint8)])


@pytest.mark.gpu
def test_runs_on_cuda(weights_dir):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    sc = build_scorer("compact_lrm", {"weights_dir": weights_dir, "device": "cuda"})
    cpu = build_scorer("compact_lrm", {"weights_dir": weights_dir})
    items = _items(4, np.random.default_rng(0))
    for x, y in zip(sc.score_batch(["t"] * 4, items), cpu.score_batch(["t"] * 4, items)):
        assert x.reward == pytest.approx(y.reward, abs=1e-3)


def _member(tmp_path, seed):
    torch.manual_seed(seed)
    model = CompactLRM(CompactLRMConfig(image_size=32, widths=[8, 16], embed_dim=16, text_encoder="hashed"))
    return str(model.save_pretrained(tmp_path / f"member{seed}"))


def test_ensemble_is_the_members_mean_lowered_by_their_disagreement(weights_dir, tmp_path):
    others = [_member(tmp_path, 1), _member(tmp_path, 2)]
    members = [build_scorer("compact_lrm", {"weights_dir": d}) for d in [weights_dir, *others]]
    items, tasks = _items(5, np.random.default_rng(3)), ["push the cube"] * 5
    each = [m.score_batch(tasks, items) for m in members]
    plain = build_scorer("compact_lrm", {"weights_dir": weights_dir, "ensemble_dirs": others})
    k = 2.0
    lcb = build_scorer("compact_lrm", {"weights_dir": weights_dir, "ensemble_dirs": others, "disagreement_penalty": k})
    for i, (x, y) in enumerate(zip(plain.score_batch(tasks, items), lcb.score_batch(tasks, items))):
        per = {c: np.array([e[i].components[c] for e in each]) for c in ("progress", "completion", "contrastive")}
        for c in per:
            assert x.components[c] == pytest.approx(per[c].mean(), abs=1e-5)
        assert x.components["disagreement"] == pytest.approx(per["progress"].std(), abs=1e-5)
        assert x.components["disagreement"] > 0
        for c in ("progress", "completion"):
            assert y.components[c] == pytest.approx(max(0.0, per[c].mean() - k * per[c].std()), abs=1e-5)
        assert y.components["contrastive"] == pytest.approx(x.components["contrastive"], abs=1e-6)
        assert y.reward == pytest.approx(y.components["progress"] + y.components["completion"], abs=1e-6)
        assert y.reward <= x.reward + 1e-6
    # the version names the members and the penalty; a single model keeps its weights hash
    assert len({members[0].model_version, plain.model_version, lcb.model_version}) == 3


def test_ensemble_params_are_checked(weights_dir, tmp_path):
    with pytest.raises(ScorerError, match="ensemble_dirs"):
        build_scorer("compact_lrm", {"weights_dir": weights_dir, "disagreement_penalty": 1.0})
    with pytest.raises(ScorerError, match=">= 0"):
        build_scorer("compact_lrm", {"weights_dir": weights_dir, "ensemble_dirs": [weights_dir],
                                     "disagreement_penalty": -1.0})
    with pytest.raises(ScorerError, match=r"cannot load ensemble_dirs\[0\]=.*nowhere"):
        build_scorer("compact_lrm", {"weights_dir": weights_dir, "ensemble_dirs": [str(tmp_path / "nowhere")]})


def test_hot_swap_serves_the_new_weights_and_a_bad_update_keeps_the_old(weights_dir, tmp_path):
    """``update_weights`` (train.reward_refresh's hot swap): a model.safetensors of the same architecture is served
    under the given version, exactly as a scorer loading that folder would score; bad bytes, another architecture or
    an ensemble are refused and the served model stays."""
    from pathlib import Path

    from vlmrl.reward_workers.scorers.compact_lrm import CompactLrmScorer

    sc = build_scorer("compact_lrm", {"weights_dir": weights_dir})
    items, tasks = _items(4, np.random.default_rng(3)), ["push the cube"] * 4
    before = [r.reward for r in sc.score_batch(tasks, items)]
    new_dir = _member(tmp_path, 5)
    sc.update_weights("refresh-1", (Path(new_dir) / "model.safetensors").read_bytes())
    assert sc.model_version == "refresh-1"
    fresh = build_scorer("compact_lrm", {"weights_dir": new_dir})
    after = [r.reward for r in sc.score_batch(tasks, items)]
    assert after == pytest.approx([r.reward for r in fresh.score_batch(tasks, items)], abs=1e-6)
    assert after != pytest.approx(before, abs=1e-4)
    torch.manual_seed(0)
    wider = CompactLRM(CompactLRMConfig(image_size=32, widths=[8, 32], embed_dim=16, text_encoder="hashed"))
    for version, state, match in (("", b"x", "non-empty version"), ("v", b"not safetensors", "not a safetensors"),
                                  ("v", (wider.save_pretrained(tmp_path / "w") / "model.safetensors").read_bytes(),
                                   "architecture")):
        with pytest.raises(ScorerError, match=match):
            sc.update_weights(version, state)
        assert sc.model_version == "refresh-1"
        assert [r.reward for r in sc.score_batch(tasks, items)] == pytest.approx(after, abs=1e-6)
    ens = build_scorer("compact_lrm", {"weights_dir": weights_dir, "ensemble_dirs": [new_dir]})
    assert isinstance(ens, CompactLrmScorer)
    with pytest.raises(ScorerError, match="ensemble"):
        ens.update_weights("v", (Path(new_dir) / "model.safetensors").read_bytes())


def test_hot_swap_of_a_minilm_model_keeps_its_text_embedder(tmp_path):
    """The demo's LRMs use the frozen MiniLM text embedder (a lock and a cache, not parameters): the swapped-in
    model shares it and scores the cached task exactly like a scorer loading the new folder."""
    from pathlib import Path

    cache = {"push the cube": torch.randn(384)}  # MiniLM is frozen: every model embeds a text the same way

    def saved(seed, name):
        torch.manual_seed(seed)
        m = CompactLRM(CompactLRMConfig(image_size=32, widths=[8, 16], embed_dim=16, text_encoder="minilm"), cache)
        m.minilm.cache = dict(cache)
        return str(m.save_pretrained(tmp_path / name))

    old, new = saved(0, "old"), saved(1, "new")
    sc = build_scorer("compact_lrm", {"weights_dir": old})
    items, tasks = _items(3, np.random.default_rng(4)), ["push the cube"] * 3
    sc.update_weights("v2", (Path(new) / "model.safetensors").read_bytes())
    expected = build_scorer("compact_lrm", {"weights_dir": new}).score_batch(tasks, items)
    assert [r.reward for r in sc.score_batch(tasks, items)] == pytest.approx([r.reward for r in expected], abs=1e-6)


def test_check_scorer_config_finds_a_missing_folder_without_loading_a_model(weights_dir, tmp_path):
    from vlmrl.reward_workers.scorers.base import check_scorer_config

    check_scorer_config("compact_lrm", {"weights_dir": weights_dir, "ensemble_dirs": [weights_dir]})  # passes
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")  # no model.safetensors
    for params, name in (({"weights_dir": str(tmp_path / "absent")}, "weights_dir"),
                         ({"weights_dir": weights_dir, "ensemble_dirs": [str(tmp_path / "half")]}, "ensemble_dirs[0]")):
        with pytest.raises(ScorerError, match=rf"compact_lrm cannot load {re.escape(name)}=.*not a compact LRM folder"):
            check_scorer_config("compact_lrm", params)
    with pytest.raises(ScorerError, match="bad params for scorer 'compact_lrm'"):
        check_scorer_config("compact_lrm", {"weights_dir": weights_dir, "no_such_param": 1})
    with pytest.raises(ScorerError, match="unknown scorer"):
        check_scorer_config("no_such_scorer", {})
    check_scorer_config("synthetic", {})  # a scorer without checks of its own: the schema only
