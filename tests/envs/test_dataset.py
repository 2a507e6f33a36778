"""The episode dataset format round-trips, streams, filters and rejects malformed episodes."""

import numpy as np
import pytest

from vlmrl.envs.dataset import DatasetFormatError, Episode, EpisodeWriter, iter_episodes, read_index


def make_episode(T=5, task="push the cube", success_at=None, source="demo"):
    success = np.zeros(T + 1, bool)
    if success_at is not None:
        success[success_at:] = True
    return Episode(task=task, env_id="PushCube-v1", source=source,
                   frames=np.random.randint(0, 255, (T + 1, 8, 8, 3), dtype=np.uint8),
                   frame_steps=np.arange(T + 1, dtype=np.int32),
                   states=np.random.randn(T + 1, 4).astype(np.float32),
                   actions=np.random.randn(T, 2).astype(np.float32),
                   rewards=np.random.rand(T).astype(np.float32), success=success)


def test_round_trip_and_filter(tmp_path):
    w = EpisodeWriter(tmp_path)
    eps = [make_episode(success_at=3), make_episode(T=7, source="random")]
    ids = [w.write(e) for e in eps]
    EpisodeWriter(tmp_path).write(make_episode(T=2))  # reopening appends with a fresh id
    index = read_index(tmp_path)
    assert [e["id"] for e in index][:2] == ids and len({e["id"] for e in index}) == 3
    back = list(iter_episodes(tmp_path))
    assert np.array_equal(back[0].frames, eps[0].frames) and back[0].succeeded and not back[1].succeeded
    assert [e.source for e in iter_episodes(tmp_path, where=lambda e: e["source"] == "random")] == ["random"]


def test_malformed_episode_is_rejected(tmp_path):
    bad = make_episode()
    bad.rewards = bad.rewards[:-1]
    with pytest.raises(DatasetFormatError, match="rewards"):
        EpisodeWriter(tmp_path).write(bad)


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetFormatError, match="index.jsonl"):
        read_index(tmp_path)
