"""The one asyncio event loop of a process's gRPC work (reward servers and reward clients).

grpc.aio on several event loops in one process is fragile: with grpcio 1.85.1, two servers each
on its own loop thread segfaulted in grpc's shutdown path within a few dozen start/stop rounds
(repro kept in tests/reward_workers/test_shared_loop.py). So every :class:`ServerThread` and
every :class:`RewardClient` of a process runs on this single loop, started on first use in a
daemon thread (and started anew in a forked child).
"""

from __future__ import annotations

import asyncio
import os
import threading

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def shared_loop() -> asyncio.AbstractEventLoop:
    """The process-wide gRPC event loop, running in a daemon thread."""
    global _loop, _thread, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or _thread is None or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, name="vlmrl-grpc-loop", daemon=True)
            _thread.start()
            _pid = os.getpid()
        return _loop
