"""A reward server in a child process, for tests and benchmarks that need several servers at once.

Deployment has one server per Ray actor process; :class:`ServerProcess` gives tests and
benchmarks the same shape: servers that do not share a Python interpreter's GIL, and that can be
killed abruptly like a crashed worker. (It also kept grpcio 1.85.1's shutdown segfault out of the
test process before its cause was found: see tests/reward_workers/test_shared_loop.py.)
Children come from a ``forkserver`` that has preloaded the server and scorer modules (but
never touched grpc's runtime), so starting one takes a fraction of a second.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from typing import Any, Dict, Optional

from vlmrl.reward_workers.proto import reward_pb2

_CTX = mp.get_context("forkserver")
_CTX.set_forkserver_preload(["vlmrl.reward_workers.server_process", "vlmrl.reward_workers.server",
                             "vlmrl.reward_workers.scorers.synthetic", "vlmrl.reward_workers.scorers.cnn"])


def _child(server_cfg: Dict[str, Any], scorer: str, params: Dict[str, Any], worker_id: str, conn) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
        from omegaconf import OmegaConf

        from vlmrl.reward_workers.scorers import build_scorer
        from vlmrl.reward_workers.server import ServerThread
        from vlmrl.reward_workers.config import ServerConfig

        cfg = OmegaConf.merge(OmegaConf.structured(ServerConfig), server_cfg)
        srv = ServerThread(cfg, build_scorer(scorer, params), worker_id)
        conn.send(("ok", srv.start()))
    except BaseException as e:  # report start failures to the parent instead of hanging it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        msg, arg = conn.recv()
        if msg == "info":
            conn.send(srv.info().SerializeToString())
        elif msg == "stop":
            srv.stop(arg)
            conn.send("stopped")
            return


class ServerProcess:
    """A :class:`~vlmrl.reward_workers.server.ServerThread` in a child process: ``address``, ``info()``,
    graceful ``stop(grace_s)`` and abrupt ``kill()`` (SIGKILL, like a crashed worker)."""

    def __init__(self, scorer: str, params: Optional[Dict[str, Any]] = None, worker_id: str = "w",
                 server_cfg: Optional[Dict[str, Any]] = None, start_timeout_s: float = 120.0) -> None:
        self._conn, child = _CTX.Pipe()
        self.proc = _CTX.Process(target=_child, args=(dict(server_cfg or {}), scorer, dict(params or {}),
                                                      worker_id, child), daemon=True)
        self.proc.start()
        child.close()
        if not self._conn.poll(start_timeout_s):
            self.kill()
            raise RuntimeError(f"reward server process {worker_id!r} did not start within {start_timeout_s:g}s")
        try:
            status, value = self._conn.recv()
        except EOFError:
            self.proc.join(5)
            raise RuntimeError(f"reward server process {worker_id!r} exited before reporting its address "
                               f"(exit code {self.proc.exitcode}; a script starting it needs an "
                               f"`if __name__ == '__main__':` guard)") from None
        if status != "ok":
            self.proc.join(5)
            raise RuntimeError(f"reward server process {worker_id!r} failed to start: {value}")
        self.address: str = value
        self.worker_id = worker_id

    def info(self) -> reward_pb2.InfoResponse:
        self._conn.send(("info", None))
        return reward_pb2.InfoResponse.FromString(self._conn.recv())

    def stop(self, grace_s: float | None = None) -> None:
        """Graceful stop (in-flight requests get ``grace_s``); no-op if already gone."""
        if not self.proc.is_alive():
            return
        try:
            self._conn.send(("stop", grace_s))
            self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            pass
        self.proc.join(10)

    def kill(self) -> None:
        """Abrupt death: SIGKILL, the kernel resets its connections."""
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(10)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(0)
