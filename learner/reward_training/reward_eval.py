"""Reward-quality evaluation: how well a reward model's outputs match ground truth on held-out episodes.

Metrics (ground truth from :mod:`vlmrl.learner.reward_training.lrm_data`'s target rule):

* progress accuracy at tolerance ±Δ: fraction of frames of *successful* episodes with
  ``|predicted progress - true progress| <= Δ`` (the LRM paper's Figure 2 curve);
* completion precision / recall / F1 at a threshold (all frames of all episodes);
* contrastive accuracy: a PAIR scorer's ``contrastive`` (or ``preference``) component on frame
  pairs (a, b) from successful episodes in random order, correct when ``> 0.5`` iff b is later;
* preference accuracy: for the same pairs, the scorer's per-frame value (``progress`` component,
  else its reward) ranks the two frames in time order (ties count one half);
* value-order correlation: Spearman of predicted progress (and, separately, of the reward) vs
  time over the frames of each successful episode up to its first success, averaged over episodes.

A metric whose component a scorer does not produce is ``None`` (printed "n/a"). Episodes are
streamed; every predictor sees each episode once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
from scipy.stats import spearmanr

from vlmrl.envs.dataset import Episode
from vlmrl.learner.reward_training.lrm_data import TargetRule, completion_targets, first_success_step, pair_labels, progress_targets

DEFAULT_TOLERANCES = tuple(round(0.05 * k, 2) for k in range(1, 11))
CONTRASTIVE_KEYS = ("contrastive", "preference")


# --- pure metric functions -----------------------------------------------------------------
def progress_accuracy(pred: np.ndarray, true: np.ndarray, tolerances: Sequence[float]) -> np.ndarray:
    """Fraction of |pred - true| <= Δ for each Δ."""
    err = np.abs(np.asarray(pred, float) - np.asarray(true, float))
    if err.size == 0:
        return np.full(len(tolerances), np.nan)
    return np.array([(err <= d + 1e-9).mean() for d in tolerances])


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho; NaN when either side is constant or has < 2 points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def ordering_correct(v_a: np.ndarray, v_b: np.ndarray, b_later: np.ndarray) -> np.ndarray:
    """1 where the values order the pair like time does, 0.5 on ties, 0 otherwise."""
    v_a, v_b = np.asarray(v_a, float), np.asarray(v_b, float)
    return np.where(v_a == v_b, 0.5, ((v_b > v_a) == np.asarray(b_later, bool)).astype(float))


# --- predictions of one model on one episode -----------------------------------------------
@dataclass
class EpisodePredictions:
    """Per-frame outputs (None where the model has no such output) and contrastive outputs on pairs."""

    reward: np.ndarray
    progress: Optional[np.ndarray] = None
    completion: Optional[np.ndarray] = None
    contrastive: Optional[np.ndarray] = None


Predictor = Callable[[Episode, np.ndarray, np.ndarray], EpisodePredictions]
"""(episode, pair frame indices a, b) -> predictions for every frame and for the pairs (a[i], b[i])."""


def _component(results, key: str) -> Optional[np.ndarray]:
    if results and all(key in r.components for r in results):
        return np.array([r.components[key] for r in results], float)
    return None


def scorer_predictor(scorer, batch_size: int = 32, window_size: int = 4) -> Predictor:
    """Wrap a reward-service scorer: build FRAME / PAIR / WINDOW items from an episode's frames."""
    from vlmrl.reward_workers.scorers.base import ItemKind

    kind = scorer.item_kind
    w = scorer.frames_per_item or window_size

    def score(task: str, items: List[np.ndarray]):
        out = []
        for s in range(0, len(items), batch_size):
            chunk = items[s:s + batch_size]
            out.extend(scorer.score_batch([task] * len(chunk), chunk))
        return out

    def predict(ep: Episode, a: np.ndarray, b: np.ndarray) -> EpisodePredictions:
        fr = ep.frames
        n = len(fr)
        if kind == ItemKind.FRAME:
            items = [fr[i:i + 1] for i in range(n)]
        elif kind == ItemKind.PAIR:
            items = [fr[[max(i - 1, 0), i]] for i in range(n)]
        else:
            items = [fr[[max(j, 0) for j in range(i - w + 1, i + 1)]] for i in range(n)]
        res = score(ep.task, items)
        contrastive = None
        if kind == ItemKind.PAIR and len(a):
            pres = score(ep.task, [fr[[i, j]] for i, j in zip(a, b)])
            for key in CONTRASTIVE_KEYS:
                contrastive = _component(pres, key)
                if contrastive is not None:
                    break
        return EpisodePredictions(reward=np.array([r.reward for r in res], float),
                                  progress=_component(res, "progress"), completion=_component(res, "completion"),
                                  contrastive=contrastive)

    return predict


