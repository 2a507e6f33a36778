"""``vlmrl workers start|scale|status``: run and manage the reward worker pool on Ray.

    vlmrl workers start [CONFIG] [key=value ...]     # local Ray unless pool.ray_address is set; Ctrl-C stops
    vlmrl workers scale N [CONFIG] [--address auto]   # grow/shrink the running pool
    vlmrl workers status [CONFIG] [--address auto]    # table of the running workers

``scale`` and ``status`` attach to a running Ray cluster and find the pool through its named
registry (``pool.registry_name`` in ``pool.namespace``), so they must see the same pool settings
as ``start`` (same CONFIG / overrides). With ``--address host:port`` the cluster's auth token is
found like Ray's CLI finds it (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``);
without one, or with a size the cluster can never hold, they fail at once saying what to change.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, List

from vlmrl.system.commands.config_args import add_config_arguments, config_from_args


class _IntermixedParser(argparse.ArgumentParser):
    """Lets options sit between positionals (``scale 2 --address auto CONFIG key=value``)."""

    def parse_known_args(self, args=None, namespace=None):
        if getattr(self, "_intermixing", False) or any(a in ("-h", "--help") for a in (args or ())):
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_IntermixedParser)
    start = sub.add_parser("start", help="start the registry and pool.num_workers workers; stay up until Ctrl-C")
    add_config_arguments(start)
    scale = sub.add_parser("scale", help="add or remove workers of the running pool")
    scale.add_argument("n", type=int, help="number of workers wanted")
    scale.add_argument("--address", default="auto", help="Ray cluster to attach to (default: %(default)s)")
    scale.add_argument("--grace", type=float, default=None, help="seconds a removed worker may drain (default: server.grace_s)")
    add_config_arguments(scale)
    status = sub.add_parser("status", help="show the running workers")
    status.add_argument("--address", default="auto", help="Ray cluster to attach to (default: %(default)s)")
    add_config_arguments(status)


def format_status(rows: List[Dict[str, Any]]) -> str:
    """The status table: worker id, address, queue depth, items/s, model version (+ batches, cache hits)."""
    header = ("WORKER", "ADDRESS", "QUEUE", "ITEMS/S", "MODEL VERSION", "BATCHES", "MEAN BATCH", "CACHE HITS")
    lines = [header]
    for r in rows:
        if "error" in r:
            lines.append((r["worker_id"], r["address"], "?", "?", r.get("model_version", "?"), "?", "?", r["error"][:60]))
            continue
        lines.append((r["worker_id"], r["address"], str(r["queue_depth"]), f"{r['items_per_s']:.1f}",
                      r["model_version"], str(r["batches"]), f"{r['mean_batch_size']:.1f}", str(r["cache_hits"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    if not rows:
        out.append("(no workers)")
    return "\n".join(out)


def format_health(h: Dict[str, Any]) -> str:
    """The supervisor's line: target vs serving, lost/replaced workers, scale events, autoscaling, last error."""
    c = h.get("counters", {})
    line = (f"pool: target {h['target']}, {h['live']} serving, {h['starting']} starting; lost {c.get('lost', 0)}, "
            f"replaced {c.get('replaced', 0)}, scale-ups {c.get('scale_ups', 0)}, scale-downs {c.get('scale_downs', 0)}")
    a = h.get("autoscale")
    if a:
        observed = "-" if a.get("observed") is None else f"{a['observed']:.1f}"
        line += f"; autoscale {a['min']}..{a['max']} on {a['metric']} (target {a['target']:g}, observed {observed})"
    if h.get("last_error"):
        line += f"\nlast error: {h['last_error']}"
    return line


def run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    cfg = config_from_args(args)
    if args.action != "start":
        OmegaConf.update(cfg, "pool.ray_address", args.address)
    import ray

    from vlmrl.reward_workers.pool import PoolError, RewardWorkerPool, ensure_ray
    from vlmrl.reward_workers.ray_attach import RayAttachError
    from vlmrl.reward_workers.registry import RegistryNotFound

    try:
        if args.action == "start":
            return _start(cfg, RewardWorkerPool, ensure_ray)
        try:
            pool = RewardWorkerPool.attach(cfg)
        except RayAttachError as e:  # unreachable, or the cluster's auth token is missing: says what to set
            print(f"vlmrl workers: {e}", file=sys.stderr)
            return 1
        except ConnectionError as e:
            print(f"vlmrl workers: cannot reach a Ray cluster at {args.address!r}: {e}", file=sys.stderr)
            return 1
        except RegistryNotFound as e:
            print(f"vlmrl workers: {e}", file=sys.stderr)
            return 1
        if args.action == "scale":
            addrs = pool.scale(args.n, grace_s=args.grace)
            print(f"pool now has {len(addrs)} worker(s)")
            for wid, addr in sorted(addrs.items()):
                print(f"  {wid}  {addr}")
        print(format_status(pool.status()))
        print(format_health(pool.health()))
        return 0
    except PoolError as e:
        print(f"vlmrl workers: {e}", file=sys.stderr)
        return 1
    finally:
        if ray.is_initialized():
            ray.shutdown()


def _start(cfg: Any, pool_cls: Any, ensure_ray: Any) -> int:
    from vlmrl.system.config import run_dir, save_resolved

    saved = save_resolved(cfg, run_dir(cfg))
    ensure_ray(cfg.pool)
    pool = pool_cls(cfg, detached=True)
    try:
        addrs = pool.start()
        import ray

        print(f"reward worker pool {cfg.pool.registry_name!r} (namespace {cfg.pool.namespace!r}): "
              f"{len(addrs)} worker(s), scorer {cfg.scorer.name}; config written to {saved}")
        print(f"ray address: {ray.get_runtime_context().gcs_address}  "
              f"(vlmrl workers status|scale --address <it>)")
        for wid, addr in sorted(addrs.items()):
            print(f"  {wid}  {addr}")
        print("serving; Ctrl-C stops the pool", flush=True)
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping the reward worker pool ...", flush=True)
        return 0
    finally:
        pool.shutdown()
