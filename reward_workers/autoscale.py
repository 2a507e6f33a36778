"""The pool's autoscaling policy: the workers' Info statistics -> the pool size wanted.

:class:`AutoscalePolicy` is pure (no Ray): the supervisor feeds it the ``RewardWorkerActor.info()`` rows
of the live workers every ``pool.autoscale.interval_s`` and applies what :meth:`AutoscalePolicy.decide`
returns. The rule is Kubernetes' HPA rule: ``wanted = ceil(size * observed / target)`` on the mean over
the last ``window`` reads, nothing within ``target x (1 +- hysteresis)``, at most one event per
``cooldown_s``, scale-down one worker per event, always within ``[min_workers, max_workers]``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any, Dict, Iterable, Mapping, Optional

METRICS = ("queue_depth", "latency_ms")


class AutoscalePolicy:
    """Decides the reward pool's size from its workers' load (see module doc); ``cfg`` is ``pool.autoscale``."""

    def __init__(self, cfg: Any) -> None:
        self.min = int(cfg.min_workers)
        self.max = int(cfg.max_workers)
        self.metric = str(cfg.metric)
        self.target = float(cfg.target)
        self.hysteresis = float(cfg.hysteresis)
        self.cooldown_s = float(cfg.cooldown_s)
        self.window = int(cfg.window)
        if self.metric not in METRICS:
            raise ValueError(f"pool.autoscale.metric must be one of {METRICS}, got {self.metric!r}")
        if not 1 <= self.min <= self.max:
            raise ValueError(f"pool.autoscale needs 1 <= min_workers <= max_workers, "
                             f"got {self.min}..{self.max}")
        if self.target <= 0 or self.window < 1 or self.hysteresis < 0:
            raise ValueError("pool.autoscale.target must be > 0, window >= 1, hysteresis >= 0")
        self._samples: deque = deque(maxlen=self.window)
        self._prev: Dict[str, tuple] = {}  # worker -> (requests, mean_latency_ms) at the previous read
        self._last_event = -math.inf
        self.last_value: Optional[float] = None

    def clamp(self, n: int) -> int:
        return max(self.min, min(self.max, int(n)))

    def observe(self, rows: Iterable[Mapping[str, Any]]) -> Optional[float]:
        """Record one read of the live workers' Info rows; returns the per-worker value of the metric."""
        rows = [r for r in rows if "error" not in r]
        if not rows:
            return None
        if self.metric == "queue_depth":
            value = sum(float(r.get("queue_depth", 0)) for r in rows) / len(rows)
        else:  # mean latency of the requests answered since the previous read (the Info mean is lifetime)
            total_ms = total_n = 0.0
            for r in rows:
                n, mean = float(r.get("requests", 0)), float(r.get("mean_latency_ms", 0.0))
                pn, pmean = self._prev.get(r["worker_id"], (0.0, 0.0))
                self._prev[r["worker_id"]] = (n, mean)
                if n > pn:
                    total_ms += n * mean - pn * pmean
                    total_n += n - pn
            value = total_ms / total_n if total_n else 0.0
        self._samples.append(value)
        self.last_value = value
        return value

    def decide(self, size: int, now: Optional[float] = None) -> Optional[int]:
        """The new pool size, or None to keep ``size``."""
        now = time.monotonic() if now is None else now
        if size != self.clamp(size):
            return self._event(self.clamp(size), now)
        if len(self._samples) < self.window or now - self._last_event < self.cooldown_s:
            return None
        observed = sum(self._samples) / len(self._samples)
        ratio = observed / self.target
        if abs(ratio - 1.0) <= self.hysteresis:
            return None
        wanted = self.clamp(math.ceil(size * ratio - 1e-9)) if ratio > 1 else self.clamp(size - 1)
        return self._event(wanted, now) if wanted != size else None

    def _event(self, wanted: int, now: float) -> int:
        self._last_event = now
        self._samples.clear()  # judge the new size on its own reads
        return wanted