# --- accumulation --------------------------------------------------------------------------
@dataclass
class RewardMetrics:
    """Streams episodes' predictions and ground truth into the summary metrics of one model."""

    tolerances: Sequence[float] = DEFAULT_TOLERANCES
    threshold: float = 0.5
    prog_err: List[np.ndarray] = field(default_factory=list)
    has_progress: bool = True
    has_completion: bool = True
    has_contrastive: bool = True
    tp: int = 0
    fp: int = 0
    fn: int = 0
    cont_correct: List[np.ndarray] = field(default_factory=list)
    pref_correct: List[np.ndarray] = field(default_factory=list)
    spearman_progress: List[float] = field(default_factory=list)
    spearman_reward: List[float] = field(default_factory=list)
    frames: int = 0
    episodes: int = 0

    def add(self, ep: Episode, pred: EpisodePredictions, a: np.ndarray, b: np.ndarray, rule: TargetRule) -> None:
        n = len(ep.frames)
        for name, arr in (("reward", pred.reward), ("progress", pred.progress), ("completion", pred.completion)):
            if arr is not None and len(arr) != n:
                raise ValueError(f"predicted {name} has {len(arr)} values for {n} frames")
        self.frames += n
        self.episodes += 1
        self.has_progress &= pred.progress is not None
        self.has_completion &= pred.completion is not None
        self.has_contrastive &= pred.contrastive is not None or len(a) == 0
        if pred.completion is not None:
            yes, truth = pred.completion > self.threshold, completion_targets(ep) > 0.5
            self.tp += int((yes & truth).sum())
            self.fp += int((yes & ~truth).sum())
            self.fn += int((~yes & truth).sum())
        s_succ = first_success_step(ep)
        if s_succ is None:
            return
        true_p = progress_targets(ep, rule)
        value = pred.progress if pred.progress is not None else pred.reward
        if pred.progress is not None:
            self.prog_err.append(np.abs(pred.progress - true_p))
        upto = ep.frame_steps <= s_succ
        self.spearman_reward.append(rank_correlation(ep.frame_steps[upto], pred.reward[upto]))
        if pred.progress is not None:
            self.spearman_progress.append(rank_correlation(ep.frame_steps[upto], pred.progress[upto]))
        if len(a):
            label, _ = pair_labels(ep, a, b, rule, true_p)
            self.pref_correct.append(ordering_correct(value[a], value[b], label))
            if pred.contrastive is not None:
                self.cont_correct.append(((pred.contrastive > 0.5) == label).astype(float))

    def summary(self) -> Dict[str, object]:
        def mean(xs):
            xs = [x for x in xs if not math.isnan(x)]
            return float(np.mean(xs)) if xs else None

        err = np.concatenate(self.prog_err) if self.prog_err else np.zeros(0)
        acc = progress_accuracy(err, np.zeros_like(err), self.tolerances) if self.has_progress and err.size else None
        p, r, f1 = precision_recall_f1(self.tp, self.fp, self.fn)
        cat = lambda xs: float(np.concatenate(xs).mean()) if xs and sum(len(x) for x in xs) else None  # noqa: E731
        return {
            "episodes": self.episodes, "frames": self.frames,
            "progress_acc": None if acc is None else dict(zip(map(float, self.tolerances), map(float, acc))),
            "progress_mae": float(err.mean()) if self.has_progress and err.size else None,
            "completion_precision": p if self.has_completion else None,
            "completion_recall": r if self.has_completion else None,
            "completion_f1": f1 if self.has_completion else None,
            "contrastive_acc": cat(self.cont_correct) if self.has_contrastive else None,
            "preference_acc": cat(self.pref_correct),
            "spearman_progress": mean(self.spearman_progress) if self.has_progress else None,
            "spearman_reward": mean(self.spearman_reward),
        }


