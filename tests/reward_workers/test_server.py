"""The reward server end to end: real servers on 127.0.0.1:0, real gRPC channels."""

from __future__ import annotations

import queue
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vlmrl.reward_workers.proto import reward_pb2
from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScoreResult
from vlmrl.reward_workers.scorers.synthetic import SyntheticScorer
from vlmrl.reward_workers.server import SERVICE_NAME


def test_score_routes_each_reward_to_its_item(serve, stub_for, make_request, make_frame):
    st = serve("synthetic")
    assert st.address.startswith("127.0.0.1:")
    frames = [make_frame(seed=i) for i in range(5)]
    resp = stub_for(st).Score(make_request("req-1", frames, scorer="synthetic"))
    assert resp.request_id == "req-1" and resp.worker_id == "w0"
    assert resp.scorer == "synthetic" and resp.model_version == "synthetic-1"
    assert [r.reward for r in resp.rewards] == pytest.approx([SyntheticScorer.expected_reward(f) for f in frames])
    assert not resp.HasField("error")
    info = st.info()
    assert (info.scorer, info.item_kind, info.stats.requests, info.stats.items) == ("synthetic", "frame", 1, 5)


def test_info_rpc_reports_stats(serve, stub_for, make_request, make_frame):
    st = serve("synthetic", {"fixed_ms": 3.0}, max_batch=7, max_wait_ms=1.0)
    stub = stub_for(st)
    for i in range(3):
        stub.Score(make_request(f"r{i}", [make_frame(i)] * 2))
    info = stub.Info(reward_pb2.InfoRequest())
    s = info.stats
    assert (info.worker_id, info.model_version) == ("w0", "synthetic-1")
    assert (s.requests, s.items, s.max_batch, s.max_wait_ms) == (3, 6, 7, 1.0)
    assert s.batches >= 3 and s.mean_batch_size == pytest.approx(6 / s.batches)
    assert s.mean_scorer_ms >= 3.0 and s.mean_latency_ms >= s.mean_scorer_ms
    assert s.items_per_second > 0 and s.queue_depth == 0 and s.in_flight_requests == 0


@pytest.mark.parametrize("kind, k", [("pair", 2), ("window", 4)])
def test_pair_and_window_scorers(serve, stub_for, make_request, make_frame, kind, k):
    st = serve("synthetic", {"item_kind": kind, "window": 4})
    items = [np.stack([make_frame(10 * (i + j)) for j in range(k)]) for i in range(3)]
    resp = stub_for(st).Score(make_request("r", items, kind=kind))
    assert [r.reward for r in resp.rewards] == pytest.approx([SyntheticScorer.expected_reward(it) for it in items])
    if kind == "pair":
        assert {r.label for r in resp.rewards} == {"second"}  # the second frame is brighter
    assert st.info().item_kind == kind


def test_stream_answers_every_request_exactly_once(serve, stub_for, make_request, make_frame):
    st = serve("synthetic", {"fixed_ms": 2.0}, max_batch=16, max_wait_ms=2.0)
    n = 200
    requests = [make_request(f"s{i}", [make_frame(i % 256)] * (1 + i % 3)) for i in range(n)]
    responses = list(stub_for(st).ScoreStream(iter(requests), timeout=30))
    assert sorted(r.request_id for r in responses) == sorted(f"s{i}" for i in range(n))
    for r in responses:
        i = int(r.request_id[1:])
        assert len(r.rewards) == 1 + i % 3
        assert r.rewards[0].reward == pytest.approx((i % 256) / 255.0)
    assert st.info().stats.batches < n  # requests in flight together were batched


def test_stream_keeps_going_after_a_bad_request(serve, stub_for, make_request, make_frame):
    st = serve("synthetic")
    outbox: queue.Queue = queue.Queue()

    def gen():
        while (req := outbox.get()) is not None:
            yield req

    responses = stub_for(st).ScoreStream(gen(), timeout=20)
    outbox.put(make_request("good-1", [make_frame(1)]))
    assert next(responses).request_id == "good-1"
    outbox.put(make_request("bad", [make_frame(1)], task=" "))
    bad = next(responses)
    assert bad.request_id == "bad"
    assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "task is missing" in bad.error.message
    assert len(bad.rewards) == 0
    outbox.put(make_request("good-2", [make_frame(2)]))
    good = next(responses)
    assert good.request_id == "good-2" and not good.HasField("error")
    outbox.put(None)
    assert list(responses) == []


class FailingScorer(Scorer):
    """Raises on the task "explode"; otherwise reward 0.5."""

    name = "failing"
    item_kind = ItemKind.FRAME

    def __init__(self):
        super().__init__(None)

    def score_batch(self, tasks, items):
        if "explode" in tasks:
            raise RuntimeError("model blew up")
        return [ScoreResult(0.5) for _ in items]


def test_scorer_exception_is_internal_and_server_keeps_serving(serve, stub_for, make_request, make_frame):
    st = serve(FailingScorer(), max_wait_ms=0.0)
    stub = stub_for(st)
    with pytest.raises(grpc.RpcError) as e:
        stub.Score(make_request("boom", [make_frame(1)], task="explode"))
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "RuntimeError: model blew up" in e.value.details()
    assert stub.Score(make_request("ok", [make_frame(1)])).rewards[0].reward == 0.5
    err = list(stub.ScoreStream(iter([make_request("boom2", [make_frame(1)], task="explode")])))[0]
    assert err.error.code == grpc.StatusCode.INTERNAL.value[0]
    assert st.info().stats.failed_requests == 2


