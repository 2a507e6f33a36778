"""Fixtures for reward-worker tests: real servers on 127.0.0.1 port 0 and real gRPC channels."""

from __future__ import annotations

from typing import Sequence

import grpc
import numpy as np
import pytest
from omegaconf import OmegaConf

from vlmrl.reward_workers.frames import make_item
from vlmrl.reward_workers.proto import reward_pb2, reward_pb2_grpc
from vlmrl.reward_workers.scorers import build_scorer
from vlmrl.reward_workers.scorers.base import Scorer
from vlmrl.reward_workers.server import ServerThread
from vlmrl.system.config import ServerConfig


def server_config(**overrides):
    """The ``server`` config section with overrides (nested keys as dicts, e.g. tls={...})."""
    return OmegaConf.merge(OmegaConf.structured(ServerConfig), overrides)


@pytest.fixture
def serve():
    """serve(scorer="synthetic" | Scorer, params=None, **server_overrides) -> started ServerThread."""
    started: list[ServerThread] = []

    def _serve(scorer: str | Scorer = "synthetic", params: dict | None = None, **server_overrides) -> ServerThread:
        if isinstance(scorer, str):
            p = {"fixed_ms": 0.0, "per_item_ms": 0.0} if scorer == "synthetic" else {}
            scorer = build_scorer(scorer, {**p, **(params or {})})
        st = ServerThread(server_config(**server_overrides), scorer, f"w{len(started)}")
        st.start()
        started.append(st)
        return st

    yield _serve
    for st in started:
        st.stop(grace_s=0.5)


@pytest.fixture
def channel_to():
    """channel_to(address, options=()) -> an insecure sync channel, closed after the test."""
    channels: list[grpc.Channel] = []

    def _open(address: str, options: Sequence = ()) -> grpc.Channel:
        ch = grpc.insecure_channel(address, options=list(options))
        channels.append(ch)
        return ch

    yield _open
    for ch in channels:
        ch.close()


@pytest.fixture
def stub_for(channel_to):
    """stub_for(server_thread) -> RewardServiceStub over a fresh channel."""

    def _stub(st: ServerThread) -> reward_pb2_grpc.RewardServiceStub:
        return reward_pb2_grpc.RewardServiceStub(channel_to(st.address))

    return _stub


def frame(value: int | None = None, h: int = 8, w: int = 8, c: int = 3, seed: int = 0) -> np.ndarray:
    """A small uint8 image: constant ``value`` or random from ``seed``."""
    if value is not None:
        return np.full((h, w, c), value, np.uint8)
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def request(request_id: str, frames: Sequence[np.ndarray], task: str = "push the cube", kind: str = "frame",
            **kw) -> reward_pb2.ScoreRequest:
    """A ScoreRequest with one item per entry of ``frames`` (each (H,W,C), or (k,H,W,C) for pairs/windows)."""
    return reward_pb2.ScoreRequest(request_id=request_id, task=task,
                                   items=[make_item(f, kind) for f in frames], **kw)


@pytest.fixture
def make_frame():
    return frame


@pytest.fixture
def make_request():
    return request
