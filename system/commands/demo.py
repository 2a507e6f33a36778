"""``vlmrl demo`` (``make demo``): stage 1, the reward service with a worker failure in the middle; stage 2,
the LRM recipe on ManiSkill PushCube (record demos -> compact LRM -> BC base policy -> online PPO refinement
on compact-LRM rewards from a reward worker pool; :mod:`vlmrl.system.demo_pipeline`, ``configs/demo.yaml``).
``--quick`` runs stage 2 on the ToyReach test env (CI smoke); ``--skip-service`` / ``--service-only`` pick stages.

Stage 1 starts a local Ray, a pool of CNN reward workers (``configs/reward_service.yaml``: 2 workers),
streams the frames of a SYNTHETIC moving-object clip (:mod:`vlmrl.envs.synthetic_episodes`)
through the :class:`~vlmrl.reward_workers.client.RewardClient` with several requests in flight,
``ray.kill``s one worker halfway, and shows that every frame still got its reward exactly once:
progress, a rewards summary, per-worker stats, and the loss check. The CNN has random weights
(no training in this demo), so the reward values show plumbing, not task understanding.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np

from vlmrl.system.commands.config_args import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default="demo")
    parser.add_argument("--service-config", default="reward_service",
                        help="config of the reward-service stage (default: %(default)s)")
    stages = parser.add_mutually_exclusive_group()
    stages.add_argument("--service-only", action="store_true", help="only the reward-service stage")
    stages.add_argument("--skip-service", action="store_true", help="skip the reward-service stage")
    parser.add_argument("--quick", action="store_true",
                        help="LRM stage on the ToyReach test env with the synthetic scorer (smoke test, < 1 min)")
    parser.add_argument("--frames", type=int, default=400, help="frames in the clip (default: %(default)s)")
    parser.add_argument("--per-request", type=int, default=8, help="frames per request (default: %(default)s)")
    parser.add_argument("--no-kill", action="store_true", help="do not kill a worker halfway")


def run(args: argparse.Namespace) -> int:
    if args.frames < 2 or args.per_request < 1:
        print("vlmrl demo: need --frames >= 2 and --per-request >= 1", file=sys.stderr)
        return 2
    from vlmrl.system.config import ConfigError, load_config

    t0 = time.monotonic()
    if not args.skip_service and not args.quick:
        try:
            service_cfg = load_config(args.service_config)
        except ConfigError as e:
            print(f"vlmrl demo: {e}", file=sys.stderr)
            return 2
        print(f"[demo] stage 1: reward service ({args.service_config}), a worker killed mid-stream", flush=True)
        rc = run_service_demo(args, service_cfg)
        if rc != 0 or args.service_only:
            return rc
    from vlmrl.system.demo_pipeline import DemoPipeline

    default = "demo_quick" if args.quick else "demo"
    config, overrides = args.config or default, list(args.overrides)
    if "=" in config:  # no file given, only overrides
        config, overrides = default, [config, *overrides]
    if args.quick and config == "demo":
        config = "demo_quick"
    try:
        pipeline = DemoPipeline(config, overrides, quick=args.quick,
                                print_fn=lambda m: print(m, flush=True))
    except (ConfigError, ValueError) as e:
        print(f"vlmrl demo: {e}", file=sys.stderr)
        return 2
    print(f"[demo] stage 2: LRM recipe on {pipeline.cfg.env.task} ({args.config})", flush=True)
    try:
        rc = pipeline.run()
    except RuntimeError as e:
        print(f"vlmrl demo: {e}", file=sys.stderr)
        return 1
    print(f"[demo] all stages done in {time.monotonic() - t0:.0f}s", flush=True)
    return rc


def run_service_demo(args: argparse.Namespace, cfg) -> int:
    """Stage 1 (module doc): stream a clip through the pool, kill a worker halfway, check no frame is lost."""
    import ray

    from vlmrl.envs.synthetic_episodes import make_synthetic_episode
    from vlmrl.reward_workers.client import RewardClient
    from vlmrl.reward_workers.pool import RewardWorkerPool, ensure_ray

    t_start = time.monotonic()
    episode = make_synthetic_episode(seed=0, source="demo", num_steps=args.frames - 1, image_size=96)
    frames, task = episode.frames, episode.task
    print(f"[demo] synthetic clip: {len(frames)} frames {frames.shape[1]}x{frames.shape[2]} RGB, task {task!r}")
    ensure_ray(cfg.pool, num_cpus=max(2, int(cfg.pool.num_workers)), log_to_driver=False)
    pool = RewardWorkerPool(cfg)
    try:
        addrs = pool.start()
        print(f"[demo] {len(addrs)} {cfg.scorer.name} reward workers on Ray: "
              + ", ".join(f"{w}={a}" for w, a in sorted(addrs.items())))
        chunks = [(i, frames[i:i + args.per_request]) for i in range(0, len(frames), args.per_request)]
        killed = None
        with RewardClient(cfg.client, registry=pool.registry_view(), scorer=cfg.scorer.name) as client:
            t0 = time.monotonic()
            futures = []
            for n, (i, chunk) in enumerate(chunks):
                futures.append((f"clip-{i}", i, client.submit(task, chunk, request_id=f"clip-{i}")))
                if n % max(1, len(chunks) // 10) == 0:
                    done = sum(len(c) for (_, j, f), (_, c) in zip(futures, chunks) if f.done())
                    print(f"[demo] sent {i + len(chunk):4d}/{len(frames)} frames, {done:4d} scored")
                if not args.no_kill and killed is None and n == len(chunks) // 2:
                    killed = sorted(addrs)[0]
                    handle = ray.get(pool.registry.handles.remote())[killed]
                    ray.kill(handle, no_restart=True)
                    print(f"[demo] >>> killed reward worker {killed} ({addrs[killed]}) with requests in flight")
                time.sleep(0.02)  # a steady stream, like actors stepping environments
            rewards = np.full(len(frames), np.nan)
            per_worker: Counter = Counter()
            answered: Counter = Counter()
            for rid, i, fut in futures:
                res = fut.result(timeout=120)
                answered[rid] += 1
                rewards[i:i + len(res)] = [r.reward for r in res]
                per_worker.update(r.worker_id for r in res)
            elapsed = time.monotonic() - t0
            stats = client.stats()
        scored = int(np.isfinite(rewards).sum())
        print(f"[demo] scored {scored}/{len(frames)} frames in {elapsed:.2f}s ({scored / elapsed:.0f} frames/s)")
        q = np.array_split(rewards, 4)
        print(f"[demo] rewards (random-weight CNN: plumbing, not task understanding): mean {np.nanmean(rewards):.6f}  "
              f"std {np.nanstd(rewards):.2e}  min {np.nanmin(rewards):.6f}  max {np.nanmax(rewards):.6f}  "
              f"by clip quarter: " + " ".join(f"{x.mean():.6f}" for x in q))
        print(f"[demo] client: {stats['requests']} requests, {stats['retries']} resent, "
              f"{stats['timeouts']} timed out, {stats['late_answers']} late answers dropped, {stats['failures']} failed")
        for w in sorted(stats["workers"].values(), key=lambda w: w["worker_id"]):
            print(f"[demo]   worker {w['worker_id'] or '?':>4} {w['address']}: {w['items']:4d} frames, "
                  f"mean latency {w['mean_latency_ms']:.1f} ms, p99 {w['p99_latency_ms']:.1f} ms, {w['errors']} stream errors")
        print("[demo] frames answered per worker: " + ", ".join(f"{w}={n}" for w, n in sorted(per_worker.items()))
              + (f" ({killed} was killed halfway)" if killed else ""))
        for row in pool.status():
            print(f"[demo]   status {row['worker_id']}: {row.get('items', '?')} items in {row.get('batches', '?')} "
                  f"batches (mean batch {row.get('mean_batch_size', 0):.1f}), model {row['model_version']}")
        lost = len(frames) - scored
        dup = [rid for rid, n in answered.items() if n != 1]
        ok = lost == 0 and not dup and len(answered) == len(chunks)
        print(f"[demo] {'OK' if ok else 'FAILED'}: {scored} of {len(frames)} frames scored, {lost} lost, "
              f"{len(answered)}/{len(chunks)} requests answered exactly once; total {time.monotonic() - t_start:.1f}s")
        return 0 if ok else 1
    finally:
        pool.shutdown()
        ray.shutdown()
