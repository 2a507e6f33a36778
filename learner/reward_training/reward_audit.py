"""Reward audit: what a reward pays for behaviours that make no progress, next to what it pays for successes.

Role in the reward path: a gate before an RL run (``vlmrl audit-reward``). A policy trained from scratch finds the
states a reward over-pays; this module finds them first, with scripted behaviours (:mod:`vlmrl.envs.behaviours`)
rolled out on held-out seeds and scored by any reward-service scorer -- in-process or through reward workers --
through the scorer plug-in interface (:func:`vlmrl.learner.reward_training.reward_eval.scorer_predictor` builds the frame / pair /
window items a scorer's item kind asks for).

Per behaviour (:func:`summarise`): the true success rate (simulator ground truth at the last state), the scorer's
last-frame progress (its ``progress`` component, else its reward) and completion, the **exploit margin** = mean
last-frame progress of the behaviour / mean last-frame progress of the successful episodes of the ``success``
behaviours, and the share of episodes whose last frame the scorer calls complete (completion > threshold). A
``non_progress`` episode that reached the goal by accident (true success at its end) is left out of its
behaviour's numbers (and counted in ``accidental_successes``). So is one whose object really moved towards the goal
(``accidental_progress``): with ``real_progress_share`` set, a ``non_progress`` episode whose ground-truth object
progress at its end (``1 - object-to-goal distance / its start value``, from the recorded states) reaches that share
of the successful episodes' mean made real progress by the simulator's measure -- e.g. a wrong-goal push whose cube
stopped at the edge of the goal -- and paying for it is right, not an exploit. Behaviours keep both numbers
(``exploit_margin`` of the counted episodes, ``exploit_margin_all`` of every episode without a true success).
:func:`gate` lists the thresholds a ``non_progress`` behaviour exceeds.

Levels are not the whole story: a preference labeller built on the scorer (RL-VLM-F's pair answers) and PPO on it
as a potential use only its **order**. :func:`dense_order` measures it against the env's normalised dense reward
at each scored frame (what the preference mode's ground-truth oracle ranks by; recorded with every behaviour
episode): the share of frame pairs, across all behaviours, that the scorer orders like the dense reward -- the
agreement such a labeller would reach with the oracle on these states -- and the behaviour pairs it orders worst
(e.g. an arm resting on the goal above an arm at the object's push pose). ``audit.min_dense_agreement`` gates it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from vlmrl.envs.dataset import Episode
from vlmrl.learner.reward_training.reward_eval import Predictor


@dataclass
class ScoredEpisode:
    """One behaviour episode with the scorer's per-frame outputs (``completion`` None: the scorer has none)."""

    behaviour: str
    category: str
    seed: int
    success: bool
    """Simulator ground truth at the episode's last state."""
    frame_steps: np.ndarray
    progress: np.ndarray
    """The scorer's ``progress`` component per frame, else its reward."""
    completion: Optional[np.ndarray]
    value_name: str
    """``progress`` or ``reward``: which output ``progress`` holds."""
    object_progress: Optional[float] = None
    """Ground truth at the last state: ``1 - object-to-goal distance / its start value`` (None: no known layout)."""
    dense: Optional[np.ndarray] = None
    """The env's normalised dense reward at each scored frame's state (None: not recorded)."""


def score_episode(ep: Episode, predict: Predictor) -> ScoredEpisode:
    """Score every frame of a behaviour episode (items built per the scorer's kind, as in the RL reward path)."""
    from vlmrl.envs.behaviours import object_goal_distance
    from vlmrl.learner.reward_training.lrm_data import state_values

    none = np.zeros(0, int)
    pred = predict(ep, none, none)
    value, name = (pred.progress, "progress") if pred.progress is not None else (pred.reward, "reward")
    d = object_goal_distance(ep.env_id, np.asarray(ep.states)) if ep.states is not None else None
    obj = None if d is None or len(d) == 0 or d[0] <= 1e-6 else float(1.0 - d[-1] / d[0])
    return ScoredEpisode(behaviour=str(ep.meta.get("behaviour", ep.source)), category=str(ep.meta.get("category", "")),
                         seed=int(ep.seed), success=bool(ep.success[-1]), frame_steps=np.asarray(ep.frame_steps),
                         progress=np.asarray(value, float),
                         completion=None if pred.completion is None else np.asarray(pred.completion, float),
                         value_name=name, object_progress=obj,
                         dense=state_values(ep) if ep.num_steps else None)


