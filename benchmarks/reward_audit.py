"""Reward audit of compact-LRM recipes on PushCube (issue 23): which recipe stops paying for non-progress?

One command records the demo data (``configs/demo.yaml``), two hard-negative datasets of scripted behaviours on
TRAINING seeds (``--record-negatives``: kinds A, and kinds B that variants without them never see), the audit's
rollouts once on held-out seeds (``audit.episodes_dirs``: every recipe is scored on identical episodes), trains
one compact LRM per recipe (same epochs, no time cap), audits each with ``vlmrl audit-reward`` and
measures held-out progress accuracy with ``vlmrl eval-reward`` against the time-only targets and against the
recipe's own (object-aware) targets. Prints a table and writes ``<out>/summary.json``.

    python -m benchmarks.reward_audit --out runs/i23                       # everything (~40 min on 2 busy cores)
    python -m benchmarks.reward_audit --out runs/i23 --skip-data --variants neg_all_obj   # reuse recorded data

Recipes (``VARIANTS``): ``demo2ep`` = the demo's recipe before issue 23 with its 2.5-minute training cap (2 of 12
epochs on a busy machine); ``base`` = the same recipe trained the full epochs; ``neg_all`` = + hard negatives of all kinds
with failed episodes labelled 0; ``neg_all_obj`` = + object-aware progress (``object_progress_weight=0.5``);
``neg_a_obj`` = the same with only kinds A (kinds B are behaviours the LRM never saw); ``obj`` = object-aware
targets without the hard negatives; ``neg_all_state`` = + hard negatives with targets read off the state alone
(``object_progress_weight=0.8``, ``reach_progress_weight=0.2``, no time term: a demo's approach and an arm-only
negative in the same pose get the same target).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

KINDS_A = ["arm_to_goal", "arm_over_object", "push_away", "overshoot", "idle", "near_miss_stop_short", "occlude_goal"]
KINDS_B = ["arm_around_goal", "arm_around_object", "occlude_object", "push_sideways", "jitter",
           "near_miss_wrong_goal", "near_miss_leave_undone"]

VARIANTS: Dict[str, dict] = {
    "demo2ep": {"data": ["demos"], "failed_progress_scale": 0.5, "object_progress_weight": 0.0, "demo_time_cap": True},
    "base": {"data": ["demos"], "failed_progress_scale": 0.5, "object_progress_weight": 0.0},
    "neg_all": {"data": ["demos", "neg_a", "neg_b"], "failed_progress_scale": 0.0, "object_progress_weight": 0.0},
    "neg_all_obj": {"data": ["demos", "neg_a", "neg_b"], "failed_progress_scale": 0.0, "object_progress_weight": 0.5},
    "neg_all_obj25": {"data": ["demos", "neg_a", "neg_b"], "failed_progress_scale": 0.0,
                      "object_progress_weight": 0.25},
    "neg_a_obj": {"data": ["demos", "neg_a"], "failed_progress_scale": 0.0, "object_progress_weight": 0.5},
    "obj": {"data": ["demos"], "failed_progress_scale": 0.0, "object_progress_weight": 0.5},
    "neg_all_state": {"data": ["demos", "neg_a", "neg_b"], "failed_progress_scale": 0.0, "object_progress_weight": 0.8,
                      "reach_progress_weight": 0.2},
}


def _vlmrl(argv: List[str]) -> int:
    from vlmrl.system.cli import main

    print("$ vlmrl " + " ".join(argv), flush=True)
    return main(argv)


HELDOUT = (("heldout_1", ["solve", "solve_retreat", "arm_to_goal", "arm_around_goal", "arm_over_object",
                          "arm_around_object", "occlude_object", "occlude_goal"], 1_000_000),
           ("heldout_2", ["push_away", "push_sideways", "overshoot", "idle", "jitter", "near_miss_stop_short",
                          "near_miss_wrong_goal", "near_miss_leave_undone"], 1_000_100))
"""The audit's held-out rollouts (2 episodes per behaviour, frame stride 4), recorded once in two halves."""


def record(out: Path, base: List[str]) -> None:
    assert _vlmrl(["record-demos", *base, f"record_demos.output_dir={out}/demos"]) == 0
    for name, kinds, seed in (("neg_a", KINDS_A, 500_000), ("neg_b", KINDS_B, 510_000)):
        assert _vlmrl(["audit-reward", "--record-negatives", *base, f"audit.negatives_dir={out}/{name}",
                       f"audit.negatives_behaviours=[{','.join(kinds)}]", f"audit.negatives_seed={seed}"]) == 0
    for name, kinds, seed in HELDOUT:
        assert _vlmrl(["audit-reward", "--record-negatives", *base, f"audit.negatives_dir={out}/{name}",
                       f"audit.negatives_behaviours=[{','.join(kinds)}]", f"audit.negatives_seed={seed}",
                       "audit.negatives_frame_stride=4", "audit.negatives_per_behaviour=2"]) == 0


def target_rules(v: dict) -> Dict[str, dict]:
    """The targets held-out accuracy is measured against: the time rule alone, and the recipe's own."""
    own = {k: v.get(k, 0.0) for k in ("object_progress_weight", "reach_progress_weight")}
    return {"time": {"object_progress_weight": 0.0, "reach_progress_weight": 0.0}, "own": own}


