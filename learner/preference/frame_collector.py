"""Env-runner side of the preference mode: keeps the frames episodes render, for pair labelling.

:class:`PreferenceFrameCollector` is an RLlib callback (new API stack) next to the reward callback:
on every step whose ``info`` carries a frame it keeps a copy with the task text and the
ground-truth state values (normalised dense reward, success) in a bounded per-runner deque; the driver drains it after each training
iteration with ``foreach_env_runner(lambda er: [c.pop_frames() for c in collectors_of(er)])``.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Any, List

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from vlmrl.envs import info_keys as K
from vlmrl.learner.preference.frame_buffer import FrameRecord


class PreferenceFrameCollector(RLlibCallback):
    """Copies rendered frames (+ task, ground-truth dense reward) out of episodes for the labeller (see module doc)."""

    def __init__(self, max_frames: int = 512) -> None:
        super().__init__()
        if int(max_frames) < 1:
            raise ValueError(f"preference.frames_per_runner must be >= 1, got {max_frames}")
        self._frames: deque[FrameRecord] = deque(maxlen=int(max_frames))

    def _keep(self, episode) -> None:
        info = episode.get_infos(-1)
        if info.get(K.HAS_FRAME) and K.FRAME in info:
            success = info.get(K.SUCCESS)
            self._frames.append(FrameRecord(np.array(info[K.FRAME], np.uint8, copy=True), str(info.get(K.TASK_TEXT, "")),
                                            float(info.get(K.ENV_REWARD, np.nan)), str(episode.id_), int(episode.t),
                                            None if success is None else bool(success)))

    def on_episode_start(self, *, episode, **kwargs) -> None:
        self._keep(episode)

    def on_episode_step(self, *, episode, **kwargs) -> None:
        self._keep(episode)

    def pop_frames(self) -> List[FrameRecord]:
        """The frames kept since the last call (oldest first); clears the runner's buffer."""
        out = list(self._frames)
        self._frames.clear()
        return out


def frame_collector_factory(max_frames: int):
    """What ``config.callbacks(callbacks_class=[...])`` takes."""
    return functools.partial(PreferenceFrameCollector, int(max_frames))


def collectors_of(env_runner: Any) -> List[PreferenceFrameCollector]:
    return [c for c in getattr(env_runner, "_callbacks", []) or [] if isinstance(c, PreferenceFrameCollector)]


def drain_frames(algo: Any) -> List[FrameRecord]:
    """Every env runner's kept frames (local and remote runners)."""
    found = algo.env_runner_group.foreach_env_runner(lambda er: [c.pop_frames() for c in collectors_of(er)])
    return [r for per_runner in found for per_cb in per_runner for r in per_cb]
