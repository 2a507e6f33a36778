"""The reward path of the env runners: frames in ``info`` -> reward worker pool -> episode rewards.

:class:`VlmRewardCallback` is an RLlib callback (new API stack), not a forked sampling loop:

- ``on_episode_start`` / ``on_episode_step``: when a step's ``info`` carries a frame, the item ending
  with it (frame, (previous, current) pair or window, per ``reward.item_kind``) is submitted at once
  through :meth:`RewardClient.submit`; scoring overlaps the rest of the rollout;
- ``on_sample_end``: waits for every outstanding score of the returned episode chunks, composes the
  per-step rewards (:mod:`vlmrl.actors.reward_composer`; weighted components, potential differences,
  optional env reward) and writes them with ``episode.set_rewards`` before the learner sees them.

Nothing is silently zero: a reward the client could not obtain after its retries fails the sample
(:class:`RewardPathError`, raised in the env runner so ``algo.train()`` fails). Client retries,
failures and timeouts, reward latency, the wait at sample end, outstanding requests, cached answers,
reward components and the reward-vs-ground-truth correlation go through RLlib's MetricsLogger
(``result['env_runners']['vlmrl']``). The last finished episode's :class:`RewardTimeline` is kept
for logging (:meth:`pop_timeline`).

Construct through :func:`reward_callback_factory` (RLlib instantiates callback classes without
arguments; the settings ride in a ``functools.partial``).
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from typing import Any, Dict, List, Optional

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from vlmrl.actors.episode_rewards import EpisodeRewardTracker, RewardPathError
from vlmrl.actors.ground_truth_metrics import EPISODE_WINDOW, METRICS_KEY, pearson
from vlmrl.actors.reward_composer import RewardComposer
from vlmrl.actors.timeline import RewardTimeline
from vlmrl.envs import info_keys as K

log = logging.getLogger(__name__)

_CLIENT_COUNTERS = ("retries", "failures", "timeouts", "late_answers", "workers_left")


class VlmRewardCallback(RLlibCallback):
    """Replaces the rewards of sampled episodes with the reward worker pool's (see module doc).

    ``settings``: ``reward`` (RewardConfig fields), ``client`` (ClientConfig fields), ``registry``
    (``{"name", "namespace"}`` of the pool's registry, or None with ``reward.addresses``), ``scorer``
    (the scorer name sent with each request; workers running another scorer refuse it).
    """

    def __init__(self, settings: Dict[str, Any]) -> None:
        super().__init__()
        self.settings = settings
        r = settings["reward"]
        self.item_kind = str(r["item_kind"])
        if self.item_kind not in ("frame", "pair", "window"):
            raise ValueError(f"reward.item_kind must be frame, pair or window when the actors start "
                             f"(resolve 'auto' first), got {self.item_kind!r}")
        self.composer = RewardComposer(r["components"], r.get("potential_components") or [])
        self.env_reward_weight = float(r.get("env_reward_weight", 0.0))
        self.window_size = int(r.get("window_size", 4))
        self.wait_timeout_s = float(r.get("wait_timeout_s", 600.0))
        self.keep_frames = bool(r.get("keep_frames_in_infos", False))
        self.timeline_max_frames = int(r.get("timeline_max_frames", 12))
        self._client = None
        self._trackers: Dict[str, EpisodeRewardTracker] = {}
        self._last_client_counts: Dict[str, int] = {}
        self._last_no_worker_wait = 0.0
        self._timeline: Optional[RewardTimeline] = None

    # ------------------------------------------------------------------ client
    @property
    def client(self):
        if self._client is None:
            from omegaconf import OmegaConf

            from vlmrl.reward_workers.client import RewardClient
            from vlmrl.reward_workers.config import ClientConfig

            client_cfg = OmegaConf.merge(OmegaConf.structured(ClientConfig), self.settings.get("client") or {})
            addresses = self.settings["reward"].get("addresses")
            scorer = self.settings.get("scorer") or ""
            if addresses:
                self._client = RewardClient(client_cfg, addresses=list(addresses), scorer=scorer)
            else:
                from vlmrl.reward_workers.registry import RegistryView

                reg = self.settings.get("registry")
                if not reg:
                    raise RewardPathError("the reward callback needs reward.addresses or the pool's registry")
                self._client = RewardClient(client_cfg, registry=RegistryView(reg["name"], reg["namespace"]),
                                            scorer=scorer)
        return self._client

    def close(self) -> None:
        """Close the reward client (the train command calls this on every env runner before stopping)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def pop_timeline(self) -> Optional[RewardTimeline]:
        """The last finished episode's timeline (frames subsampled), or None; cleared by the call."""
        tl, self._timeline = self._timeline, None
        return tl.compact() if tl is not None else None

    # ------------------------------------------------------------------ sampling
    def on_episode_start(self, *, episode, **kwargs) -> None:
        self._trackers[episode.id_] = EpisodeRewardTracker(
            episode.id_, self.item_kind, self.composer, self.client.submit,
            window_size=self.window_size, timeline_max_frames=self.timeline_max_frames)
        self._observe(episode, frame_required=True)

    def on_episode_step(self, *, episode, **kwargs) -> None:
        self._observe(episode, frame_required=False)

    def _observe(self, episode, frame_required: bool) -> None:
        info = episode.get_infos(-1)
        tracker = self._trackers.get(episode.id_)
        if tracker is None:
            raise RewardPathError(f"episode {episode.id_} stepped without on_episode_start")
        if info.get(K.HAS_FRAME) and K.FRAME in info:
            tracker.timeline.task_text = str(info.get(K.TASK_TEXT, ""))
            tracker.add_frame(int(episode.t), info[K.FRAME], str(info.get(K.TASK_TEXT, "")))
        elif frame_required:
            raise RewardPathError(f"the env returned no frame in its reset info (keys {sorted(info)}); the "
                                  f"VLM reward needs env.capture_frames=true")
        elif episode.is_done:
            raise RewardPathError(f"episode {episode.id_} ended at step {episode.t} without a frame; the env must "
                                  f"render one at episode end (see vlmrl.envs.info_keys.frame_due)")

    # ------------------------------------------------------------------ sample end
    def on_sample_end(self, *, samples, metrics_logger=None, **kwargs) -> None:
        start = time.perf_counter()
        outstanding = sum(not f.done() for tr in self._trackers.values() for f in tr.pending_futures())
        deadline = time.monotonic() + self.wait_timeout_s
        latencies: List[float] = []
        cached: List[bool] = []
        step_r, step_gt, frame_score, frame_gt = [], [], [], []
        term_sums: Dict[str, float] = {k: 0.0 for k in self.composer.weights}
        n_steps = 0
        episode_returns = []
        for chunk in samples:
            tracker = self._trackers.get(chunk.id_)
            if tracker is None:
                raise RewardPathError(f"episode chunk {chunk.id_} has no reward bookkeeping (no on_episode_start seen)")
            n = len(chunk)
            res = tracker.assign(chunk.t_started, n, deadline)
            env_r = np.asarray(chunk.get_rewards(), np.float64).reshape(n)
            new = res.rewards + self.env_reward_weight * env_r
            with warnings.catch_warnings():
                # RLlib checks a finalized episode's new rewards with Box.contains(np.float32 scalar), which makes
                # gymnasium warn "Casting input x to numpy array" once an iteration; the values are right.
                warnings.filterwarnings("ignore", message=".*Casting input x to numpy array", category=UserWarning)
                chunk.set_rewards(new_data=new.astype(np.float32) if chunk.is_numpy else [float(x) for x in new],
                                  at_indices=slice(0, n))
            infos = chunk.get_infos()[-n:] if n else []
            gt = np.asarray([float(i.get(K.ENV_REWARD, np.nan)) for i in infos], np.float64)
            by_step = {chunk.t_started + 1 + i: g for i, g in enumerate(gt)}
            if not self.keep_frames:
                for i in infos:
                    i.pop(K.FRAME, None)
            step_r.append(new)
            step_gt.append(gt)
            frame_score.extend(res.scores)
            frame_gt.extend(by_step[t] for t in res.frame_steps)
            latencies += res.latencies_ms
            cached += res.cached
            for k, v in res.terms.items():
                term_sums[k] += float(v.sum())
            n_steps += n
            success = bool(infos[-1].get(K.SUCCESS, False)) if (infos and chunk.is_done) else None
            tracker.timeline.add_steps(new, gt, success)
            if chunk.is_done:
                episode_returns.append(float(np.sum(tracker.timeline.step_rewards)))
                self._timeline = tracker.timeline
                del self._trackers[chunk.id_]
        wait_ms = (time.perf_counter() - start) * 1e3
        if metrics_logger is not None:
            self._log(metrics_logger, wait_ms, outstanding, latencies, cached, step_r, step_gt,
                      frame_score, frame_gt, term_sums, n_steps, episode_returns)

    def _log(self, m, wait_ms, outstanding, latencies, cached, step_r, step_gt, frame_score, frame_gt,
             term_sums, n_steps, episode_returns) -> None:
        key = METRICS_KEY
        m.log_value((key, "reward_wait_ms"), wait_ms, reduce="mean", window=20)
        m.log_value((key, "outstanding_at_sample_end"), float(outstanding), reduce="mean", window=20)
        m.log_value((key, "frames_scored"), float(len(cached)), reduce="sum")
        if latencies:
            m.log_value((key, "reward_latency_ms"), float(np.mean(latencies)), reduce="mean", window=20)
            m.log_value((key, "reward_latency_p99_ms"), float(np.percentile(latencies, 99)), reduce="mean", window=20)
        if cached:
            m.log_value((key, "cached_fraction"), float(np.mean(cached)), reduce="mean", window=20)
        if n_steps:
            for k, v in term_sums.items():
                m.log_value((key, f"component_{k}"), v / n_steps, reduce="mean", window=20)
        for r in episode_returns:
            m.log_value((key, "episode_reward_return"), r, reduce="mean", window=EPISODE_WINDOW)
        if step_r:
            c = pearson(np.concatenate(step_r), np.concatenate(step_gt))
            if c is not None:
                m.log_value((key, "pearson_step_reward_vs_dense"), c, reduce="mean", window=20)
        c = pearson(np.asarray(frame_score), np.asarray(frame_gt))
        if c is not None:
            m.log_value((key, "pearson_frame_score_vs_dense"), c, reduce="mean", window=20)
        if self._client is not None:
            stats = self._client.stats()
            for name in _CLIENT_COUNTERS:
                delta = int(stats.get(name, 0)) - self._last_client_counts.get(name, 0)
                self._last_client_counts[name] = int(stats.get(name, 0))
                m.log_value((key, f"client_{name}"), float(delta), reduce="sum")
            m.log_value((key, "client_queued"), float(stats.get("queued", 0)), reduce="mean", window=20)
            # issue 22: time the env runner's requests waited with no reward worker (the pool replacing dead ones),
            # and the bound after which they fail (client.no_worker_wait_s)
            waited = float(stats.get("no_worker_wait_s", 0.0))
            m.log_value((key, "client_no_worker_wait_s"), waited - self._last_no_worker_wait, reduce="sum")
            self._last_no_worker_wait = waited
            m.log_value((key, "client_no_worker_bound_s"), float(stats.get("no_worker_wait_bound_s", 0.0)),
                        reduce="max")


def reward_callback_factory(settings: Dict[str, Any]):
    """What ``config.callbacks(callbacks_class=...)`` takes: builds a :class:`VlmRewardCallback` per env runner."""
    VlmRewardCallback(settings)  # validate in the driver, before any env runner starts
    return functools.partial(VlmRewardCallback, settings)


def callbacks_of(env_runner: Any) -> List[VlmRewardCallback]:
    """The reward callbacks of an env runner (for ``foreach_env_runner``: timelines, closing clients)."""
    return [c for c in getattr(env_runner, "_callbacks", []) or [] if isinstance(c, VlmRewardCallback)]


CLOSE_TIMEOUT_S = 30.0


def close_reward_clients(algo: Any, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close the reward clients of every env runner of ``algo`` (call before ``algo.stop()``). A runner that does not
    answer within ``timeout_s`` (still sampling when a run is interrupted, e.g. Ctrl-C on a loaded machine) is left to
    ``algo.stop()``, which ends its process and clients with it, instead of holding the shutdown until it finishes."""
    algo.env_runner_group.foreach_env_runner(lambda er: [cb.close() for cb in callbacks_of(er)],
                                             timeout_seconds=float(timeout_s))
