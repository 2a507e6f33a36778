"""Checkpoint retention shared by ``vlmrl train`` and ``vlmrl offline`` (``keep_checkpoints``)."""

from __future__ import annotations

import json

from vlmrl.learner.run_files import CHECKPOINT_DIR, LATEST, prune_checkpoints


def make_run(tmp_path, iterations, latest):
    root = tmp_path / CHECKPOINT_DIR
    for i in iterations:
        (root / f"iter_{i:06d}").mkdir(parents=True)
        (root / f"iter_{i:06d}" / "state.bin").write_bytes(b"x")
    (root / LATEST).write_text(json.dumps({"iteration": latest, "path": str(root / f"iter_{latest:06d}")}))
    return root


def test_keeps_the_newest_n_and_deletes_the_rest(tmp_path):
    root = make_run(tmp_path, [2, 4, 6, 8, 10], latest=10)
    deleted = prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in deleted) == ["iter_000002", "iter_000004", "iter_000006"]
    assert sorted(p.name for p in root.glob("iter_*")) == ["iter_000008", "iter_000010"]
    assert (root / LATEST).exists()


def test_zero_keeps_everything_and_latest_is_never_deleted(tmp_path):
    root = make_run(tmp_path, [1, 2, 3], latest=1)  # e.g. newer folders left by a crashed save
    assert prune_checkpoints(tmp_path, 0) == []
    assert prune_checkpoints(tmp_path, 1) == [root / "iter_000002"]
    assert sorted(p.name for p in root.glob("iter_*")) == ["iter_000001", "iter_000003"]