def _mean(xs: Sequence[float]) -> Optional[float]:
    return float(np.mean(xs)) if len(xs) else None


def summarise(records: Sequence[ScoredEpisode], complete_threshold: float = 0.5,
              trained_on: Sequence[str] = (), real_progress_share: Optional[float] = None,
              dense_tie: float = 0.005) -> Dict[str, Any]:
    """Per-behaviour audit numbers (module doc), the successes' reference progress and the scorer's order against
    the env's dense reward (:func:`dense_order`, ties <= ``dense_tie``)."""
    ref_eps, reference, true_ref, bar = _references(records, real_progress_share)
    out: Dict[str, Any] = {"success_progress": reference, "success_episodes": len(ref_eps),
                           "success_object_progress": true_ref, "real_progress_bar": bar,
                           "dense_order": dense_order(records, dense_tie),
                           "value": records[0].value_name if records else "progress", "behaviours": {}}

    def ratio(x: Optional[float]) -> Optional[float]:
        return (x / reference) if (x is not None and reference is not None and reference > 0) else None

    for name in dict.fromkeys(r.behaviour for r in records):
        eps = [r for r in records if r.behaviour == name]
        cat = eps[0].category
        failed = [r for r in eps if not r.success]
        moved = [r for r in failed if _really_moved(r, bar)]
        judged = [r for r in failed if not _really_moved(r, bar)]
        counted = [r for r in eps if r.success] if cat == "success" else judged
        last_p = [float(r.progress[-1]) for r in counted]
        has_comp = all(r.completion is not None for r in eps)
        last_c = [float(r.completion[-1]) for r in counted] if has_comp else []
        mean_p = _mean(last_p)
        margin = ratio(mean_p)
        true_obj = [r.object_progress for r in eps if r.object_progress is not None]
        out["behaviours"][name] = {
            "category": cat, "episodes": len(eps), "counted_episodes": len(counted),
            "true_success": float(np.mean([r.success for r in eps])),
            "accidental_successes": sum(r.success for r in eps) if cat != "success" else 0,
            "accidental_progress": len(moved) if cat != "success" else 0,
            "object_progress": _mean(true_obj),
            "exploit_margin_all": ratio(_mean([float(r.progress[-1]) for r in failed])) if cat != "success" else None,
            "last_progress": mean_p, "last_progress_max": max(last_p) if last_p else None,
            "last_completion": _mean(last_c) if has_comp else None,
            "complete_share": (_mean([c > complete_threshold for c in last_c]) if has_comp else None),
            "exploit_margin": margin, "in_training_data": name in set(trained_on),
            "last_dense": _mean([float(r.dense[-1]) for r in counted if r.dense is not None]),
            "seeds": [r.seed for r in eps],
        }
    return out


def _references(records: Sequence[ScoredEpisode], real_progress_share: Optional[float]):
    """The successful episodes of ``success`` behaviours, their mean last-frame progress and ground-truth object
    progress, and the ground-truth bar above which a failed episode made real progress (None: no bar)."""
    ref_eps = [r for r in records if r.category == "success" and r.success]
    reference = _mean([float(r.progress[-1]) for r in ref_eps])
    true_ref = _mean([r.object_progress for r in ref_eps if r.object_progress is not None])
    bar = None if real_progress_share is None or true_ref is None or true_ref <= 0 else real_progress_share * true_ref
    return ref_eps, reference, true_ref, bar


