"""TLS credentials and the shared-token check of the reward service (server and client halves).

Server: :func:`server_credentials` (None = plaintext) and :class:`TokenAuthInterceptor`, which
refuses calls without ``authorization: Bearer <token>`` metadata with UNAUTHENTICATED (the
gRPC health service stays open so load balancers and the pool can probe). Client:
:func:`channel_credentials`, :func:`channel_options`, :func:`auth_metadata` and
:func:`create_channel`.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any, Iterable, Sequence

import grpc

AUTH_HEADER = "authorization"
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


class SecurityConfigError(ValueError):
    """TLS or token settings are incomplete or point at missing files."""


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def _read(path: str | None, what: str) -> bytes:
    if not path:
        raise SecurityConfigError(f"tls.enabled is true but tls.{what} is not set")
    p = Path(path)
    if not p.is_file():
        raise SecurityConfigError(f"tls.{what} = {path!r} does not exist")
    return p.read_bytes()


def tls_enabled(tls_cfg: Any) -> bool:
    return bool(_get(tls_cfg, "enabled", False))


def check_server_security(server_cfg: Any) -> None:
    """Start-up check of the ``server`` section: an empty ``auth_token`` when auth is asked for (the token is a
    string, or ``require_auth`` is true; e.g. from an unset variable) and TLS without readable
    ``cert_file``/``key_file`` raise :class:`SecurityConfigError` with one line."""
    token = _get(server_cfg, "auth_token")
    if token is not None and not str(token).strip():
        raise SecurityConfigError("server.auth_token is set but empty (an unset variable?): set a token, or null "
                                  "to run without auth")
    if token is None and _get(server_cfg, "require_auth", False):
        raise SecurityConfigError("server.require_auth is true but server.auth_token is not set (an unset "
                                  "variable?)")
    tls = _get(server_cfg, "tls")
    if tls_enabled(tls):
        for what in ("cert_file", "key_file"):
            path = _get(tls, what)
            if not path:
                raise SecurityConfigError(f"server.tls.enabled is true but server.tls.{what} is not set")
            if not Path(path).is_file():
                raise SecurityConfigError(f"server.tls.{what} = {path!r} does not exist")


def server_credentials(tls_cfg: Any) -> grpc.ServerCredentials | None:
    """Server TLS credentials from ``cert_file`` + ``key_file``; None when TLS is off."""
    if not tls_enabled(tls_cfg):
        return None
    key = _read(_get(tls_cfg, "key_file"), "key_file")
    cert = _read(_get(tls_cfg, "cert_file"), "cert_file")
    return grpc.ssl_server_credentials([(key, cert)])


def channel_credentials(tls_cfg: Any) -> grpc.ChannelCredentials | None:
    """Client TLS credentials verifying the server against ``ca_file`` (system roots if unset); None when TLS is off."""
    if not tls_enabled(tls_cfg):
        return None
    ca_file = _get(tls_cfg, "ca_file")
    root = _read(ca_file, "ca_file") if ca_file else None
    return grpc.ssl_channel_credentials(root_certificates=root)


def channel_options(tls_cfg: Any = None, max_message_bytes: int | None = None) -> list[tuple[str, Any]]:
    """Channel options: TLS server-name override and message size limits."""
    opts: list[tuple[str, Any]] = []
    override = _get(tls_cfg, "server_name_override") if tls_enabled(tls_cfg) else None
    if override:
        opts.append(("grpc.ssl_target_name_override", override))
    if max_message_bytes:
        opts += [("grpc.max_send_message_length", int(max_message_bytes)),
                 ("grpc.max_receive_message_length", int(max_message_bytes))]
    return opts


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the shared token (empty when no token is configured)."""
    return ((AUTH_HEADER, f"Bearer {token}"),) if token else ()


def create_channel(address: str, tls_cfg: Any = None, *, aio: bool = False, max_message_bytes: int | None = None,
                   options: Sequence[tuple[str, Any]] = ()):
    """A (sync or grpc.aio) channel to a reward worker, secure if ``tls_cfg.enabled``."""
    creds = channel_credentials(tls_cfg)
    opts = channel_options(tls_cfg, max_message_bytes) + list(options)
    mod = grpc.aio if aio else grpc
    if creds is None:
        return mod.insecure_channel(address, options=opts)
    return mod.secure_channel(address, creds, options=opts)


def _token_of(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() == AUTH_HEADER:
            value = value.decode() if isinstance(value, bytes) else str(value)
            if value.startswith("Bearer "):
                return value[len("Bearer "):]
            return None
    return None


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same arity as ``handler`` that aborts with UNAUTHENTICATED."""

    async def abort(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def abort_stream(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover  (makes this an async generator, as stream handlers must be)

    kw = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort, **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort_stream, **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, **kw)
    return grpc.stream_stream_rpc_method_handler(abort_stream, **kw)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Server interceptor of the reward service: every call (except health) must carry the shared token."""

    def __init__(self, token: str, open_prefixes: Sequence[str] = OPEN_METHOD_PREFIXES) -> None:
        if not token:
            raise SecurityConfigError("auth token must be a non-empty string")
        self._token = token.encode()
        self._open = tuple(open_prefixes)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(self._open):
            return handler
        given = _token_of(handler_call_details.invocation_metadata)
        if given is None:
            return _refusal(handler, "missing auth token: send metadata 'authorization: Bearer <token>'")
        if not hmac.compare_digest(given.encode(), self._token):
            return _refusal(handler, "wrong auth token")
        return handler
