"""Attaching to a Ray cluster by address (``vlmrl workers status --address``): the auth token is found where Ray's
CLI finds it, and a missing/wrong token or a dead address fails at once with what to set. A stand-in GCS (a gRPC
server answering Ray's GetClusterId only with the right bearer token) keeps this fast; no Ray is started."""

from __future__ import annotations

import time
from concurrent import futures

import grpc
import pytest

from vlmrl.reward_workers.ray_attach import RayAttachError, find_auth_token, prepare_ray_auth

TOKEN = "cluster-token-123"


@pytest.fixture
def fake_gcs():
    def handler(request, context):
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "InvalidAuthToken: Authentication token is missing")
        return b"cluster-id"

    server = grpc.server(futures.ThreadPoolExecutor(2))
    method = grpc.unary_unary_rpc_method_handler(handler, request_deserializer=lambda b: b,
                                                 response_serializer=lambda b: b)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "ray.rpc.NodeInfoGcsService", {"GetClusterId": method})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_token_from_the_default_file_enables_token_mode(fake_gcs, clean_env, monkeypatch):
    (clean_env / ".ray").mkdir()
    (clean_env / ".ray" / "auth_token").write_text(TOKEN + "\n")
    assert find_auth_token() == (TOKEN, str(clean_env / ".ray" / "auth_token"))
    prepare_ray_auth(fake_gcs)
    import os

    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_token_from_env_and_token_path(fake_gcs, clean_env, monkeypatch):
    p = clean_env / "tok"
    p.write_text(TOKEN)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(p))
    prepare_ray_auth(fake_gcs)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    assert find_auth_token() == (TOKEN, "RAY_AUTH_TOKEN")
    prepare_ray_auth(fake_gcs)


def test_missing_token_fails_fast_saying_what_to_set(fake_gcs, clean_env):
    t0 = time.monotonic()
    with pytest.raises(RayAttachError, match=r"requires token authentication.*RAY_AUTH_TOKEN.*ray get-auth-token"):
        prepare_ray_auth(fake_gcs)
    assert time.monotonic() - t0 < 5


def test_wrong_token_and_dead_address_fail_fast(fake_gcs, clean_env, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-it")
    with pytest.raises(RayAttachError, match="refused the auth token from RAY_AUTH_TOKEN"):
        prepare_ray_auth(fake_gcs)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    t0 = time.monotonic()
    with pytest.raises(RayAttachError, match="no Ray cluster answers"):
        prepare_ray_auth(dead)
    assert time.monotonic() - t0 < 5
    prepare_ray_auth("auto")  # left to Ray
    prepare_ray_auth(None)
