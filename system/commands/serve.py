"""``vlmrl serve [CONFIG] [key=value ...]``: run one reward worker's gRPC server in this process (no Ray).

Builds the configured scorer, serves it on ``server.host:server.port``, prints the bound
address (``serving <scorer> on <host:port>``), then one stats line every ``--stats-every``
seconds; Ctrl-C or SIGTERM stop it gracefully (in-flight requests get ``server.grace_s``).
The resolved config is saved as ``<output_dir>/<run_name>/config.yaml``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from vlmrl.system.commands.config_args import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--worker-id", default="serve-0", help="id reported in responses and Info (default: %(default)s)")
    parser.add_argument("--stats-every", type=float, default=10.0, metavar="S",
                        help="print a stats line every S seconds; 0 = never (default: %(default)s)")


def stats_line(info) -> str:
    """One line of a worker's Info stats."""
    s = info.stats
    return (f"[{info.worker_id}] requests={s.requests} items={s.items} batches={s.batches} "
            f"mean_batch={s.mean_batch_size:.1f} items/s={s.items_per_second:.1f} "
            f"scorer_ms={s.mean_scorer_ms:.1f} latency_ms={s.mean_latency_ms:.1f} queue={s.queue_depth} "
            f"in_flight={s.in_flight_requests} rejected={s.rejected_requests} invalid={s.invalid_requests} "
            f"failed={s.failed_requests} "
            f"cache={s.cache_hits}/{s.cache_hits + s.cache_misses}")


async def _serve(cfg, worker_id: str, stats_every: float) -> None:
    from vlmrl.reward_workers.scorers import build_scorer
    from vlmrl.reward_workers.server import RewardServer

    scorer = build_scorer(cfg.scorer.name, cfg.scorer.params)
    server = RewardServer(cfg.server, scorer, worker_id)
    address = await server.start()
    print(f"serving {scorer.name} (model {scorer.model_id}, version {scorer.model_version}) on {address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), stats_every if stats_every > 0 else None)
            except TimeoutError:
                print(stats_line(server.info()), flush=True)
    finally:
        print(f"stopping (grace {cfg.server.grace_s} s) ...", flush=True)
        await server.stop()
        print(stats_line(server.info()), flush=True)
        print("stopped", flush=True)


def run(args: argparse.Namespace) -> int:
    from vlmrl.reward_workers.scorers.base import ScorerError
    from vlmrl.reward_workers.security import SecurityConfigError, check_server_security
    from vlmrl.system.config import run_dir, save_resolved

    cfg = config_from_args(args)
    try:
        check_server_security(cfg.server)  # before the scorer loads: an empty token or incomplete TLS is one line
        saved = save_resolved(cfg, run_dir(cfg))
        print(f"config saved to {saved}", flush=True)
        asyncio.run(_serve(cfg, args.worker_id, args.stats_every))
    except (ScorerError, SecurityConfigError) as e:
        print(f"vlmrl serve: {e}", file=sys.stderr)
        return 2
    return 0
