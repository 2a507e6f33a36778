"""Issue 26, server side: protocol errors, duplicate ids, per-client caps, decode budgets (real servers, real gRPC)."""

from __future__ import annotations

import io
import queue
import threading
import time

import grpc
import numpy as np
import pytest
from PIL import Image

from vlmrl.reward_workers.frames import make_item
from vlmrl.reward_workers.proto import reward_pb2, reward_pb2_grpc
from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScoreResult
from vlmrl.reward_workers.server import SERVICE_NAME, salvage_request_id

INVALID = grpc.StatusCode.INVALID_ARGUMENT
GOOD = reward_pb2.ScoreRequest(request_id="ok", task="t", items=[make_item(np.full((4, 4, 3), 51, np.uint8), "frame")])
GOOD_BYTES = GOOD.SerializeToString()


def with_id(request_id: str, task: bytes = b"t") -> bytes:
    """A ScoreRequest by hand: field 1 = request_id, field 2 = task (any bytes), field 3 = one good item."""
    rid = request_id.encode()
    item = GOOD.items[0].SerializeToString()
    return (b"\x0a" + bytes([len(rid)]) + rid + b"\x12" + bytes([len(task)]) + task
            + b"\x1a" + bytes([len(item)]) + item)


MALFORMED = {
    "non-UTF-8 request_id": b"\x0a\x03a\xffb\x12\x01t",
    "non-UTF-8 task": with_id("r", b"push \xff\xfe"),
    "truncated": GOOD_BYTES[:-3],
    "garbage": b"\xff\xff\xff\xff\xff",
    "nested unknown groups": b"\x0a\x01r" + b"\x2b" * 200 + b"\x2c" * 200,
}


class GatedScorer(Scorer):
    """Reward = first pixel / 255; every batch waits for ``gate`` (tests hold requests in flight with it)."""

    name = "gated"
    item_kind = ItemKind.FRAME

    def __init__(self):
        super().__init__(None)
        self.gate = threading.Event()

    def score_batch(self, tasks, items):
        assert self.gate.wait(20), "gate never opened"
        return [ScoreResult(float(it[0, 0, 0, 0]) / 255.0) for it in items]


def raw_unary(channel, method: str):
    return channel.unary_unary(f"/{SERVICE_NAME}/{method}")


def raw_stream(channel):
    return channel.stream_stream(f"/{SERVICE_NAME}/ScoreStream",
                                 response_deserializer=reward_pb2.ScoreResponse.FromString)


class Outbox:
    """A request iterator fed from the test: put(message), close()."""

    def __init__(self):
        self._q: queue.Queue = queue.Queue()

    def put(self, message) -> None:
        self._q.put(message)

    def close(self) -> None:
        self._q.put(None)

    def __iter__(self):
        while (m := self._q.get()) is not None:
            yield m


def request(request_id: str, n: int = 1, value: int = 51, size: int = 4) -> reward_pb2.ScoreRequest:
    return reward_pb2.ScoreRequest(request_id=request_id, task="t",
                                   items=[make_item(np.full((size, size, 3), value, np.uint8), "frame")] * n)


# --------------------------------------------------------------------------- protocol errors


@pytest.mark.parametrize("case", list(MALFORMED))
def test_undecodable_unary_message_is_invalid_argument(serve, channel_to, case):
    st = serve("synthetic")
    ch = channel_to(st.address)
    with pytest.raises(grpc.RpcError) as e:
        raw_unary(ch, "Score")(MALFORMED[case], timeout=10)
    assert e.value.code() == INVALID
    assert "cannot parse ScoreRequest" in e.value.details()
    ok = reward_pb2.ScoreResponse.FromString(raw_unary(ch, "Score")(GOOD_BYTES, timeout=10))
    assert ok.rewards[0].reward == pytest.approx(0.2)
    assert st.info().stats.invalid_requests == 1


def test_undecodable_info_request_is_invalid_argument(serve, channel_to):
    st = serve("synthetic")
    with pytest.raises(grpc.RpcError) as e:
        raw_unary(channel_to(st.address), "Info")(b"\xff\xff", timeout=10)
    assert e.value.code() == INVALID and "cannot parse InfoRequest" in e.value.details()


def test_salvage_request_id():
    assert salvage_request_id(with_id("abc", b"\xff")) == "abc"
    assert salvage_request_id(MALFORMED["non-UTF-8 request_id"]) is None
    assert salvage_request_id(MALFORMED["garbage"]) is None
    assert salvage_request_id(b"\x12\x01t\x0a\x02id") == "id"  # after another field
    assert salvage_request_id(b"\x0a\x09short") is None  # length past the end


