"""Reward composition and frame-stride bookkeeping of the reward path, without Ray or RLlib:
EpisodeRewardTracker fed with frames and resolved futures, chunks cut between frames."""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np
import pytest

from vlmrl.actors.episode_rewards import EpisodeRewardTracker, RewardPathError
from vlmrl.actors.reward_composer import RewardComposer, RewardCompositionError
from vlmrl.reward_workers.client import RewardResult, RewardUnavailableError


class FakeService:
    """Answers each item at once with progress = value encoded in the last frame's first pixel / 255."""

    def __init__(self, fail_at=None):
        self.items = []
        self.fail_at = fail_at

    def submit(self, task, items, kind):
        self.items.append((task, kind, np.asarray(items[0])))
        fut = concurrent.futures.Future()
        item = np.asarray(items[0])
        last = item if kind == "frame" else item[-1]
        v = float(last[0, 0, 0]) / 255.0
        if self.fail_at is not None and len(self.items) - 1 == self.fail_at:
            fut.set_exception(RewardUnavailableError(["r"], ["127.0.0.1:1: UNAVAILABLE"], 3))
        else:
            fut.set_result([RewardResult(reward=v, components={"progress": v, "completion": float(v > 0.5)})])
        return fut


def frame(value):
    return np.full((4, 4, 3), value, np.uint8)


def feed(tracker, frame_steps, values):
    for t, v in zip(frame_steps, values):
        tracker.add_frame(t, frame(v), "task")


def far():
    return time.monotonic() + 5


def test_rate_components_scale_with_the_interval_and_sit_on_the_frame_step():
    svc = FakeService()
    tr = EpisodeRewardTracker("e", "frame", RewardComposer({"reward": 2.0}), svc.submit)
    feed(tr, [0, 3, 6, 7], [10, 51, 102, 255])  # stride 3, episode ends at step 7
    out = tr.assign(0, 7, far())
    expected = np.zeros(7)
    expected[2] = 2.0 * (51 / 255) * 3
    expected[5] = 2.0 * (102 / 255) * 3
    expected[6] = 2.0 * (255 / 255) * 1
    np.testing.assert_allclose(out.rewards, expected)
    assert out.frame_steps == [3, 6, 7]
    np.testing.assert_allclose(out.scores, [51 / 255, 102 / 255, 1.0])


def test_potential_components_telescope_whatever_the_stride():
    returns = []
    for stride in (1, 2, 5):
        svc = FakeService()
        tr = EpisodeRewardTracker("e", "frame", RewardComposer({"progress": 1.0}, ["progress"]), svc.submit)
        steps = sorted(set(list(range(0, 10, stride)) + [10]))
        feed(tr, steps, [int(25.5 * t) for t in steps])  # progress = t / 10
        returns.append(tr.assign(0, 10, far()).rewards.sum())
    np.testing.assert_allclose(returns, [1.0, 1.0, 1.0])


def test_chunk_cut_between_frames_moves_the_interval_reward_into_the_next_chunk():
    svc = FakeService()
    tr = EpisodeRewardTracker("e", "frame", RewardComposer({"progress": 1.0, "completion": 0.5}, ["progress"]),
                              svc.submit)
    feed(tr, [0, 4], [0, 51])
    first = tr.assign(0, 6, far())  # chunk of steps 1..6 was cut: step 8's frame is not rendered yet
    np.testing.assert_allclose(first.rewards, [0, 0, 0, 51 / 255, 0, 0])
    feed(tr, [8, 9], [153, 255])
    second = tr.assign(6, 3, far())  # steps 7..9
    np.testing.assert_allclose(second.terms["progress"], [0, (153 - 51) / 255, (255 - 153) / 255])
    np.testing.assert_allclose(second.terms["completion"], [0, 0.5 * 1.0 * 4, 0.5 * 1.0 * 1])
    assert second.frame_steps == [8, 9]


def test_pair_and_window_items_hold_the_previous_frames():
    svc = FakeService()
    tr = EpisodeRewardTracker("e", "pair", RewardComposer({"reward": 1.0}), svc.submit)
    feed(tr, [0, 2, 4], [1, 2, 3])
    assert [it[2][:, 0, 0, 0].tolist() for it in svc.items] == [[1, 1], [1, 2], [2, 3]]
    assert all(it[1] == "pair" for it in svc.items)
    svc = FakeService()
    tr = EpisodeRewardTracker("e", "window", RewardComposer({"reward": 1.0}), svc.submit, window_size=3)
    feed(tr, [0, 1, 2, 3], [1, 2, 3, 4])
    assert [it[2][:, 0, 0, 0].tolist() for it in svc.items] == [[1, 1, 1], [1, 1, 2], [1, 2, 3], [2, 3, 4]]


def test_a_failed_reward_fails_loudly_and_names_the_step():
    svc = FakeService(fail_at=2)
    tr = EpisodeRewardTracker("ep7", "frame", RewardComposer({"reward": 1.0}), svc.submit)
    feed(tr, [0, 1, 2], [1, 2, 3])
    with pytest.raises(RewardPathError, match=r"ep7.*step 2.*could not be obtained.*UNAVAILABLE"):
        tr.assign(0, 2, far())


def test_a_missing_answer_times_out_instead_of_becoming_zero():
    never = concurrent.futures.Future()
    tr = EpisodeRewardTracker("e", "frame", RewardComposer({"reward": 1.0}), lambda *a: never)
    tr.add_frame(0, frame(1), "task")
    with pytest.raises(RewardPathError, match="wait_timeout_s"):
        tr.assign(0, 1, time.monotonic() + 0.05)


def test_bookkeeping_errors():
    svc = FakeService()
    tr = EpisodeRewardTracker("e", "frame", RewardComposer({"reward": 1.0}), svc.submit)
    with pytest.raises(RewardPathError, match="reset info"):
        tr.add_frame(3, frame(1), "task")
    tr.add_frame(0, frame(1), "task")
    with pytest.raises(RewardPathError, match="after one of step"):
        tr.add_frame(0, frame(1), "task")


def test_composition_errors_say_what_is_wrong():
    with pytest.raises(RewardCompositionError, match="not in reward.components"):
        RewardComposer({"reward": 1.0}, ["progress"])
    with pytest.raises(RewardCompositionError, match="empty"):
        RewardComposer({})
    c = RewardComposer({"contrastive": 1.0})
    with pytest.raises(RewardCompositionError, match=r"asks for 'contrastive'.*\['completion', 'progress'\]"):
        c.check(RewardResult(reward=0.1, components={"progress": 0.1, "completion": 0.0}))
    with pytest.raises(ValueError, match="item_kind"):
        EpisodeRewardTracker("e", "clip", c, FakeService().submit)
