"""Where reward workers may run: a worker's resource demand and whether the Ray cluster can ever hold a pool.

The pool's supervisor asks :func:`infeasible_reason` before it starts workers, so a pool size that no
set of the cluster's nodes can hold (``vlmrl workers scale 3`` on a 2-CPU machine, a ``pool.resources``
entry no node has) fails at once with the nodes' resources listed, instead of leaving actors pending.
It counts the nodes' *total* resources: what other actors hold now may be freed later, so that case
waits (up to ``pool.start_timeout_s``) rather than failing.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional

_SHOWN_SKIP = ("node:", "object_store_memory", "accelerator_type:")


def worker_demand(pool_cfg: Any) -> Dict[str, float]:
    """The resources one reward worker asks Ray for (CPU, GPU, ``pool.resources``)."""
    demand = {"CPU": float(pool_cfg.num_cpus_per_worker), "GPU": float(pool_cfg.num_gpus_per_worker)}
    demand.update({str(k): float(v) for k, v in (pool_cfg.get("resources") or {}).items()})
    return {k: v for k, v in demand.items() if v > 0}


def _labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    """Plain ``key: value`` equality (selectors with operators such as ``!x`` or ``in(...)`` are not judged here)."""
    for k, v in selector.items():
        v = str(v)
        if v.startswith("!") or "(" in v:
            continue
        if str(labels.get(k)) != v:
            return False
    return True


def workers_fitting(node_resources: Mapping[str, float], demand: Mapping[str, float]) -> int:
    """How many workers of ``demand`` one node's total resources hold (a large number when demand is empty)."""
    fits = [math.floor(float(node_resources.get(k, 0.0)) / v + 1e-9) for k, v in demand.items()]
    return min(fits) if fits else 1 << 20


def cluster_capacity(nodes: Iterable[Mapping[str, Any]], demand: Mapping[str, float],
                     selector: Mapping[str, str] | None = None) -> int:
    """Workers the alive nodes of ``ray.nodes()`` could hold at most (ignoring what other actors hold now)."""
    return sum(workers_fitting(n.get("Resources", {}), demand) for n in nodes
               if n.get("Alive") and _labels_match(n.get("Labels", {}) or {}, selector or {}))


def describe_nodes(nodes: Iterable[Mapping[str, Any]]) -> str:
    """``ip {CPU: 2, memory: 7.5 GiB, reward: 1}; ...`` for the alive nodes (in error messages)."""
    out: List[str] = []
    for n in nodes:
        if not n.get("Alive"):
            continue
        res = []
        for k, v in sorted(n.get("Resources", {}).items()):
            if k.startswith(_SHOWN_SKIP):
                continue
            res.append(f"{k}: {v / 2**30:.1f} GiB" if k == "memory" else f"{k}: {v:g}")
        labels = {k: v for k, v in (n.get("Labels") or {}).items() if not k.startswith("ray.io/node")}
        out.append(f"{n.get('NodeManagerAddress', '?')} {{{', '.join(res)}}}" + (f" labels {labels}" if labels else ""))
    return "; ".join(out) or "(no alive node)"


def infeasible_reason(n: int, pool_cfg: Any, nodes: Optional[List[Mapping[str, Any]]] = None) -> Optional[str]:
    """Why a pool of ``n`` workers can never be placed on this cluster, or None if it can (or the check is off)."""
    if n <= 0 or not bool(pool_cfg.get("fail_if_infeasible", True)):
        return None
    if nodes is None:
        import ray

        nodes = ray.nodes()
    demand = worker_demand(pool_cfg)
    selector = {str(k): str(v) for k, v in (pool_cfg.get("label_selector") or {}).items()}
    cap = cluster_capacity(nodes, demand, selector)
    if n <= cap:
        return None
    where = f" on nodes labelled {selector}" if selector else ""
    return (f"a pool of {n} reward worker(s) can never be placed: each needs {demand}{where}, and the cluster's "
            f"nodes can hold at most {cap} (nodes: {describe_nodes(nodes)}). Lower the size or "
            f"pool.num_cpus_per_worker / num_gpus_per_worker / resources, add nodes that have them, or set "
            f"pool.fail_if_infeasible=false on a cluster whose autoscaler adds nodes")
