"""Attaching to a running Ray cluster by address the way Ray's own CLI does: find its auth token, fail fast.

Ray (2.5x+) starts local clusters with token authentication and its CLI (``ray status`` & co.) turns
token mode on when a token is found; ``ray.init(address="host:port")`` does not, and without the token
it retries for ~20 s with "InvalidAuthToken" warnings before "Failed to connect". :func:`prepare_ray_auth`
runs before such a ``ray.init``: it looks for the token where Ray does (``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``), enables token mode when one is there, and asks the
cluster's GCS once (a 3 s gRPC probe) whether it is reachable and accepts us, raising
:class:`RayAttachError` with exactly what to set otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

PROBE_TIMEOUT_S = 3.0
_PROBE_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"


class RayAttachError(ConnectionError):
    """The Ray cluster at an address cannot be attached to (unreachable, or its auth token is missing/wrong)."""


def find_auth_token() -> Tuple[Optional[str], str]:
    """``(token, where it came from)`` in Ray's order, or ``(None, "")``."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    for where in (os.environ.get("RAY_AUTH_TOKEN_PATH"), str(Path.home() / ".ray" / "auth_token")):
        if where and Path(where).is_file():
            token = Path(where).read_text().strip()
            if token:
                return token, where
    return None, ""


def _enable_token_mode() -> None:
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # refresh Ray's cached config so this process sees token mode (as Ray's CLI does)
        from ray._raylet import Config

        Config.initialize("")
    except Exception:  # noqa: BLE001 - older/newer Ray: the environment variable alone is read at init
        pass


def probe_gcs(address: str, token: Optional[str]) -> Optional[str]:
    """None if the GCS at ``address`` answers us; else the gRPC status name (UNAVAILABLE, UNAUTHENTICATED, ...)."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(_PROBE_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        metadata = [("authorization", f"Bearer {token}")] if token else None
        try:
            call(b"", timeout=PROBE_TIMEOUT_S, metadata=metadata)
            return None
        except grpc.RpcError as e:
            return e.code().name


def prepare_ray_auth(address: Optional[str]) -> None:
    """Before ``ray.init(address=...)``: enable token auth if a token is available and check the cluster answers;
    raises :class:`RayAttachError` (one clear message) instead of Ray's 20 s of retries. ``None``/``auto``/
    ``ray://`` addresses are left to Ray."""
    if not address or address in ("auto", "local") or "://" in address or ":" not in address:
        return
    mode = os.environ.get("RAY_AUTH_MODE")
    token, source = find_auth_token()
    if token and mode is None:
        _enable_token_mode()
        mode = "token"
    use_token = token if (mode or "").lower() == "token" else None
    code = probe_gcs(address, use_token)
    if code is None:
        return
    if code == "UNAUTHENTICATED":
        if use_token:
            raise RayAttachError(
                f"the Ray cluster at {address} refused the auth token from {source}: it is not this cluster's. "
                f"Set RAY_AUTH_TOKEN to the cluster's token (on its head node: `ray get-auth-token` or "
                f"~/.ray/auth_token)")
        raise RayAttachError(
            f"the Ray cluster at {address} requires token authentication and no token was found here "
            f"(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token"
            f"{'; RAY_AUTH_MODE=' + mode + ' is set' if mode else ''}). Copy the head node's ~/.ray/auth_token "
            f"to this machine, or `export RAY_AUTH_TOKEN=<token>` (print it on the head node with "
            f"`ray get-auth-token`){'' if not mode else ' and unset RAY_AUTH_MODE'}")
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        raise RayAttachError(f"no Ray cluster answers at {address} ({code} within {PROBE_TIMEOUT_S:g}s): is the "
                             f"address the one `vlmrl workers start` / `ray start --head` printed?")
    # anything else (e.g. UNIMPLEMENTED from another Ray version): let ray.init decide
