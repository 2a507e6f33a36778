"""The reward client's view of the worker registry: which reward workers exist now.

:class:`RegistryDiscovery` reads a registry (an object with ``workers() -> {worker_id: address}``, e.g.
:class:`vlmrl.reward_workers.registry.RegistryView`) for the dispatcher. A registry read blocks (a Ray call), so it
runs on this object's own thread with a bounded wait: a slow or dead registry can never stall dispatch or starve
the shared event loop's default executor; a failed read keeps the known workers and is remembered as
``last_error``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)


class RegistryDiscovery:
    """Reads ``registry.workers()`` off the event loop, waiting at most ``timeout_s`` for an answer."""

    def __init__(self, registry: Any, timeout_s: float) -> None:
        self.registry = registry
        self.timeout_s = timeout_s
        self.last_error = ""
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reward-client-discovery")

    async def read(self) -> Optional[Dict[str, str]]:
        """``{address: worker_id}`` of the registered workers, or None if the registry could not be read."""
        try:
            found = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self._executor, self.registry.workers),
                timeout=self.timeout_s)
            found = dict(found)
            self.last_error = ""
        except (Exception, asyncio.TimeoutError) as e:  # noqa: BLE001 - keep the known workers when the registry is unreachable
            self.last_error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            log.warning("reward worker discovery failed: %s", self.last_error)
            return None
        return {addr: wid for wid, addr in found.items()}

    def shutdown(self) -> None:
        """Stop the reading thread (a read stuck in the registry is abandoned)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
