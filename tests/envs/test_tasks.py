"""The task registry: every task maps to an existing ManiSkill env and has disjoint seen/unseen texts."""

import gymnasium as gym
import mani_skill.envs  # noqa: F401  (registers env ids)
import numpy as np
import pytest

from vlmrl.envs.tasks import TASKS, find_task_for_text, get_task

REQUIRED = {"PushCube-v1", "PickCube-v1", "StackCube-v1", "PullCube-v1", "PegInsertionSide-v1"}


def test_required_tasks_registered_with_real_env_ids():
    assert REQUIRED <= set(TASKS)
    for t in TASKS.values():
        spec = gym.spec(t.env_id)  # raises if ManiSkill 3.0.1 lacks the env
        assert spec.max_episode_steps == t.max_episode_steps


def test_texts_are_several_distinct_and_split():
    for t in TASKS.values():
        assert len(t.seen) >= 3 and len(t.unseen) >= 2
        assert not set(t.seen) & set(t.unseen), t.name
        assert all(find_task_for_text(x) is t for x in t.seen + t.unseen)
    all_texts = [x for t in TASKS.values() for x in t.seen + t.unseen]
    assert len(all_texts) == len(set(all_texts))


def test_sampling_respects_split_and_bad_names_fail_clearly():
    t = get_task("PushCube-v1")
    rng = np.random.default_rng(0)
    assert {t.sample_text(rng, "seen") for _ in range(50)} == set(t.seen)
    assert {t.sample_text(rng, "unseen") for _ in range(50)} == set(t.unseen)
    with pytest.raises(ValueError, match="split"):
        t.texts("train")
    with pytest.raises(KeyError, match="registered tasks"):
        get_task("FlyToMoon-v1")
