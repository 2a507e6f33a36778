"""Reward workers for offline labelling: start or find them, and open a :class:`RewardClient` over them.

Role in the reward path: ``vlmrl label`` scores through the same reward service the online actors use.
``label.workers`` picks where the workers come from:

* ``pool``      -- start ``pool.num_workers`` Ray actors (``scorer``, ``server`` sections), stop them at the end;
* ``attach``    -- a pool already running on Ray (``vlmrl workers start``); the client follows its registry;
* ``local``     -- ``pool.num_workers`` gRPC servers in this process (no Ray; tests, benchmarks, one machine);
* ``addresses`` -- ``label.addresses`` (``host:port``), e.g. ``vlmrl serve`` processes.

Whatever the source, the workers' ``Info`` tells which scorer and item kind they run (:func:`worker_infos`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Sequence

from vlmrl.reward_workers.client import RewardClient

WORKER_SOURCES = ("pool", "attach", "local", "addresses")


@dataclass
class LabelWorkers:
    """An open client plus what the workers said about themselves; ``info()`` re-reads their stats."""

    client: RewardClient
    infos: List[Dict[str, Any]]
    info: Callable[[], List[Dict[str, Any]]]
    servers: List[Any] = field(default_factory=list)
    """``local`` only: the in-process ServerThreads (tests stop one to simulate a dying worker)."""

    @property
    def scorer(self) -> str:
        return self.infos[0]["scorer"] if self.infos else ""

    @property
    def item_kind(self) -> str:
        return self.infos[0]["item_kind"] if self.infos else ""


def worker_infos(addresses: Sequence[str], client_cfg: Any = None, timeout_s: float = 10.0) -> List[Dict[str, Any]]:
    """``Info`` of each worker (scorer, item kind, model version, batching and cache stats) over gRPC."""
    from vlmrl.reward_workers.proto import reward_pb2, reward_pb2_grpc
    from vlmrl.reward_workers.security import auth_metadata, create_channel
    from vlmrl.reward_workers.worker_actor import info_to_dict

    out = []
    for addr in addresses:
        ch = create_channel(addr, getattr(client_cfg, "tls", None))
        try:
            info = reward_pb2_grpc.RewardServiceStub(ch).Info(
                reward_pb2.InfoRequest(), timeout=timeout_s, metadata=auth_metadata(getattr(client_cfg, "auth_token", None)))
            out.append(dict(info_to_dict(info), address=addr))
        finally:
            ch.close()
    return out


def _check_same_scorer(infos: List[Dict[str, Any]]) -> None:
    kinds = {(i["scorer"], i["item_kind"]) for i in infos}
    if len(kinds) > 1:
        raise RuntimeError(f"the reward workers run different scorers / item kinds: {sorted(kinds)}; label with one kind")
    if not infos:
        raise RuntimeError("no reward worker is available")


@contextlib.contextmanager
def open_label_workers(cfg: Any) -> Iterator[LabelWorkers]:
    """Workers per ``cfg.label.workers`` and a client over them; everything this started is stopped on exit."""
    source = cfg.label.workers
    if source not in WORKER_SOURCES:
        raise ValueError(f"label.workers must be one of {list(WORKER_SOURCES)}, got {source!r}")
    scorer_name = ""
    with contextlib.ExitStack() as stack:
        if source in ("local", "addresses"):
            servers: List[Any] = []
            if source == "local":
                from vlmrl.reward_workers.scorers import build_scorer
                from vlmrl.reward_workers.server import ServerThread

                n = int(cfg.pool.num_workers)
                if n < 1:
                    raise ValueError(f"pool.num_workers must be >= 1 for label.workers=local, got {n}")
                for i in range(n):
                    st = ServerThread(cfg.server, build_scorer(cfg.scorer.name, cfg.scorer.params), f"w{i}")
                    stack.callback(st.stop, 1.0)
                    st.start()
                    servers.append(st)
                addresses = [st.address for st in servers]
                scorer_name = cfg.scorer.name
            else:
                addresses = list(cfg.label.addresses)
                if not addresses:
                    raise ValueError("label.workers=addresses needs label.addresses=[host:port, ...]")

            def info() -> List[Dict[str, Any]]:
                live = [st.address for st in servers if st.server is not None] if servers else addresses
                return worker_infos(live, cfg.client)

            client = stack.enter_context(RewardClient(cfg.client, addresses=addresses, scorer=scorer_name))
            infos = info()
        else:
            from vlmrl.reward_workers.pool import RewardWorkerPool

            if source == "pool":
                pool = RewardWorkerPool(cfg)
                stack.callback(pool.shutdown)
                pool.start()
                scorer_name = cfg.scorer.name
            else:
                pool = RewardWorkerPool.attach(cfg)
            servers = []

            def info() -> List[Dict[str, Any]]:
                return [r for r in pool.status() if "error" not in r]

            client = stack.enter_context(RewardClient(cfg.client, registry=pool.registry_view(), scorer=scorer_name))
            infos = info()
        _check_same_scorer(infos)
        yield LabelWorkers(client=client, infos=infos, info=info, servers=servers)