def test_stream_answers_an_undecodable_request_by_its_id_and_stays_open(serve, channel_to):
    st = serve("synthetic")
    msgs = [request("r1").SerializeToString(), with_id("bad-1", b"\xff\xfe"), request("r2", value=102).SerializeToString()]
    responses = list(raw_stream(channel_to(st.address))(iter(msgs), timeout=20))
    by_id = {r.request_id: r for r in responses}
    assert sorted(by_id) == ["bad-1", "r1", "r2"]
    assert by_id["bad-1"].error.code == INVALID.value[0]
    assert "request 'bad-1': cannot parse ScoreRequest" in by_id["bad-1"].error.message
    assert "bad UTF-8" in by_id["bad-1"].error.message
    assert by_id["r2"].rewards[0].reward == pytest.approx(0.4) and not by_id["r2"].HasField("error")


UNRECOVERABLE = {"garbage": MALFORMED["garbage"], "non-UTF-8 request_id": MALFORMED["non-UTF-8 request_id"],
                 "groups before the id": b"\x2b" * 200 + b"\x2c" * 200 + b"\x0a\x01r"}


@pytest.mark.parametrize("case", list(UNRECOVERABLE))
def test_stream_with_unrecoverable_message_answers_in_flight_then_ends_invalid_argument(serve, channel_to, case):
    scorer = GatedScorer()
    st = serve(scorer, max_wait_ms=0.0)
    box = Outbox()
    responses = raw_stream(channel_to(st.address))(iter(box), timeout=20)
    box.put(request("slow").SerializeToString())
    time.sleep(0.2)  # "slow" is in the scorer now
    box.put(UNRECOVERABLE[case])
    time.sleep(0.2)
    scorer.gate.set()
    first = next(responses)
    assert first.request_id == "slow" and first.rewards[0].reward == pytest.approx(0.2)
    with pytest.raises(grpc.RpcError) as e:
        next(responses)
    assert e.value.code() == INVALID
    assert "cannot parse ScoreRequest" in e.value.details() and "cannot be recovered" in e.value.details()
    box.close()


def test_message_over_max_message_bytes_ends_the_stream_resource_exhausted(serve, stub_for):
    st = serve("synthetic", max_message_bytes=100_000)
    big = request("big", n=1, size=200)  # 120 KB
    with pytest.raises(grpc.RpcError) as e:
        list(stub_for(st).ScoreStream(iter([big]), timeout=20))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in e.value.details()
    assert list(stub_for(st).ScoreStream(iter([request("small")]), timeout=20))[0].request_id == "small"


# --------------------------------------------------------------------------- duplicate ids


def test_duplicate_request_id_in_flight_on_a_stream_is_refused(serve, stub_for):
    scorer = GatedScorer()
    st = serve(scorer, max_wait_ms=0.0)
    box = Outbox()
    responses = stub_for(st).ScoreStream(iter(box), timeout=20)
    box.put(request("dup", value=51))
    box.put(request("dup", value=102))
    refused = next(responses)  # answered at once, while the first "dup" waits for the gate
    assert refused.request_id == "dup" and refused.error.code == INVALID.value[0]
    assert "already in flight on this stream" in refused.error.message
    scorer.gate.set()
    first = next(responses)
    assert first.request_id == "dup" and first.rewards[0].reward == pytest.approx(0.2)
    box.put(request("dup", value=153))  # answered, so the id is free again
    assert next(responses).rewards[0].reward == pytest.approx(0.6)
    box.close()
    assert list(responses) == []
    assert st.info().stats.invalid_requests == 1


# --------------------------------------------------------------------------- per-client caps


def test_never_reading_stream_is_not_read_past_max_stream_requests(serve, channel_to):
    st = serve("synthetic", max_stream_requests=5)
    # Without BDP probing the client's receive window stays small, so unread answers back up into the server.
    ch = channel_to(st.address, options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)])
    sent = []

    def gen():
        for i in range(200):
            sent.append(i)
            yield request(f"r{i}", n=64, size=32)  # 200 KB each

    responses = reward_pb2_grpc.RewardServiceStub(ch).ScoreStream(gen(), timeout=30)
    time.sleep(1.5)
    read = st.info().stats.requests
    assert 5 <= read <= 10  # 5 in flight plus the few answers that fit the client's window
    time.sleep(0.5)
    assert st.info().stats.requests == read  # it stays there while the client reads nothing
    assert len(sent) < 200  # and HTTP/2 flow control holds the sender back (grpc buffers a window's worth)
    assert sum(1 for _ in responses) == 200  # reading resumes it; nothing lost


def test_stream_over_max_client_items_waits_instead_of_failing(serve, stub_for):
    scorer = GatedScorer()
    st = serve(scorer, max_wait_ms=0.0, max_client_items=4)
    responses = stub_for(st).ScoreStream(iter([request(f"r{i}", n=3) for i in range(10)]), timeout=20)
    time.sleep(0.5)
    assert st.info().stats.requests == 2  # 3 items < 4: read one more; then 6 >= 4: wait
    scorer.gate.set()
    got = list(responses)
    assert len(got) == 10 and not any(r.HasField("error") for r in got)