def wait_for(condition, st, timeout=10.0):
    """Poll the server's Info stats until ``condition(stats)`` holds."""
    t0 = time.perf_counter()
    while not condition(st.info().stats):
        assert time.perf_counter() - t0 < timeout, f"timed out; stats: {st.info().stats}"
        time.sleep(0.005)


def test_queue_full_is_resource_exhausted_then_recovers(serve, stub_for, make_request, make_frame):
    st = serve("synthetic", {"fixed_ms": 300.0}, max_batch=1, max_wait_ms=0.0, max_queue_items=2)
    stub = stub_for(st)
    stub.Info(reward_pb2.InfoRequest())  # connected
    first = stub.Score.future(make_request("a", [make_frame(1)]))
    wait_for(lambda s: s.in_flight_requests == 1 and s.queue_depth == 0, st)  # "a" is in the scorer now
    queued = [stub.Score.future(make_request(x, [make_frame(2)])) for x in ("b", "c")]
    wait_for(lambda s: s.queue_depth == 2, st)
    with pytest.raises(grpc.RpcError) as e:
        stub.Score(make_request("d", [make_frame(3)]))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "queue is full" in e.value.details()
    for f in [first, *queued]:
        f.result(timeout=10)
    assert stub.Score(make_request("d", [make_frame(3)]), timeout=10).request_id == "d"
    assert st.info().stats.rejected_requests == 1


def test_oversized_message_is_refused_by_grpc_and_server_survives(serve, stub_for, make_request, make_frame):
    st = serve("synthetic", max_message_bytes=64 * 1024)
    stub = stub_for(st)
    big = make_frame(seed=1, h=200, w=200)  # 120 kB raw
    with pytest.raises(grpc.RpcError) as e:
        stub.Score(make_request("big", [big]))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.Score(make_request("small", [make_frame(5)])).rewards[0].reward == pytest.approx(5 / 255)


def test_graceful_stop_answers_in_flight_request_and_flips_health(serve, stub_for, channel_to, make_request,
                                                                    make_frame):
    st = serve("synthetic", {"fixed_ms": 400.0}, max_wait_ms=0.0)
    ch = channel_to(st.address)
    health = health_pb2_grpc.HealthStub(ch)
    for service in ("", SERVICE_NAME):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
            health_pb2.HealthCheckResponse.SERVING
    watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    in_flight = stub_for(st).Score.future(make_request("late", [make_frame(9)]))
    wait_for(lambda s: s.in_flight_requests == 1, st)
    stopper = threading.Thread(target=st.stop, kwargs={"grace_s": 5.0})
    t0 = time.perf_counter()
    stopper.start()
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    resp = in_flight.result(timeout=10)
    assert resp.request_id == "late" and resp.rewards[0].reward == pytest.approx(9 / 255)
    stopper.join(10)
    assert not stopper.is_alive() and time.perf_counter() - t0 < 5.0
    with pytest.raises(grpc.RpcError) as e:
        health.Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_stop_cancels_after_grace(serve, stub_for, make_request, make_frame):
    st = serve("synthetic", {"fixed_ms": 3000.0}, max_wait_ms=0.0)
    fut = stub_for(st).Score.future(make_request("slow", [make_frame(1)]))
    wait_for(lambda s: s.in_flight_requests == 1, st)
    t0 = time.perf_counter()
    st.stop(grace_s=0.2)
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(grpc.RpcError):
        fut.result(timeout=5)


def test_concurrent_stops_share_one_shutdown(serve, stub_for, make_request, make_frame, monkeypatch):
    st = serve("synthetic", {"fixed_ms": 300.0}, max_wait_ms=0.0)
    grpc_server = st.server._server
    calls = []
    real_stop = grpc_server.stop

    async def counting_stop(grace):
        calls.append(grace)
        await real_stop(grace)

    monkeypatch.setattr(grpc_server, "stop", counting_stop)
    fut = stub_for(st).Score.future(make_request("in-flight", [make_frame(3)]))
    wait_for(lambda s: s.in_flight_requests == 1, st)
    server = st.server
    stoppers = [threading.Thread(target=st._call, args=(server.stop(2.0),)) for _ in range(3)]
    for t in stoppers:
        t.start()
    assert fut.result(timeout=10).rewards[0].reward == pytest.approx(3 / 255)
    for t in stoppers:
        t.join(10)
        assert not t.is_alive()
    assert len(calls) == 1  # a second grpc shutdown while one runs is what crashed grpcio 1.85.1


def test_client_deadline_cancels_cleanly(serve, stub_for, make_request, make_frame):
    st = serve("synthetic", {"fixed_ms": 300.0}, max_wait_ms=0.0)
    stub = stub_for(st)
    with pytest.raises(grpc.RpcError) as e:
        stub.Score(make_request("hurry", [make_frame(1)]), timeout=0.05)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda s: s.in_flight_requests == 0 and s.queue_depth == 0, st)
    assert stub.Score(make_request("next", [make_frame(2)]), timeout=10).request_id == "next"


def test_plain_dataclass_config_works(channel_to, make_request, make_frame):
    from vlmrl.reward_workers.proto import reward_pb2_grpc
    from vlmrl.reward_workers.scorers import build_scorer
    from vlmrl.reward_workers.server import ServerThread
    from vlmrl.system.config import ServerConfig

    with ServerThread(ServerConfig(max_wait_ms=0.0), build_scorer("synthetic", {"fixed_ms": 0.0}), "dc") as st:
        stub = reward_pb2_grpc.RewardServiceStub(channel_to(st.address))
        assert stub.Score(make_request("dc", [make_frame(4)])).worker_id == "dc"