def _really_moved(r: ScoredEpisode, bar: Optional[float]) -> bool:
    return bar is not None and r.object_progress is not None and r.object_progress >= bar


def over_paid(records: Sequence[ScoredEpisode], max_margin: float, complete_threshold: float = 0.5,
              real_progress_share: Optional[float] = None) -> List[ScoredEpisode]:
    """The episodes the audit's gate would count against the scorer, one by one: ``non_progress`` episodes judged
    as such by ground truth too (no success at the end, object not really moved; :func:`summarise`) whose last
    frame the scorer pays more than ``max_margin`` of the successes' progress or calls complete -- the hard
    negatives worth mining (``vlmrl audit-reward --mine-negatives``). Empty when ``records`` hold no success."""
    _, reference, _, bar = _references(records, real_progress_share)
    if reference is None or reference <= 0:
        return []
    return [r for r in records if r.category == "non_progress" and not r.success and not _really_moved(r, bar)
            and (float(r.progress[-1]) > max_margin * reference
                 or (r.completion is not None and float(r.completion[-1]) > complete_threshold))]


def _ordered(pa: np.ndarray, pb: np.ndarray, da: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Per pair: 1 when the scorer orders it like the dense reward, 0 when reversed, 0.5 on a scorer tie."""
    return np.where(pa == pb, 0.5, (np.sign(pa - pb) == np.sign(da - db)).astype(float))


def dense_order(records: Sequence[ScoredEpisode], tie: float = 0.005, pairs: int = 20000, seed: int = 0,
                worst: int = 5, min_pairs: int = 3) -> Optional[Dict[str, Any]]:
    """How the scorer orders the behaviours' states against the env's normalised dense reward (module doc).

    ``frame_agreement``: ``pairs`` uniform pairs of all scored frames (any behaviour, any episode; pairs whose dense
    values differ by <= ``tie`` dropped, as the oracle labeller calls them ties) ordered like the dense reward
    (scorer ties count half). ``last_frame_agreement``: the same over every pair of episodes' last frames.
    ``misordered``: behaviour pairs (``higher`` has the higher dense reward at the pair's last frames) whose
    last-frame pairs (at least ``min_pairs``) the scorer reverses in more than half the cases, worst first. None: no
    dense values."""
    recs = [r for r in records if r.dense is not None and len(r.dense) == len(r.progress) and len(r.progress)]
    if len(recs) < 2:
        return None
    p = np.concatenate([r.progress for r in recs])
    d = np.concatenate([r.dense for r in recs]).astype(float)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(p), pairs), rng.integers(0, len(p), pairs)
    keep = np.abs(d[a] - d[b]) > tie
    frame = _ordered(p[a[keep]], p[b[keep]], d[a[keep]], d[b[keep]])
    lp = np.array([float(r.progress[-1]) for r in recs])
    ld = np.array([float(r.dense[-1]) for r in recs])
    i, j = np.triu_indices(len(recs), 1)
    keep = np.abs(ld[i] - ld[j]) > tie
    i, j = i[keep], j[keep]
    last = _ordered(lp[i], lp[j], ld[i], ld[j])
    cells: Dict[tuple, List[float]] = {}
    for x, y, ok in zip(i, j, last):
        hi, lo = (x, y) if ld[x] > ld[y] else (y, x)
        if recs[hi].behaviour != recs[lo].behaviour:
            cells.setdefault((recs[hi].behaviour, recs[lo].behaviour), []).append(1.0 - ok)
    bad = sorted(((k, float(np.mean(v)), len(v)) for k, v in cells.items()
                  if len(v) >= min_pairs and np.mean(v) > 0.5),
                 key=lambda t: (-t[1], -t[2]))
    return {"tie": tie, "frame_pairs": int(len(frame)),
            "frame_agreement": float(frame.mean()) if len(frame) else None,
            "last_frame_pairs": int(len(last)),
            "last_frame_agreement": float(last.mean()) if len(last) else None,
            "misordered": [{"higher": h, "lower": l_, "reversed_share": w, "pairs": n} for (h, l_), w, n in bad[:worst]]}


def gate(summary: Mapping[str, Any], max_margin: float, max_complete_share: float,
         min_dense_agreement: Optional[float] = None) -> List[str]:
    """The thresholds the audit exceeds, one line each (empty: it passes)."""
    bad = _order_violations(summary.get("dense_order"), min_dense_agreement)
    if summary["success_progress"] is None:
        return bad + ["no successful episode of a success behaviour: nothing to compare with"]
    if summary["success_progress"] <= 0:
        return bad + [f"successes' last-frame {summary['value']} is {summary['success_progress']:.3f} <= 0: "
                      "exploit margins are undefined"]
    for name, b in summary["behaviours"].items():
        if b["category"] != "non_progress" or not b["counted_episodes"]:
            continue
        if b["exploit_margin"] is not None and b["exploit_margin"] > max_margin:
            bad.append(f"{name}: exploit margin {b['exploit_margin']:.2f} > {max_margin:g}")
        if b["complete_share"] is not None and b["complete_share"] > max_complete_share:
            bad.append(f"{name}: called complete in {b['complete_share']:.0%} of episodes > {max_complete_share:.0%}")
    return bad


def _order_violations(order: Optional[Mapping[str, Any]], min_agreement: Optional[float]) -> List[str]:
    if min_agreement is None:
        return []
    if not order or order["frame_agreement"] is None:
        return ["audit.min_dense_agreement is set but no frame pairs carry a dense reward to order by"]
    if order["frame_agreement"] < min_agreement:
        return [f"frame pairs ordered like the env's dense reward: {order['frame_agreement']:.2f} < {min_agreement:g}"]
    return []


def _f(v: Any, fmt: str = ".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def format_summary(task: str, summary: Mapping[str, Any]) -> str:
    """A text table of one task's audit."""
    bar = summary.get("real_progress_bar")
    lines = [f"audit {task}: successes' last-frame {summary['value']} {_f(summary['success_progress'], '.3f')} "
             f"({summary['success_episodes']} successful episodes)"
             + ("" if bar is None else f"; non-progress episodes whose object moved >= {bar:.2f} of the way to the "
                f"goal (ground truth) are left out as real progress"),
             f"{'behaviour':<26}{'category':<14}{'eps':>4}{'left out':>9}{'true succ':>10}{'obj moved':>10}"
             f"{'dense':>7}{'last prog':>10}{'last comp':>10}{'margin':>8}{'called done':>12}  trained"]
    for name, b in summary["behaviours"].items():
        left = b["accidental_successes"] + b.get("accidental_progress", 0)
        lines.append(f"{name:<26}{b['category']:<14}{b['counted_episodes']:>4}{left:>9}{b['true_success']:>10.2f}"
                     f"{_f(b.get('object_progress')):>10}{_f(b.get('last_dense')):>7}"
                     f"{_f(b['last_progress'], '.3f'):>10}{_f(b['last_completion'], '.3f'):>10}"
                     f"{_f(b['exploit_margin']):>8}{_f(b['complete_share'], '.0%'):>12}  "
                     f"{'yes' if b['in_training_data'] else 'no'}")
    order = summary.get("dense_order")
    if order:
        lines.append(f"order vs the env's dense reward (what a preference labeller on it would agree with the oracle): "
                     f"frame pairs {_f(order['frame_agreement'])} ({order['frame_pairs']}), last frames "
                     f"{_f(order['last_frame_agreement'])} ({order['last_frame_pairs']})")
        for m in order["misordered"]:
            lines.append(f"  reversed: {m['higher']} (higher dense) below {m['lower']} in {m['reversed_share']:.0%} "
                         f"of {m['pairs']} last-frame pairs")
    return "\n".join(lines)


def plot_progress(records_by_task: Mapping[str, Sequence[ScoredEpisode]], path: Any) -> None:
    """PNG: the scorer's progress over time per behaviour (mean over its episodes, thin lines per episode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(records_by_task)
    fig, axes = plt.subplots(len(tasks), 1, figsize=(9, 4.5 * len(tasks)), squeeze=False)
    for ax, task in zip(axes[:, 0], tasks):
        recs = records_by_task[task]
        names = list(dict.fromkeys(r.behaviour for r in recs))
        cmap = plt.get_cmap("tab20")
        for k, name in enumerate(names):
            eps = [r for r in recs if r.behaviour == name]
            color = cmap(k % 20)
            style = "-" if eps[0].category == "success" else "--"
            for r in eps:
                ax.plot(r.frame_steps, r.progress, color=color, alpha=0.25, lw=0.8, ls=style)
            n = min(len(r.progress) for r in eps)
            ax.plot(eps[0].frame_steps[:n], np.mean([r.progress[:n] for r in eps], axis=0), color=color, lw=2,
                    ls=style, label=name)
        ax.set_title(f"{task}: scorer {recs[0].value_name if recs else ''} over time per behaviour")
        ax.set_xlabel("env step")
        ax.set_ylabel(recs[0].value_name if recs else "progress")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


class ClientScorer:
    """A reward-service client in the shape of a scorer (``item_kind``, ``frames_per_item``, ``score_batch``), so
    the audit scores through reward workers with the same item building as in-process."""

    def __init__(self, client: Any, item_kind: str, window_size: int = 4) -> None:
        from vlmrl.reward_workers.scorers.base import ItemKind

        self.client, self.item_kind = client, ItemKind(item_kind)
        self.frames_per_item = {ItemKind.FRAME: 1, ItemKind.PAIR: 2}.get(self.item_kind, window_size)

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list:
        from vlmrl.reward_workers.scorers.base import ScoreResult

        out: list = [None] * len(items)
        by_task: Dict[str, List[int]] = {}
        for i, t in enumerate(tasks):
            by_task.setdefault(t, []).append(i)
        for task, idx in by_task.items():
            res = self.client.score(task, [items[i] for i in idx], kind=self.item_kind.value)
            for i, r in zip(idx, res):
                out[i] = ScoreResult(reward=r.reward, components=dict(r.components), label=r.label)
        return out


def audit_task(env_cfg: Any, task: str, predict: Predictor, names: Sequence[str], episodes_per_behaviour: int,
               seed: int, frame_stride: int, max_steps: Optional[int] = None,
               log: Callable[[str], None] = print) -> List[ScoredEpisode]:
    """Roll out the behaviours ``names`` (empty: the whole library) of ``task`` on held-out seeds ``seed, seed + 1,
    ...`` and score each episode as it ends."""
    from vlmrl.envs.behaviours import iter_behaviour_episodes

    records: List[ScoredEpisode] = []
    for ep in iter_behaviour_episodes(env_cfg, task, names, episodes_per_behaviour, seed, frame_stride, max_steps):
        records.append(score_episode(ep, predict))
        if len(records) % 10 == 0:
            log(f"audit {task}: {len(records)} episodes scored")
    return records


def recorded_episodes(dirs: Sequence[str], names: Sequence[str] = ()) -> Dict[str, List[Episode]]:
    """Behaviour episodes (``source`` = ``behaviour``, or ``policy``: a run's own, policy_episodes.py) of recorded
    datasets per task (env id), optionally only the behaviours ``names``."""
    from vlmrl.envs.dataset import iter_episodes

    out: Dict[str, List[Episode]] = {}
    for d in dirs:
        for ep in iter_episodes(d, where=lambda e: e.get("source") in ("behaviour", "policy") and
                                (not names or e.get("meta", {}).get("behaviour") in names)):
            out.setdefault(ep.env_id, []).append(ep)
    return out

