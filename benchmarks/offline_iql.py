"""Offline IQL (``vlmrl offline``) on CPU: where the set-up time goes, and learner updates/s.

Runs :class:`~vlmrl.learner.offline.offline_trainer.OfflineTrainer` on a ToyReach episode dataset (TEST env,
generated here; ``--dataset`` uses another) and reports its phases:

* set-up: dataset conversion, MiniLM task-text embeddings, ``ray.init``, ``build_algo`` (learner, RLModule,
  Ray Data plan);
* first iteration: starts the OfflinePreLearner map actor and (``offline.materialize=true``) maps the whole
  dataset once, then runs ``updates_per_iteration`` updates;
* later iterations: learner updates/s and transitions/s (median over iterations 2..N).

Evaluation is switched off (``eval_episodes=0``) so only the learner is timed. Usage::

    .venv/bin/python -m benchmarks.offline_iql [--episodes 150] [--iterations 6] [--updates 50] [--batch 256]
        [--hidden 256 256] [--no-materialize] [key=value ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.record import add_record_args, record_from_args, val


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None, help="episode or labelled dataset (default: generated ToyReach)")
    ap.add_argument("--episodes", type=int, default=150)
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--updates", type=int, default=50)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-materialize", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra config key=value")
    add_record_args(ap)
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))

    from vlmrl.envs.toy_reach_dataset import write_toy_dataset
    from vlmrl.learner.offline.offline_trainer import OfflineTrainer
    from vlmrl.system.config import load_config

    tmp = Path(tempfile.mkdtemp(prefix="bench_offline_iql_"))
    dataset = a.dataset or str(write_toy_dataset(tmp / "toy", a.episodes))
    cfg = load_config("offline_toy", [
        f"output_dir={tmp}", "run_name=bench", f"offline.dataset={dataset}", f"offline.iterations={a.iterations}",
        f"offline.updates_per_iteration={a.updates}", f"offline.batch_size={a.batch}",
        f"offline.hidden=[{','.join(map(str, a.hidden))}]", f"offline.materialize={not a.no_materialize}",
        f"offline.num_threads={a.threads}", "offline.eval_episodes=0", "offline.eval_every=0",
        "offline.checkpoint_every=0", *a.overrides])
    iters: list[float] = []
    ups: list[float] = []

    def on_line(line: str) -> None:
        print(line, flush=True)

    trainer = OfflineTrainer(cfg, tmp / "bench", print_fn=on_line)
    t0 = time.perf_counter()
    trainer.prepare_data()
    trainer.build()
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401 - same imports as a real run

    try:
        for i in range(a.iterations):
            t = time.perf_counter()
            r = trainer.algo.train()
            iters.append(time.perf_counter() - t)
            n = int(r["learners"]["default_policy"]["num_module_steps_trained"])
            ups.append(n / iters[-1])
    finally:
        trainer.close()
    total = time.perf_counter() - t0
    s = trainer.summary
    tm = trainer.timings
    later = iters[1:] or iters
    print(f"\n== Offline IQL, {s.num_rows} transitions ({s.num_episodes} episodes), state {s.state_dim} + "
          f"{trainer.table and len(next(iter(trainer.table.values())))} embedding, batch {a.batch}, hidden {a.hidden}, "
          f"materialize {not a.no_materialize}, {a.threads} torch thread(s)")
    print(f"set-up: convert {tm['convert_s']:.1f}s, MiniLM embed {tm['embed_s']:.1f}s, ray.init {tm['ray_init_s']:.1f}s, "
          f"build_algo {tm['build_algo_s']:.1f}s")
    med = statistics.median(later)
    print(f"first iteration {iters[0]:.1f}s = pre-learner start/materialise ~{max(iters[0] - med, 0):.1f}s + "
          f"{a.updates} updates (~{med:.1f}s)")
    print(f"later iterations: median {med:.2f}s -> {a.updates / med:.1f} learner updates/s, "
          f"{statistics.median(ups[1:] or ups):.0f} transitions/s")
    print(f"total wall {total:.1f}s for {a.iterations} x {a.updates} updates")
    setup = tm["convert_s"] + tm["embed_s"] + tm["ray_init_s"] + tm["build_algo_s"]
    record_from_args(a, "offline_iql", {
        "learner_updates_per_s": val(a.updates / med, unit="updates/s", note="median of iterations 2..N"),
        "transitions_per_s": val(statistics.median(ups[1:] or ups), unit="transitions/s"),
        "setup_s": val(setup, unit="s", note="convert + MiniLM embed + ray.init + build_algo"),
        "first_iteration_s": val(iters[0], unit="s"),
    }, notes=f"{s.num_rows} transitions ({s.num_episodes} episodes), batch {a.batch}, hidden {a.hidden}, materialize "
             f"{not a.no_materialize}, {a.threads} torch thread(s), dataset {a.dataset or 'generated ToyReach'}",
        argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
