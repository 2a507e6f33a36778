"""The LRM recipe end to end, as the second stage of ``vlmrl demo`` (``configs/demo.yaml``).

Stages, each the project's own command on the same config tree (so the demo exercises the real entry
points, not a copy of them):

1. ``vlmrl record-demos``: scripted PushCube demos (plus a few noisy/random episodes for the LRM);
2. ``vlmrl lrm-train``: the compact LRM (progress / completion / contrastive heads) on those episodes;
3. ``vlmrl train`` with ``train.mode=lrm``: BC base policy from the demos, its ground-truth success, then
   online PPO on the rewards of a pool of compact-LRM reward workers (Ray actors with gRPC servers),
   with ground-truth success after every iteration.

``--quick`` (``configs/demo_quick.yaml``) runs the same stages on the ToyReach TEST env in well under a
minute (toy scripted demos, no LRM training: the pool runs the ``synthetic`` system-measurement scorer,
which is not a reward model): a smoke test of the pipeline's plumbing, tested in CI, not a result.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable, List

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

    def _stage(self, name: str, argv: List[str]) -> None:
        from vlmrl.system.cli import main

        self.print(f"[demo] === {name}: vlmrl {' '.join(argv + [self.config] + self.overrides)}")
        t0 = time.monotonic()
        rc = main(argv + [self.config] + self.overrides)
        self.timings[name] = time.monotonic() - t0
        self.print(f"[demo] === {name} done in {self.timings[name]:.0f}s")
        if rc != 0:
            raise RuntimeError(f"stage {name!r} failed (exit code {rc}); see the messages above")

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
            self._stage("train compact LRM", ["lrm-train"])
        self._stage("BC base policy + online PPO refinement on LRM rewards", ["train"])
        base = json.loads((self.run_dir / "base_eval.json").read_text())["success_base"]
        refined = self._final_success()
        total = time.monotonic() - t0
        self.print("[demo] stage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.timings.items())
                   + f"; total {total:.0f}s")
        self.print(f"[demo] ground-truth success (greedy, {self.cfg.lrm_refine.eval_episodes} episodes): base policy "
                   f"{base:.2f} -> after LRM refinement {refined:.2f}")
        self.print(f"[demo] TensorBoard logs: tensorboard --logdir {self.run_dir / 'tb'}")
        return 0

    def _final_success(self) -> float:
        from vlmrl.learner.train_metrics import read_scalars

        values = read_scalars(self.run_dir).get("charts/success")
        if not values:
            raise RuntimeError(f"no charts/success scalar in {self.run_dir / 'tb'}")
        return values[-1][1]