def test_unary_calls_over_the_connection_caps_get_resource_exhausted(serve, stub_for, channel_to):
    scorer = GatedScorer()
    st = serve(scorer, max_wait_ms=0.0, max_client_items=4)
    stub = stub_for(st)
    # a second connection (channels with the same target and options would share one)
    other = reward_pb2_grpc.RewardServiceStub(channel_to(st.address, options=[("grpc.use_local_subchannel_pool", 1)]))
    held = stub.Score.future(request("a", n=3), timeout=20)
    time.sleep(0.3)
    with pytest.raises(grpc.RpcError) as e:
        stub.Score(request("b", n=3), timeout=20)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_client_items = 4" in e.value.details()
    from_other_connection = other.Score.future(request("c", n=3), timeout=20)
    time.sleep(0.2)
    scorer.gate.set()
    assert len(held.result().rewards) == 3 and len(from_other_connection.result().rewards) == 3
    assert st.info().stats.rejected_requests == 1
    assert not st.server.connections  # budgets of finished connections are dropped


def test_calls_beyond_max_connection_streams_wait_on_the_client(serve, stub_for):
    scorer = GatedScorer()
    st = serve(scorer, max_wait_ms=0.0, max_connection_streams=2)
    stub = stub_for(st)
    # (calls sent before the client has the server's HTTP/2 SETTINGS are refused UNAVAILABLE; the Info call
    # sets the connection up first)
    stub.Info(reward_pb2.InfoRequest(), timeout=10)
    calls = [stub.Score.future(request(f"r{i}"), timeout=20) for i in range(4)]
    time.sleep(0.5)
    assert st.info().stats.in_flight_requests == 2  # HTTP/2 holds the other two back (no error)
    scorer.gate.set()
    assert [len(c.result().rewards) for c in calls] == [1, 1, 1, 1]


# --------------------------------------------------------------------------- decode limits


def test_request_over_max_request_decoded_bytes_is_refused_before_decoding(serve, stub_for):
    st = serve("synthetic")  # defaults: 128 MiB per request
    buf = io.BytesIO()
    Image.new("RGB", (1024, 1024)).save(buf, format="PNG")
    black = reward_pb2.Item(frame=reward_pb2.Frame(shape=[1024, 1024, 3], data=buf.getvalue(), encoding=reward_pb2.PNG))
    bomb = reward_pb2.ScoreRequest(request_id="bomb", task="t", items=[black] * 128)  # ~0.4 MB -> 384 MiB decoded
    t0 = time.perf_counter()
    with pytest.raises(grpc.RpcError) as e:
        stub_for(st).Score(bomb, timeout=20)
    assert e.value.code() == INVALID and "decode to 402653184 bytes" in e.value.details()
    assert "max_request_decoded_bytes = 134217728" in e.value.details()
    assert time.perf_counter() - t0 < 5
    ok = reward_pb2.ScoreRequest(request_id="ok", task="t", items=[black] * 2)
    assert stub_for(st).Score(ok, timeout=20).rewards[0].reward == 0.0


def test_server_decode_budget_is_resource_exhausted(serve, stub_for):
    scorer = GatedScorer()
    # one request of 3 frames of 8x8x3 (576 decoded bytes + its ~650-byte message) at a time
    st = serve(scorer, max_wait_ms=0.0, max_decoded_bytes=1500)
    held = stub_for(st).Score.future(request("a", n=3, size=8), timeout=20)
    time.sleep(0.3)
    with pytest.raises(grpc.RpcError) as e:
        stub_for(st).Score(request("b", n=3, size=8), timeout=20)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    size = 576 + request("b", n=3, size=8).ByteSize()
    assert (f"holds {size} bytes of requests (received + decoded), this request adds {size}, "
            f"limit max_decoded_bytes = 1500") in e.value.details()
    scorer.gate.set()
    assert len(held.result().rewards) == 3
    assert len(stub_for(st).Score(request("c", n=3, size=8), timeout=20).rewards) == 3
    assert st.server.decoded_bytes == 0


def test_16_bit_grey_png_scores_its_true_brightness(serve, stub_for):
    st = serve("synthetic")
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(buf, format="PNG")
    item = reward_pb2.Item(frame=reward_pb2.Frame(shape=[8, 8, 1], data=buf.getvalue(), encoding=reward_pb2.PNG))
    resp = stub_for(st).Score(reward_pb2.ScoreRequest(request_id="g16", task="t", items=[item]), timeout=10)
    assert resp.rewards[0].reward == pytest.approx(40000 / 65535, abs=0.5 / 255)
