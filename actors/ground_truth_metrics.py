"""Ground-truth episode metrics of the env runners (evaluation only; never a reward).

:class:`GroundTruthMetricsCallback` logs, per finished episode, the env's ground-truth ``success``
and final dense reward (``info`` keys of :mod:`vlmrl.envs.info_keys`) through RLlib's MetricsLogger,
under ``env_runners/vlmrl/gt_success`` and ``env_runners/vlmrl/gt_final_env_reward``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from vlmrl.envs import info_keys as K

METRICS_KEY = "vlmrl"
"""Top-level key of vlmrl's env runner metrics (``result['env_runners']['vlmrl']``)."""
EPISODE_WINDOW = 100


def pearson(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Pearson correlation of a reward with ground truth over the finite pairs; None when undefined (fewer
    than 3 points or a constant series)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or x.std() < 1e-12 or y.std() < 1e-12:
        return None
    return float(np.corrcoef(x, y)[0, 1])


class GroundTruthMetricsCallback(RLlibCallback):
    """Logs ground-truth success / final dense reward of each finished episode (see module doc)."""

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
        if metrics_logger is None:
            return
        info = episode.get_infos(-1)
        if K.SUCCESS in info:
            metrics_logger.log_value((METRICS_KEY, "gt_success"), float(bool(info[K.SUCCESS])),
                                     reduce="mean", window=EPISODE_WINDOW)
        if K.ENV_REWARD in info:
            metrics_logger.log_value((METRICS_KEY, "gt_final_env_reward"), float(info[K.ENV_REWARD]),
                                     reduce="mean", window=EPISODE_WINDOW)