def sample_pairs(ep: Episode, n_pairs: int, rng: np.random.Generator, rule: TargetRule) -> tuple[np.ndarray, np.ndarray]:
    """Up to n_pairs random-order frame pairs of a successful episode whose order means progress."""
    n = len(ep.frames)
    if not ep.succeeded or n < 2 or n_pairs <= 0:
        return np.zeros(0, int), np.zeros(0, int)
    a = rng.integers(0, n, 4 * n_pairs)
    b = rng.integers(0, n, 4 * n_pairs)
    _, valid = pair_labels(ep, a, b, rule)
    return a[valid][:n_pairs], b[valid][:n_pairs]


def evaluate_predictors(episodes: Iterable[Episode], predictors: Mapping[str, Predictor],
                        tolerances: Sequence[float] = DEFAULT_TOLERANCES, threshold: float = 0.5,
                        pairs_per_episode: int = 16, rule: TargetRule = TargetRule(), seed: int = 0,
                        progress: Callable[[int], None] | None = None) -> Dict[str, Dict[str, object]]:
    """Run every predictor on every episode (streamed once) and summarise; same pairs for every predictor."""
    metrics = {name: RewardMetrics(tolerances=tuple(tolerances), threshold=threshold) for name in predictors}
    for k, ep in enumerate(episodes):
        rng = np.random.default_rng([seed, k])
        a, b = sample_pairs(ep, pairs_per_episode, rng, rule)
        for name, predict in predictors.items():
            metrics[name].add(ep, predict(ep, a, b), a, b, rule)
        if progress is not None:
            progress(k + 1)
    if any(m.episodes == 0 for m in metrics.values()):
        raise ValueError("no episodes to evaluate (check dataset_dirs, split and val_fraction)")
    return {name: m.summary() for name, m in metrics.items()}


# --- reporting -----------------------------------------------------------------------------
def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def format_table(results: Mapping[str, Mapping[str, object]], tolerances: Sequence[float] = DEFAULT_TOLERANCES) -> str:
    """Side-by-side text table of the metrics of several models."""
    names = list(results)
    rows = [(f"progress acc @±{d:g}", [None if r["progress_acc"] is None else r["progress_acc"][float(d)]
                                       for r in results.values()]) for d in tolerances]
    for key, title in (("progress_mae", "progress MAE"), ("completion_precision", "completion precision"),
                       ("completion_recall", "completion recall"), ("completion_f1", "completion F1"),
                       ("contrastive_acc", "contrastive acc"), ("preference_acc", "preference acc"),
                       ("spearman_progress", "Spearman(progress, t)"), ("spearman_reward", "Spearman(reward, t)")):
        rows.append((title, [r[key] for r in results.values()]))
    width = max(12, *(len(n) for n in names))
    lines = [f"{'metric':<24}" + "".join(f"{n:>{width + 2}}" for n in names)]
    for title, vals in rows:
        lines.append(f"{title:<24}" + "".join(f"{_fmt(v):>{width + 2}}" for v in vals))
    first = next(iter(results.values()))
    lines.append(f"({first['episodes']} episodes, {first['frames']} frames)")
    return "\n".join(lines)


def plot_accuracy_curves(results: Mapping[str, Mapping[str, object]], path) -> None:
    """PNG of progress accuracy vs tolerance, one curve per model (models without progress are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, r in results.items():
        if r["progress_acc"] is not None:
            tol, acc = zip(*sorted(r["progress_acc"].items()))
            ax.plot(tol, acc, marker="o", label=name)
    ax.set_xlabel("tolerance ±Δ")
    ax.set_ylabel("progress accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("Cumulative progress accuracy vs tolerance")
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scalar_items(results: Mapping[str, Mapping[str, object]], prefix: str = "eval_reward") -> Dict[str, float]:
    """Flat ``{tag: value}`` of every available metric, for TensorBoard."""
    out = {}
    for name, r in results.items():
        for key, v in r.items():
            if key == "progress_acc" and v is not None:
                for d, acc in v.items():
                    out[f"{prefix}/{name}/progress_acc@{d:g}"] = acc
            elif isinstance(v, float):
                out[f"{prefix}/{name}/{key}"] = v
    return out
