"""The reward cache: LRU hits/misses/eviction, key parts, and its use by the server."""

from __future__ import annotations

import numpy as np
import pytest

from vlmrl.reward_workers.cache import RewardCache, cache_key
from vlmrl.reward_workers.scorers.base import ScoreResult


def item(v, shape=(1, 2, 2, 3)):
    return np.full(shape, v, np.uint8)


def test_lru_hits_misses_and_eviction():
    c = RewardCache(2)
    ka, kb, kc = (cache_key("s", "v1", "t", item(i)) for i in range(3))
    assert c.get(ka) is None
    c.put(ka, ScoreResult(0.1))
    c.put(kb, ScoreResult(0.2))
    assert c.get(ka).reward == 0.1  # a is now most recent
    c.put(kc, ScoreResult(0.3))  # evicts b
    assert c.get(kb) is None and c.get(ka).reward == 0.1 and c.get(kc).reward == 0.3
    assert (c.hits, c.misses, c.evictions, len(c)) == (3, 2, 1, 2)


def test_key_depends_on_every_part():
    base = cache_key("s", "v1", "t", item(1))
    assert base == cache_key("s", "v1", "t", item(1).copy())
    assert base != cache_key("other", "v1", "t", item(1))
    assert base != cache_key("s", "v2", "t", item(1))
    assert base != cache_key("s", "v1", "t2", item(1))
    assert base != cache_key("s", "v1", "t", item(2))
    assert base != cache_key("s", "v1", "t", item(1, shape=(1, 4, 1, 3)))  # same bytes, other shape


def test_disabled_cache_never_hits():
    c = RewardCache(0)
    c.put(("k",), ScoreResult(1.0))
    assert c.get(("k",)) is None and (c.hits, c.misses, len(c)) == (0, 0, 0)


def test_server_answers_repeats_from_cache(serve, stub_for, make_request, make_frame):
    st = serve("synthetic", cache_size=3)
    scorer = st.server.scorer
    stub = stub_for(st)
    frames = [make_frame(seed=i) for i in range(3)]
    first = stub.Score(make_request("a", frames))
    assert [r.cached for r in first.rewards] == [False] * 3
    calls = scorer.calls
    again = stub.Score(make_request("b", frames))
    assert [r.cached for r in again.rewards] == [True] * 3
    assert [r.reward for r in again.rewards] == [r.reward for r in first.rewards]
    assert scorer.calls == calls  # all hits: the scorer was not called
    other_task = stub.Score(make_request("c", frames[:1], task="open the drawer"))
    assert not other_task.rewards[0].cached
    s = st.info().stats
    assert (s.cache_hits, s.cache_misses) == (3, 4)
    # a new model version never hits old entries
    scorer.params.model_version = "synthetic-2"
    newer = stub.Score(make_request("d", frames[:1]))
    assert not newer.rewards[0].cached and newer.model_version == "synthetic-2"
    mixed = stub.Score(make_request("e", [frames[0], make_frame(seed=99)]))
    assert [r.cached for r in mixed.rewards] == [True, False]


def test_cache_eviction_through_server(serve, stub_for, make_request, make_frame):
    st = serve("synthetic", cache_size=2)
    stub = stub_for(st)
    for i in range(3):
        stub.Score(make_request(f"r{i}", [make_frame(seed=i)]))
    assert not stub.Score(make_request("x", [make_frame(seed=0)])).rewards[0].cached  # evicted
    assert stub.Score(make_request("y", [make_frame(seed=0)])).rewards[0].cached
    assert st.server.cache.evictions >= 1 and len(st.server.cache) == 2
