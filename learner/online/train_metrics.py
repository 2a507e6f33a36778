"""What ``vlmrl train`` logs: RLlib result dicts and reward-worker status -> flat, prefixed scalars.

Prefixes (CleanRL style): ``charts/`` (episode return, ground-truth success, env steps/s),
``losses/`` (PPO learner losses), ``reward/`` (the reward path's metrics, logged by the env
runners' :class:`~vlmrl.actors.reward_callback.VlmRewardCallback` through RLlib's MetricsLogger),
``workers/`` (reward worker latency, throughput, queue depth, cache hit rate, client retries/failures).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Tuple

from vlmrl.actors.ground_truth_metrics import METRICS_KEY

_CHARTS = {"episode_return_mean": "episode_return_mean", "episode_len_mean": "episode_len_mean",
           "num_episodes": "episodes_this_iter"}
_LOSSES = ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "total_loss", "vf_explained_var")
_GROUND_TRUTH = {"gt_success": "charts/gt_success_rate", "gt_final_env_reward": "charts/gt_final_env_reward"}
_WORKER_SIDE = ("client_retries", "client_failures", "client_timeouts", "client_late_answers", "client_workers_left",
                "client_queued", "client_no_worker_wait_s", "client_no_worker_bound_s")


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def scalars_from_result(result: Mapping[str, Any]) -> Dict[str, float]:
    """The prefixed scalars of one ``algo.train()`` result."""
    out: Dict[str, float] = {}
    er = result.get("env_runners", {}) or {}
    for src, dst in _CHARTS.items():
        if (v := _num(er.get(src))) is not None:
            out[f"charts/{dst}"] = v
    if (v := _num(er.get("num_env_steps_sampled_lifetime"))) is not None:
        out["charts/env_steps"] = v
    for name, v in (er.get(METRICS_KEY, {}) or {}).items():
        v = _num(v)
        if v is None:
            continue
        if name in _GROUND_TRUTH:
            out[_GROUND_TRUTH[name]] = v
        elif name in _WORKER_SIDE:
            out[f"workers/{name}"] = v
        else:
            out[f"reward/{name}"] = v
    learners = result.get("learners", {}) or {}
    module = learners.get("default_policy", {}) or {}
    for name in _LOSSES:
        if (v := _num(module.get(name))) is not None:
            out[f"losses/{name}"] = v
    return out


def scalars_from_worker_status(rows: Iterable[Mapping[str, Any]]) -> Dict[str, float]:
    """Pool-wide reward worker stats from ``RewardWorkerPool.status()`` rows."""
    rows = [r for r in rows if "error" not in r]
    if not rows:
        return {"workers/num_workers": 0.0}
    hits = sum(float(r.get("cache_hits", 0)) for r in rows)
    misses = sum(float(r.get("cache_misses", 0)) for r in rows)
    out = {
        "workers/num_workers": float(len(rows)),
        "workers/queue_depth": sum(float(r.get("queue_depth", 0)) for r in rows),
        "workers/items_per_s": sum(float(r.get("items_per_s", 0)) for r in rows),
        "workers/mean_latency_ms": sum(float(r.get("mean_latency_ms", 0)) for r in rows) / len(rows),
        "workers/mean_batch_size": sum(float(r.get("mean_batch_size", 0)) for r in rows) / len(rows),
        "workers/mean_scorer_ms": sum(float(r.get("mean_scorer_ms", 0)) for r in rows) / len(rows),
        "workers/items_total": sum(float(r.get("items", 0)) for r in rows),
    }
    if hits + misses > 0:
        out["workers/cache_hit_rate"] = hits / (hits + misses)
    return out


EXPLOITED_REWARD_CORR = -0.2
"""Below this correlation of the scorer's frame scores with the env's ground-truth dense reward, the console
line warns that the policy may be raising the learned reward without doing the task (reward hacking)."""


def console_line(iteration: int, total: int, s: Mapping[str, float]) -> str:
    """One progress line per iteration (with a reward-hacking warning, see ``EXPLOITED_REWARD_CORR``)."""
    def g(key: str, fmt: str, missing: str = "-") -> str:
        return format(s[key], fmt) if key in s else missing

    parts: List[str] = [
        f"iter {iteration}/{total}",
        f"env steps {g('charts/env_steps', '.0f')}",
        f"return {g('charts/episode_return_mean', '.3f')}",
        f"success {g('charts/gt_success_rate', '.2f')}",
    ]
    if "reward/reward_latency_ms" in s or "workers/num_workers" in s:
        parts.append(f"reward lat {g('reward/reward_latency_ms', '.1f')} ms, wait {g('reward/reward_wait_ms', '.0f')} ms, "
                     f"retries {g('workers/client_retries', '.0f')}, failures {g('workers/client_failures', '.0f')}")
        parts.append(f"workers {g('workers/num_workers', '.0f')}, queue {g('workers/queue_depth', '.0f')}, "
                     f"{g('workers/items_per_s', '.0f')} items/s")
        if "workers/pool_target" in s:  # the pool supervisor's view (issue 22)
            parts.append(pool_console_part(s))
    parts.append(f"{g('charts/env_steps_per_s', '.0f')} steps/s")
    if "charts/env_steps" not in s:
        parts.append("NO env steps sampled: env runners slower than train.sample_timeout_s (overloaded machine?)")
    corr = s.get("reward/pearson_frame_score_vs_dense")
    if corr is not None:
        parts.append(f"corr(score, gt) {corr:.2f}" + (" << ground truth disagrees: reward exploited?"
                                                       if corr < EXPLOITED_REWARD_CORR else ""))
    return " | ".join(parts)


def pool_scalars(health: Mapping[str, Any]) -> Dict[str, float]:
    """TensorBoard scalars of the pool supervisor's state (``RewardWorkerPool.health()``): target and live size,
    workers lost / replaced, autoscale events."""
    c = health.get("counters", {}) or {}
    out = {"workers/pool_target": float(health.get("target", 0)), "workers/pool_live": float(health.get("live", 0)),
           "workers/pool_starting": float(health.get("starting", 0))}
    for name in ("lost", "replaced", "start_failures", "scale_ups", "scale_downs"):
        out[f"workers/pool_{name}"] = float(c.get(name, 0))
    return out


def pool_console_part(s: Mapping[str, float]) -> str:
    """``pool 2/2, lost 1, replaced 1, scale +1/-0, no-worker wait 3.2 s (bound 60 s)`` for the console line."""
    part = (f"pool {s.get('workers/pool_live', 0):.0f}/{s['workers/pool_target']:.0f}, "
            f"lost {s.get('workers/pool_lost', 0):.0f}, replaced {s.get('workers/pool_replaced', 0):.0f}, "
            f"scale +{s.get('workers/pool_scale_ups', 0):.0f}/-{s.get('workers/pool_scale_downs', 0):.0f}")
    if "workers/client_no_worker_bound_s" in s:
        part += (f", no-worker wait {s.get('workers/client_no_worker_wait_s', 0):.1f} s "
                 f"(bound {s['workers/client_no_worker_bound_s']:g} s)")
    return part


def read_scalars(run_dir: str | Path) -> Dict[str, List[Tuple[int, float]]]:
    """The TensorBoard scalars a run wrote under ``<run_dir>/tb`` (all event files): ``{tag: [(step, value), ...]}``
    sorted by step. For summaries, benchmarks and tests that read a finished run back."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: Dict[str, List[Tuple[int, float]]] = {}
    for f in sorted((Path(run_dir) / "tb").iterdir()):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0})
        ea.Reload()
        for tag in ea.Tags()["scalars"]:
            out.setdefault(tag, []).extend((int(e.step), float(e.value)) for e in ea.Scalars(tag))
    return {tag: sorted(v) for tag, v in out.items()}
