"""The reward client's wire conversion alone (no server, no gRPC I/O): items survive the trip to protobuf and back
through a serialized request, splitting by item count and by serialized size, the error for an item too large for
any request, and the caller's view of a response."""

from __future__ import annotations

import pickle

import grpc
import numpy as np
import pytest

from vlmrl.reward_workers.client import InvalidRequestError, RequestTooLargeError
from vlmrl.reward_workers.client_wire import (
    RETRIABLE_CODES,
    ItemTooLarge,
    results_of,
    split_request,
    status_code,
    to_items,
)
from vlmrl.reward_workers.frames import decode_item
from vlmrl.reward_workers.proto import reward_pb2
from vlmrl.reward_workers.scorers.base import ItemKind

RNG = np.random.default_rng(3)


def frames(n: int, h: int = 6, w: int = 5) -> np.ndarray:
    return RNG.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind,shape", [("frame", (5, 6, 5, 3)), ("pair", (4, 2, 6, 5, 3)),
                                        ("window", (3, 4, 6, 5, 1))])
def test_items_round_trip_through_a_serialized_request(kind, shape):
    data = RNG.integers(0, 256, shape, dtype=np.uint8)
    (req,) = split_request("r1", "push the cube", "synthetic", to_items(data, kind), max_items=64,
                           max_bytes=1 << 20)
    back = reward_pb2.ScoreRequest.FromString(req.SerializeToString())
    assert (back.request_id, back.task, back.scorer) == ("r1", "push the cube", "synthetic")
    decoded = np.stack([decode_item(it, kind) for it in back.items])
    expected = data[:, None] if kind == "frame" else data
    np.testing.assert_array_equal(decoded, expected)


def test_ready_items_pass_through_and_bad_shapes_are_refused():
    ready = to_items(frames(2), ItemKind.FRAME)
    assert to_items(ready, "frame") == ready
    with pytest.raises(TypeError, match="wrap a single Item"):
        to_items(ready[0], "frame")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        to_items(frames(1)[0], "frame")


def test_split_by_count_keeps_order_and_names_chunks():
    items = to_items(frames(10), "frame")
    reqs = split_request("r", "t", "", items, max_items=4, max_bytes=1 << 20)
    assert [len(r.items) for r in reqs] == [4, 4, 2]
    assert [r.request_id for r in reqs] == ["r#0", "r#1", "r#2"]
    assert [it for r in reqs for it in r.items] == items


def test_split_by_size_fits_every_request_exactly_under_the_limit():
    items = to_items([f for f in frames(9, h=20, w=20)] + [f for f in frames(4, h=8, w=8)], "frame")
    (whole,) = split_request("req-7", "task", "cnn", items, max_items=64, max_bytes=1 << 20)
    assert split_request("req-7", "task", "cnn", items, max_items=64, max_bytes=whole.ByteSize()) == [whole]
    for limit in (whole.ByteSize() - 1, 5000, 2600, 1300):
        reqs = split_request("req-7", "task", "cnn", items, max_items=64, max_bytes=limit)
        assert len(reqs) > 1
        assert all(r.ByteSize() <= limit for r in reqs), [r.ByteSize() for r in reqs]
        assert [it for r in reqs for it in r.items] == items
        assert all(r.task == "task" and r.scorer == "cnn" for r in reqs)
        # greedy: no request could have taken the next request's first item
        for a, b in zip(reqs, reqs[1:]):
            merged = reward_pb2.ScoreRequest(request_id=a.request_id, task=a.task, scorer=a.scorer,
                                             items=[*a.items, b.items[0]])
            assert merged.ByteSize() > limit


def test_an_item_too_large_alone_is_named_with_its_size_and_the_limit():
    items = to_items([frames(1, 4, 4)[0], frames(1, 40, 40)[0], frames(1, 4, 4)[0]], "frame")
    with pytest.raises(ItemTooLarge) as info:
        split_request("r", "t", "", items, max_items=64, max_bytes=2000)
    assert info.value.index == 1 and info.value.limit_bytes == 2000
    assert info.value.request_bytes > 40 * 40 * 3
    # the same item alone in a request of exactly its size fits
    (alone,) = split_request("r", "t", "", items[1:2], max_items=64, max_bytes=1 << 20)
    assert split_request("r", "t", "", items[1:2], max_items=64, max_bytes=alone.ByteSize()) == [alone]
    with pytest.raises(ItemTooLarge):
        split_request("r", "t", "", items[1:2], max_items=64, max_bytes=alone.ByteSize() - 1)


def test_request_too_large_error_reads_well_and_pickles():
    e = RequestTooLargeError("req-1", 3, 70_000_000, 67_108_864)
    assert isinstance(e, InvalidRequestError)
    assert "item 3" in str(e) and "70,000,000" in str(e) and "67,108,864" in str(e)
    assert "client.max_message_bytes" in str(e) and "req-1" in str(e)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is RequestTooLargeError and str(back) == str(e) and back.item_bytes == 70_000_000


def test_results_of_a_response():
    resp = reward_pb2.ScoreResponse(request_id="r", model_version="v2", worker_id="w3", rewards=[
        reward_pb2.ItemReward(reward=0.5, components={"progress": 0.25}, label="first", cached=True),
        reward_pb2.ItemReward(reward=-1.0, model_version="v1")])
    res = results_of(resp)
    assert [r.reward for r in res] == [0.5, -1.0]
    assert res[0].components == {"progress": 0.25} and res[0].label == "first" and res[0].cached
    assert [r.model_version for r in res] == ["v2", "v1"] and {r.worker_id for r in res} == {"w3"}


def test_status_codes():
    assert status_code(grpc.StatusCode.INVALID_ARGUMENT.value[0]) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_code(999) == grpc.StatusCode.UNKNOWN
    assert grpc.StatusCode.UNAVAILABLE in RETRIABLE_CODES and grpc.StatusCode.INVALID_ARGUMENT not in RETRIABLE_CODES
