"""Offline dataset readers: the project's format and HDF5 (Minari / D4RL layouts) files the test writes itself."""

import h5py
import numpy as np
import pytest

from vlmrl.envs.dataset import DatasetFormatError, iter_episodes, read_index
from vlmrl.envs.offline_readers import (D4RLHDF5Reader, EpisodeDatasetReader, HDF5Keys, MinariHDF5Reader,
                                        open_reader, write_minari_hdf5)
from vlmrl.envs.synthetic_episodes import make_synthetic_episode


def _same(a, b, success_from_step1=False):
    assert a.task == b.task and a.num_steps == b.num_steps
    for k in ("frames", "states", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    if success_from_step1:  # the HDF5 layouts store success after each action: state 0 reads False
        np.testing.assert_array_equal(a.success[1:], b.success[1:])
        assert not b.success[0]
    else:
        np.testing.assert_array_equal(a.success, b.success)


def test_episode_dataset_reader_streams_the_project_format(synthetic_dataset):
    r = open_reader(synthetic_dataset, "episodes")
    assert isinstance(r, EpisodeDatasetReader) and len(r) == len(read_index(synthetic_dataset))
    assert r.entry(3)["id"] == read_index(synthetic_dataset)[3]["id"]
    for a, b in zip(r, iter_episodes(synthetic_dataset)):
        _same(b, a)
    assert open_reader(synthetic_dataset, task_text="stack it").load(0).task == "stack it"


@pytest.mark.parametrize("task_in", ["episode", "file"])
def test_minari_hdf5_round_trip(tmp_path, task_in):
    eps = [make_synthetic_episode(seed=s, source=src, num_steps=10, image_size=16)
           for s, src in [(1, "demo"), (2, "random"), (3, "noisy_demo")]]
    if task_in == "file":
        for e in eps:
            e.task = eps[0].task
    path = write_minari_hdf5(tmp_path / "ds" / "data" / "main_data.hdf5", eps, task_in=task_in)
    keys = HDF5Keys(state_key="observations/state", image_key="observations/pixels")
    with open_reader(tmp_path / "ds", "minari_hdf5", keys={"state_key": "observations/state",
                                                          "image_key": "observations/pixels"}) as r:
        assert isinstance(r, MinariHDF5Reader) and len(r) == 3 and r.name == "ds"
        assert [r.entry(i)["source"] for i in range(3)] == ["demo", "random", "noisy_demo"]
        back = list(r)
    for a, b in zip(eps, back):
        _same(a, b, success_from_step1=True)
        assert b.source == a.source and b.frame_steps.tolist() == list(range(a.num_steps + 1))
    # no image key: the episode still reads, with zero frames
    with MinariHDF5Reader(path, HDF5Keys(state_key="observations/state")) as r:
        assert len(r.load(0).frames) == 0


def test_minari_hdf5_errors_say_what_is_wrong(tmp_path):
    eps = [make_synthetic_episode(seed=1, num_steps=6, image_size=16)]
    path = write_minari_hdf5(tmp_path / "a.hdf5", eps, task_in="none")
    keys = HDF5Keys(state_key="observations/state", image_key="observations/pixels")
    with pytest.raises(DatasetFormatError, match="no task text"):
        MinariHDF5Reader(path, keys).load(0)
    assert MinariHDF5Reader(path, keys, task_text="push it").load(0).task == "push it"
    with pytest.raises(DatasetFormatError, match="is a group of .*not an array"):
        MinariHDF5Reader(path, HDF5Keys(), task_text="x").load(0)
    with pytest.raises(DatasetFormatError, match="not found"):
        MinariHDF5Reader(tmp_path / "nope.hdf5")
    with pytest.raises(ValueError, match="unknown dataset format 'rlds'"):
        open_reader(path, "rlds")


def test_d4rl_flat_hdf5_splits_episodes_and_streams(tmp_path):
    eps = [make_synthetic_episode(seed=s, source="demo", num_steps=n, image_size=16) for s, n in [(5, 7), (6, 4), (7, 5)]]
    path = tmp_path / "d4rl.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["task"] = "push the cube"
        f["observations"] = np.concatenate([e.states[:-1] for e in eps])
        f["next_observations"] = np.concatenate([e.states[1:] for e in eps])
        f["actions"] = np.concatenate([e.actions for e in eps])
        f["rewards"] = np.concatenate([e.rewards for e in eps])
        f["images"] = np.concatenate([e.frames[:-1] for e in eps])
        f["next_images"] = np.concatenate([e.frames[1:] for e in eps])
        term = [np.zeros(e.num_steps, bool) for e in eps]
        timeouts = [np.zeros(e.num_steps, bool) for e in eps]
        term[0][-1] = True  # first ends by termination, second by timeout, third runs to the end of the file
        timeouts[1][-1] = True
        f["terminals"] = np.concatenate(term)
        f["timeouts"] = np.concatenate(timeouts)
        f["infos/success"] = np.concatenate([e.success[1:] for e in eps])
    with D4RLHDF5Reader(path, HDF5Keys(image_key="images")) as r:
        assert len(r) == 3 and [r.entry(i)["length"] for i in range(3)] == [7, 4, 5]
        for a, b in zip(eps, r):
            a.task = "push the cube"
            _same(a, b, success_from_step1=True)
