"""Every malformed request gets INVALID_ARGUMENT with a message saying what is wrong; others keep being served."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from vlmrl.reward_workers.frames import encode_frame, make_item
from vlmrl.reward_workers.proto import reward_pb2


def _frame_item(**frame_fields):
    return reward_pb2.Item(frame=reward_pb2.Frame(**frame_fields))


def _png_item(h=4, w=4, c=3, declared=None, colour=False):
    a = np.zeros((h, w, c), np.uint8)
    if colour:
        a[..., 0] = 200
    pb = encode_frame(a, "png")
    if declared is not None:
        del pb.shape[:]
        pb.shape.extend(declared)
    return reward_pb2.Item(frame=pb)


GOOD = make_item(np.zeros((4, 4, 3), np.uint8), "frame")
CASES = {
    "missing request_id": (dict(request_id="", items=[GOOD]), "request_id is missing"),
    "blank task": (dict(task="  ", items=[GOOD]), "task is missing or blank"),
    "missing task": (dict(task="", items=[GOOD]), "task is missing or blank"),
    "other scorer": (dict(scorer="lrm", items=[GOOD]), "asks for scorer 'lrm', but this worker runs 'synthetic'"),
    "no items": (dict(items=[]), "items is empty"),
    "too many items": (dict(items=[GOOD] * 9), "9 items exceed max_items_per_request = 8"),
    "shape not 3-D": (dict(items=[_frame_item(shape=[4, 12], data=bytes(48))]), "items[0]: frame shape must be [H, W, C]"),
    "bad channels": (dict(items=[_frame_item(shape=[4, 4, 2], data=bytes(32))]), "channels C must be one of"),
    "zero dim": (dict(items=[_frame_item(shape=[0, 4, 3])]), "dims must be positive"),
    "negative dim": (dict(items=[_frame_item(shape=[4, -4, 3])]), "dims must be positive"),
    "too many pixels": (dict(items=[_frame_item(shape=[100, 100, 3], data=bytes(30000))]),
                        "H*W = 10000 exceeds max_frame_pixels = 4096"),
    "dtype float32": (dict(items=[_frame_item(shape=[4, 4, 3], data=bytes(192), dtype="float32")]),
                      "dtype must be uint8, got 'float32'"),
    "short data": (dict(items=[GOOD, _frame_item(shape=[4, 4, 3], data=bytes(47))]),
                   "items[1]: RAW frame of shape [4, 4, 3] needs 48 bytes, got 47"),
    "undecodable png": (dict(items=[_frame_item(shape=[4, 4, 3], data=b"\x89PNG garbage", encoding=reward_pb2.PNG)]),
                        "cannot decode PNG"),
    "undecodable jpeg": (dict(items=[_frame_item(shape=[4, 4, 3], data=b"\xff\xd8 junk", encoding=reward_pb2.JPEG)]),
                         "cannot decode JPEG"),
    "png size mismatch": (dict(items=[_png_item(declared=[5, 4, 3])]), "decoded PNG is 4x4, but shape says 5x4"),
    "colour png as grey": (dict(items=[_png_item(colour=True, declared=[4, 4, 1])]),
                           "PNG frame of mode RGB has colour pixels, but the frame shape says C=1"),
    "pair to frame scorer": (dict(items=[make_item(np.zeros((2, 4, 4, 3), np.uint8), "pair")]),
                             "item is a pair, but this scorer takes frame items"),
    "empty item": (dict(items=[reward_pb2.Item()]), "item is empty"),
}


@pytest.fixture(scope="module")
def frame_server():
    from omegaconf import OmegaConf

    from vlmrl.reward_workers.scorers import build_scorer
    from vlmrl.reward_workers.server import ServerThread
    from vlmrl.system.config import ServerConfig

    cfg = OmegaConf.merge(OmegaConf.structured(ServerConfig), {"max_items_per_request": 8, "max_frame_pixels": 4096})
    st = ServerThread(cfg, build_scorer("synthetic", {"fixed_ms": 0.0, "per_item_ms": 0.0}), "v0")
    st.start()
    channel = grpc.insecure_channel(st.address)
    from vlmrl.reward_workers.proto import reward_pb2_grpc

    yield st, reward_pb2_grpc.RewardServiceStub(channel)
    channel.close()
    st.stop(grace_s=0.5)


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_request_is_invalid_argument(frame_server, case):
    st, stub = frame_server
    fields, message = CASES[case]
    req = reward_pb2.ScoreRequest(**{"request_id": "r1", "task": "push", **fields})
    before = st.info().stats.invalid_requests
    with pytest.raises(grpc.RpcError) as e:
        stub.Score(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in e.value.details()
    assert st.info().stats.invalid_requests == before + 1
    # and the server still serves everyone else
    ok = stub.Score(reward_pb2.ScoreRequest(request_id="ok", task="push", items=[GOOD]), timeout=10)
    assert ok.request_id == "ok" and len(ok.rewards) == 1


def test_invalid_requests_in_a_stream_get_error_responses(frame_server):
    _, stub = frame_server
    reqs = [reward_pb2.ScoreRequest(**{"request_id": f"r{i}", "task": "push", **CASES[c][0]})
            for i, c in enumerate(["blank task", "short data", "pair to frame scorer"])]
    reqs.append(reward_pb2.ScoreRequest(request_id="fine", task="push", items=[GOOD]))
    by_id = {r.request_id: r for r in stub.ScoreStream(iter(reqs), timeout=10)}
    assert set(by_id) == {"r0", "r1", "r2", "fine"}
    for rid, case in zip(("r0", "r1", "r2"), ("blank task", "short data", "pair to frame scorer")):
        assert by_id[rid].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert CASES[case][1] in by_id[rid].error.message
    assert not by_id["fine"].HasField("error")


@pytest.mark.parametrize("kind, frames, message", [
    ("window", 3, "window item has 3 frames, this scorer needs exactly 4"),
    ("frame", 1, "item is a frame, but this scorer takes window items"),
])
def test_wrong_frame_count_for_window_scorer(serve, stub_for, kind, frames, message):
    st = serve("synthetic", {"item_kind": "window", "window": 4})
    arr = np.zeros((frames, 4, 4, 3), np.uint8)
    req = reward_pb2.ScoreRequest(request_id="w", task="t", items=[make_item(arr if kind == "window" else arr[0], kind)])
    with pytest.raises(grpc.RpcError) as e:
        stub_for(st).Score(req, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in e.value.details()
