"""``vlmrl eval-reward [CONFIG] [key=value ...]``: compare scorers' reward quality on held-out episodes.

Reads section ``eval_reward``; each entry of ``eval_reward.scorers`` ({name, params}) is built
in-process with ``build_scorer``. Prints the metrics side by side and writes ``metrics.json``,
``progress_accuracy.png`` (accuracy vs tolerance), the resolved config and TensorBoard scalars
(``eval_reward/<scorer>/...`` under ``<out_dir>/tb``) into ``eval_reward.out_dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlmrl.system.commands.config_args import add_config_arguments, config_from_args
from vlmrl.system.config import save_resolved


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    sec = cfg.eval_reward
    if not sec.scorers:
        print("vlmrl eval-reward: no scorers: set eval_reward.scorers=[{name: ..., params: {...}}]", file=sys.stderr)
        return 2
    from vlmrl.learner.reward_training.lrm_data import dataset_config_problem

    problem = dataset_config_problem(sec.dataset_dirs, "eval_reward.dataset_dirs")
    if problem:
        print(f"vlmrl eval-reward: {problem}", file=sys.stderr)
        return 2
    from omegaconf import OmegaConf
    from torch.utils.tensorboard import SummaryWriter

    from vlmrl.learner.reward_training.lrm_data import TargetRule, iter_split_episodes
    from vlmrl.learner.reward_training.reward_eval import (evaluate_predictors, format_table, plot_accuracy_curves, scalar_items,
                                           scorer_predictor)
    from vlmrl.reward_workers.scorers.base import ScorerError, build_scorer

    predictors, scorers = {}, []
    try:
        for k, sc in enumerate(sec.scorers):
            scorer = build_scorer(sc.name, OmegaConf.to_container(sc.params, resolve=True))
            scorers.append(scorer)
            label = sc.name if sc.name not in predictors else f"{sc.name}#{k}"
            predictors[label] = scorer_predictor(scorer, sec.batch_size, sec.window_size)
        episodes = iter_split_episodes(list(sec.dataset_dirs), sec.split, sec.val_fraction, sec.split_seed,
                                       sec.max_episodes)
        results = evaluate_predictors(episodes, predictors, tolerances=list(sec.tolerances),
                                      threshold=sec.completion_threshold, pairs_per_episode=sec.pairs_per_episode,
                                      rule=TargetRule.from_config(sec), seed=sec.seed)
    except (ScorerError, ValueError) as e:
        print(f"vlmrl eval-reward: {e}", file=sys.stderr)
        return 2
    finally:
        for s in scorers:
            s.close()
    out = Path(sec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out)
    print(format_table(results, list(sec.tolerances)))
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    plot_accuracy_curves(results, out / "progress_accuracy.png")
    writer = SummaryWriter(str(out / "tb"))
    for tag, v in scalar_items(results).items():
        writer.add_scalar(tag, v, 0)
    writer.close()
    print(f"eval-reward: wrote {out / 'metrics.json'} and {out / 'progress_accuracy.png'}")
    return 0
