"""Shared-token auth (right, wrong, missing; health stays open) and TLS with a self-signed certificate."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vlmrl.reward_workers.proto import reward_pb2, reward_pb2_grpc
from vlmrl.reward_workers.security import (SecurityConfigError, auth_metadata, channel_credentials, create_channel,
                                           server_credentials)


def test_token_right_wrong_missing(serve, channel_to, make_request, make_frame):
    st = serve("synthetic", auth_token="s3cret")
    stub = reward_pb2_grpc.RewardServiceStub(channel_to(st.address))
    req = make_request("t1", [make_frame(3)])
    assert stub.Score(req, metadata=auth_metadata("s3cret")).rewards[0].reward == pytest.approx(3 / 255)
    assert stub.Info(reward_pb2.InfoRequest(), metadata=auth_metadata("s3cret")).worker_id == "w0"
    for metadata, message in [((), "missing auth token"), (auth_metadata("wrong"), "wrong auth token"),
                              ((("authorization", "s3cret"),), "missing auth token")]:
        with pytest.raises(grpc.RpcError) as e:
            stub.Score(req, metadata=metadata)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED and message in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        list(stub.ScoreStream(iter([req]), metadata=auth_metadata("nope")))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    streamed = list(stub.ScoreStream(iter([req]), metadata=auth_metadata("s3cret")))
    assert [r.request_id for r in streamed] == ["t1"]
    health = health_pb2_grpc.HealthStub(channel_to(st.address))
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING


def test_auth_metadata_shape():
    assert auth_metadata("abc") == (("authorization", "Bearer abc"),)
    assert auth_metadata(None) == () and auth_metadata("") == ()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A self-signed certificate for ``localhost`` / 127.0.0.1 (cert, key, and the cert as CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return {"cert_file": str(d / "cert.pem"), "key_file": str(d / "key.pem"), "ca_file": str(d / "cert.pem")}


def test_tls_with_token(serve, self_signed, make_request, make_frame):
    st = serve("synthetic", auth_token="tok",
               tls={"enabled": True, "cert_file": self_signed["cert_file"], "key_file": self_signed["key_file"]})
    client_tls = {"enabled": True, "ca_file": self_signed["ca_file"], "server_name_override": "localhost"}
    with create_channel(st.address, client_tls) as ch:
        resp = reward_pb2_grpc.RewardServiceStub(ch).Score(make_request("tls", [make_frame(7)]),
                                                          metadata=auth_metadata("tok"), timeout=10)
        assert resp.rewards[0].reward == pytest.approx(7 / 255)
    # A plaintext client cannot talk to the TLS server.
    with grpc.insecure_channel(st.address) as plain:
        with pytest.raises(grpc.RpcError) as e:
            reward_pb2_grpc.RewardServiceStub(plain).Score(make_request("x", [make_frame(1)]),
                                                            metadata=auth_metadata("tok"), timeout=3)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_client_rejects_untrusted_server(serve, self_signed, tmp_path, make_request, make_frame):
    st = serve("synthetic", tls={"enabled": True, **{k: self_signed[k] for k in ("cert_file", "key_file")}})
    # Trust a different (fresh) CA: the handshake must fail.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
             .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
             .sign(key, hashes.SHA256()))
    (tmp_path / "other.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    client_tls = {"enabled": True, "ca_file": str(tmp_path / "other.pem"), "server_name_override": "localhost"}
    with create_channel(st.address, client_tls) as ch:
        with pytest.raises(grpc.RpcError) as e:
            reward_pb2_grpc.RewardServiceStub(ch).Score(make_request("x", [make_frame(1)]), timeout=3)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_config_errors_are_clear(tmp_path):
    assert server_credentials({"enabled": False}) is None and channel_credentials(None) is None
    with pytest.raises(SecurityConfigError, match="tls.key_file is not set"):
        server_credentials({"enabled": True, "cert_file": "x"})
    with pytest.raises(SecurityConfigError, match="does not exist"):
        server_credentials({"enabled": True, "cert_file": str(tmp_path / "nope.pem"), "key_file": "k"})


@pytest.mark.parametrize("overrides, message", [
    ({"auth_token": ""}, "server.auth_token is set but empty"),
    ({"auth_token": "   "}, "server.auth_token is set but empty"),
    ({"require_auth": True}, "server.require_auth is true but server.auth_token is not set"),
    ({"tls": {"enabled": True}}, "server.tls.enabled is true but server.tls.cert_file is not set"),
    ({"tls": {"enabled": True, "cert_file": "/nonexistent/cert.pem", "key_file": "/nonexistent/key.pem"}},
     "server.tls.cert_file = '/nonexistent/cert.pem' does not exist"),
])
def test_empty_token_and_incomplete_tls_fail_at_start_up(overrides, message):
    from vlmrl.reward_workers.scorers import build_scorer
    from vlmrl.reward_workers.server import RewardServer
    from tests.reward_workers.conftest import server_config

    with pytest.raises(SecurityConfigError, match=message):
        RewardServer(server_config(**overrides), build_scorer("synthetic", {}), "w")
    assert RewardServer(server_config(auth_token=None), build_scorer("synthetic", {}), "w").cfg.auth_token is None


def test_tls_missing_key_with_the_cert_present_names_the_key(self_signed):
    from vlmrl.reward_workers.security import check_server_security

    with pytest.raises(SecurityConfigError, match="server.tls.key_file is not set"):
        check_server_security({"tls": {"enabled": True, "cert_file": self_signed["cert_file"]}})
    check_server_security({"auth_token": "tok", "tls": {"enabled": True, **{k: self_signed[k]
                                                                          for k in ("cert_file", "key_file")}}})


@pytest.mark.parametrize("overrides, message", [
    (["server.require_auth=true", "server.auth_token="], "server.require_auth is true but server.auth_token is not set"),
    (["server.auth_token=''"], "server.auth_token is set but empty"),
    (["server.tls.enabled=true"], "server.tls.enabled is true but server.tls.cert_file is not set"),
])
def test_serve_reports_security_config_errors_in_one_line(tmp_path, overrides, message):
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "vlmrl.system.cli", "serve", "scorer.name=synthetic",
                           f"output_dir={tmp_path}", *overrides], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().startswith(f"vlmrl serve: {message}")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stdout + proc.stderr
