"""The LRM recipe end to end, as the second stage of ``vlmrl demo`` (``configs/demo.yaml``).

Stages, each the project's own command on the same config tree (so the demo exercises the real entry
points, not a copy of them):

1. ``vlmrl record-demos``: scripted PushCube demos (plus a few noisy/random episodes for the LRM);
2. ``vlmrl audit-reward --record-negatives`` (when ``lrm_train.dataset_dirs`` lists ``audit.negatives_dir``):
   scripted non-progress behaviours on training seeds, with ground truth, as hard negatives for the LRM;
3. ``vlmrl lrm-train``: the compact LRM (progress / completion / contrastive heads) on those episodes; with
   ``audit.mine_per_behaviour`` > 0, ``vlmrl audit-reward --mine-negatives`` then scores the behaviours on fresh
   training seeds with it, and the LRM is trained again with the non-progress episodes it over-paid added;
4. ``vlmrl audit-reward``: the behaviour library on held-out seeds, scored by the LRM: does it pay for arm-only
   motions, wrong pushes, idling...? (its table is printed; a failed gate is reported, the demo goes on);
5. ``vlmrl train`` with ``train.mode=lrm``: BC base policy from the demos, its ground-truth success, then
   online PPO on the rewards of a pool of compact-LRM reward workers (Ray actors with gRPC servers),
   with ground-truth success after every iteration.

``--quick`` (``configs/demo_quick.yaml``) runs the same stages on the ToyReach TEST env in well under a
minute (toy scripted demos, no LRM training: the pool runs the ``synthetic`` system-measurement scorer,
which is not a reward model): a smoke test of the pipeline's plumbing, tested in CI, not a result.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

class DemoPipeline:
    """Runs the stages of the module doc and prints where the results are."""

    def __init__(self, config: str, overrides: List[str], quick: bool = False, print_fn: Callable[[str], None] = print):
        from vlmrl.system.config import load_config, run_dir

        self.config = config
        self.overrides = list(overrides)
        self.quick = quick
        self.print = print_fn
        self.cfg = load_config(config, self.overrides)
        self.run_dir = run_dir(self.cfg)
        self.timings: dict = {}

    def _stage(self, name: str, argv: List[str], ok_codes: tuple = (0,), extra: Sequence[str] = ()) -> int:
        from vlmrl.system.cli import main

        args = argv + [self.config] + self.overrides + list(extra)
        self.print(f"[demo] === {name}: vlmrl {' '.join(args)}")
        t0 = time.monotonic()
        rc = main(args)
        self.timings[name] = time.monotonic() - t0
        self.print(f"[demo] === {name} done in {self.timings[name]:.0f}s")
        if rc not in ok_codes:
            raise RuntimeError(f"stage {name!r} failed (exit code {rc}); see the messages above")
        return rc

    def _audit_line(self) -> str:
        """One line of the audit's verdict (audit.json of the audit stage)."""
        report = json.loads((Path(self.cfg.audit.out_dir) / "audit.json").read_text())
        parts = []
        for task, t in report["tasks"].items():
            bad = [(b["exploit_margin"] or 0.0, n, b) for n, b in t["behaviours"].items()
                   if b["category"] == "non_progress" and b["counted_episodes"]]
            margin, name, worst = max(bad, key=lambda x: x[0]) if bad else (0.0, "-", {})
            called = max((b["complete_share"] or 0.0 for _, _, b in bad), default=0.0)
            parts.append(f"{task}: worst exploit margin {margin:.2f} ({name}), most called complete {called:.0%}, "
                         f"{len(t['violations'])} threshold(s) exceeded")
        return f"{'PASSED' if report['passed'] else 'FAILED'} -- " + "; ".join(parts)

    def run(self) -> int:
        t0 = time.monotonic()
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            self.print(f"[demo] replacing the previous demo run in {self.run_dir}")
            shutil.rmtree(self.run_dir)
        demos = Path(self.cfg.lrm_refine.demos)
        if self.quick:
            from vlmrl.envs.toy_reach_dataset import write_toy_dataset

            write_toy_dataset(demos, 16, sources=("demo",), max_steps=30)
            self.print(f"[demo] --quick: 16 scripted ToyReach demos in {demos}; no LRM (synthetic scorer)")
        else:
            self._stage("record demos", ["record-demos"])
            if str(self.cfg.audit.negatives_dir) in [str(d) for d in self.cfg.lrm_train.dataset_dirs]:
                self._stage("record hard negatives (behaviour library, training seeds)",
                            ["audit-reward", "--record-negatives"])
            self._stage("train compact LRM", ["lrm-train"])
            if int(self.cfg.audit.mine_per_behaviour) > 0:
                self._mine_and_retrain()
            self._stage("audit the LRM (behaviour library, held-out seeds)", ["audit-reward"], ok_codes=(0, 1))
        self._stage("BC base policy + online PPO refinement on LRM rewards", ["train"])
        base = json.loads((self.run_dir / "base_eval.json").read_text())["success_base"]
        refined = self._final_success()
        total = time.monotonic() - t0
        self.print("[demo] stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.timings.items())
                   + f"; total {total:.0f}s")
        if not self.quick:
            self.print(f"[demo] reward audit: {self._audit_line()} (table above; {self.cfg.audit.out_dir})")
        self.print(f"[demo] ground-truth success (greedy, {self.cfg.lrm_refine.eval_episodes} episodes): base policy "
                   f"{base:.2f} -> after LRM refinement {refined:.2f}")
        self.print(f"[demo] TensorBoard logs, one folder per stage ("
                   + ", ".join(f"{stage}: {d}" for stage, d in self.tensorboard_dirs().items())
                   + f"): tensorboard --logdir {self.tensorboard_logdir()}")
        return 0

    def _mine_and_retrain(self) -> None:
        """Hard-negative mining: the behaviours on fresh training seeds, scored by the LRM just trained; the
        non-progress episodes it over-pays join its data and the LRM is trained again (same recipe, from scratch)."""
        from omegaconf import OmegaConf

        self._stage("mine hard negatives the LRM over-pays (behaviour library, training seeds)",
                    ["audit-reward", "--mine-negatives"])
        mined = str(self.cfg.audit.mined_dir)
        if not (Path(mined) / "index.jsonl").exists():
            self.print("[demo] nothing mined: the LRM is kept as trained")
            return
        dirs = OmegaConf.to_container(self.cfg.lrm_train.dataset_dirs, resolve=True) + [mined]
        self._stage("retrain compact LRM with the mined negatives", ["lrm-train"],
                    extra=[f"lrm_train.dataset_dirs={json.dumps(dirs)}"])

    def tensorboard_dirs(self) -> Dict[str, Path]:
        """The TensorBoard folder of each stage that writes one: ``vlmrl lrm-train`` (``lrm_train.out_dir/tb``) and
        ``vlmrl train`` (BC base evaluation, PPO, greedy evaluations: ``<run dir>/tb``). Recording, the audit and the
        reward-service stage write no TensorBoard data (RLlib's own ``~/ray_results/<date>`` folder stays empty)."""
        from vlmrl.learner.run_files import TB_DIR

        dirs = {} if self.quick else {"lrm-train": Path(self.cfg.lrm_train.out_dir) / TB_DIR}
        dirs["train"] = self.run_dir / TB_DIR
        return dirs

    def tensorboard_logdir(self) -> Path:
        """The one ``--logdir`` that holds every stage's folder: the run dir, or (when an override moved
        ``lrm_train.out_dir`` out of it) the stages' common parent."""
        dirs = [Path(os.path.abspath(d)) for d in self.tensorboard_dirs().values()]
        root = Path(os.path.abspath(self.run_dir))
        if all(d.is_relative_to(root) for d in dirs):
            return self.run_dir
        return Path(os.path.commonpath(dirs))

    def _final_success(self) -> float:
        from vlmrl.learner.online.train_metrics import read_scalars

        values = read_scalars(self.run_dir).get("charts/success")
        if not values:
            raise RuntimeError(f"no charts/success scalar in {self.run_dir / 'tb'}")
        return values[-1][1]