def run_variant(out: Path, base: List[str], name: str, epochs: int, train: bool = True,
                audit_episodes: Optional[List[str]] = None) -> None:
    v = VARIANTS[name]
    data = "[" + ",".join(f"{out}/{d}" for d in v["data"]) + "]"
    lrm = f"{out}/lrm_{name}"
    if train:
        budget = (["lrm_train.max_minutes=2.5", "lrm_train.epochs=12"] if v.get("demo_time_cap") else
                  ["lrm_train.max_minutes=0", f"lrm_train.epochs={epochs}"])
        assert _vlmrl(["lrm-train", *base, f"lrm_train.dataset_dirs={data}", f"lrm_train.out_dir={lrm}",
                       f"lrm_train.failed_progress_scale={v['failed_progress_scale']}",
                       f"lrm_train.object_progress_weight={v['object_progress_weight']}",
                       f"lrm_train.reach_progress_weight={v.get('reach_progress_weight', 0.0)}", *budget]) == 0
    heldout = "[" + ",".join(audit_episodes or [f"{out}/{h}" for h, _, _ in HELDOUT]) + "]"
    _vlmrl(["audit-reward", *base, f"lrm_train.dataset_dirs={data}", f"scorer.params.weights_dir={lrm}",
            f"audit.out_dir={out}/audit_{name}", f"audit.episodes_dirs={heldout}"])
    for key, rule in target_rules(v).items():
        _vlmrl(["eval-reward", *base, f"eval_reward.dataset_dirs=[{out}/demos]",
                f"eval_reward.out_dir={out}/eval_{name}_{key}",
                *[f"eval_reward.{k}={x}" for k, x in rule.items()],
                f"eval_reward.failed_progress_scale={v['failed_progress_scale']}",
                f"eval_reward.scorers=[{{name: compact_lrm, params: {{weights_dir: {lrm}}}}}]"])


def collect(out: Path, names: List[str]) -> dict:
    """Per recipe: audit numbers per behaviour and the held-out accuracies (files the runs wrote)."""
    res = {}
    for name in names:
        audit_file = out / f"audit_{name}" / "audit.json"
        if not audit_file.exists():
            continue
        audit = json.loads(audit_file.read_text())
        task = next(iter(audit["tasks"]))
        t = audit["tasks"][task]
        acc = {}
        for key in target_rules(VARIANTS[name]):
            m = out / f"eval_{name}_{key}" / "metrics.json"
            if m.exists():
                r = json.loads(m.read_text())["compact_lrm"]
                acc[key] = {"progress_acc@0.2": r["progress_acc"]["0.2"], "completion_f1": r["completion_f1"],
                                "spearman_progress": r["spearman_progress"], "episodes": r["episodes"]}
        res[name] = {"recipe": VARIANTS[name], "task": task, "passed": audit["passed"], "seconds": t["seconds"],
                     "success_progress": t["success_progress"], "violations": t["violations"],
                     "behaviours": {b: {k: v[k] for k in ("category", "counted_episodes", "true_success",
                                                          "last_progress", "exploit_margin", "complete_share",
                                                          "in_training_data")}
                                    for b, v in t["behaviours"].items()},
                     "heldout_accuracy": acc}
    return res


def table(res: dict) -> str:
    names = list(res)
    behaviours = list(next(iter(res.values()))["behaviours"]) if res else []
    lines = ["| behaviour | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for b in behaviours:
        cells = []
        for n in names:
            x = res[n]["behaviours"].get(b)
            if not x or x["exploit_margin"] is None:
                cells.append("n/a")
                continue
            mark = "" if x["category"] == "success" else ("*" if x["in_training_data"] else "")
            share = "" if x["complete_share"] is None else f" / {x['complete_share']:.0%}"
            cells.append(f"{x['exploit_margin']:.2f}{share}{mark}")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines.append("| audit passed | " + " | ".join(str(res[n]["passed"]) for n in names) + " |")
    for key in ("time", "own"):
        lines.append(f"| progress acc@0.2 ({key} targets) | " + " | ".join(
            f"{res[n]['heldout_accuracy'][key]['progress_acc@0.2']:.3f}" if key in res[n]["heldout_accuracy"] else "n/a"
            for n in names) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/reward_audit_bench")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--skip-data", action="store_true", help="reuse <out>/demos, neg_a, neg_b")
    p.add_argument("--collect-only", action="store_true", help="only read what earlier runs wrote")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--audit-episodes", nargs="*", default=None, metavar="DIR",
                   help="recorded held-out episodes to audit on (default: <out>/heldout_1, <out>/heldout_2)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every stage, e.g. env.frame_size=128 lrm_train.image_size=128")
    args = p.parse_args()
    out = Path(args.out)
    names = args.variants.split(",")
    base = ["demo", f"run_name={out.name}", f"output_dir={out.parent}", *args.set]
    if not args.collect_only:
        if not args.skip_data:
            record(out, base)
        for name in names:
            run_variant(out, base, name, args.epochs, audit_episodes=args.audit_episodes)
    res = collect(out, names)
    (out / "summary.json").write_text(json.dumps(res, indent=2))
    print("exploit margin / share called complete per behaviour (* = kind in the LRM's training data)")
    print(table(res))


if __name__ == "__main__":
    main()
