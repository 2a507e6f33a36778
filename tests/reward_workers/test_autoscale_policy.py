"""The pool's autoscaling rule and placement check, without Ray: HPA-style sizing with hysteresis, cooldown and
bounds; the cluster capacity a pool size is checked against (CPU, custom resources, labels)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from vlmrl.reward_workers.autoscale import AutoscalePolicy
from vlmrl.reward_workers.placement import cluster_capacity, infeasible_reason, worker_demand
from vlmrl.system.config import AutoscaleConfig, PoolConfig


def policy(**kw) -> AutoscalePolicy:
    return AutoscalePolicy(OmegaConf.structured(AutoscaleConfig(enabled=True, **kw)))


def rows(queue: list[float]) -> list[dict]:
    return [{"worker_id": f"w{i}", "queue_depth": q} for i, q in enumerate(queue)]


def test_scales_up_by_the_load_ratio_within_max_and_waits_for_the_window():
    p = policy(min_workers=1, max_workers=4, target=4, hysteresis=0.2, cooldown_s=10, window=2)
    p.observe(rows([12]))
    assert p.decide(1, now=100) is None  # one read of a window of 2
    p.observe(rows([12]))
    assert p.decide(1, now=100) == 3  # ceil(1 * 12 / 4)
    p.observe(rows([40, 40, 40]))
    p.observe(rows([40, 40, 40]))
    assert p.decide(3, now=105) is None  # cooldown
    assert p.decide(3, now=111) == 4  # capped at max


def test_hysteresis_holds_and_idleness_scales_down_one_at_a_time_to_min():
    p = policy(min_workers=2, max_workers=6, target=10, hysteresis=0.3, cooldown_s=1, window=1)
    p.observe(rows([12, 11]))
    assert p.decide(2, now=0) is None  # within target x 1.3
    p.observe(rows([0, 0, 0, 0]))
    assert p.decide(4, now=10) == 3
    p.observe(rows([0, 0, 0]))
    assert p.decide(3, now=10.5) is None  # cooldown
    assert p.decide(3, now=11.5) == 2
    p.observe(rows([0, 0]))
    assert p.decide(2, now=20) is None  # at min
    assert p.decide(7, now=30) == 6  # out of bounds is corrected at once


def test_latency_metric_uses_the_latest_interval_not_the_lifetime_mean():
    p = policy(metric="latency_ms", target=50, window=1, cooldown_s=0)
    p.observe([{"worker_id": "w0", "requests": 100, "mean_latency_ms": 10.0}])
    v = p.observe([{"worker_id": "w0", "requests": 200, "mean_latency_ms": 60.0}])
    assert v == pytest.approx(110.0)  # (200*60 - 100*10) / 100
    assert p.decide(1, now=5) == 3


def test_bad_autoscale_settings_are_refused():
    with pytest.raises(ValueError, match="metric"):
        policy(metric="cpu")
    with pytest.raises(ValueError, match="min_workers"):
        policy(min_workers=3, max_workers=2)


NODES = [
    {"Alive": True, "NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 4.0, "memory": 8 * 2**30}, "Labels": {}},
    {"Alive": True, "NodeManagerAddress": "10.0.0.2", "Resources": {"CPU": 8.0, "GPU": 2.0, "reward_node": 2.0},
     "Labels": {"tier": "gpu"}},
    {"Alive": False, "NodeManagerAddress": "10.0.0.3", "Resources": {"CPU": 64.0, "reward_node": 8.0}},
]


def test_capacity_counts_alive_nodes_resources_and_labels():
    cpu = OmegaConf.structured(PoolConfig(num_cpus_per_worker=1.0))
    assert cluster_capacity(NODES, worker_demand(cpu)) == 12
    reward = OmegaConf.structured(PoolConfig(num_cpus_per_worker=1.0, resources={"reward_node": 1}))
    assert worker_demand(reward) == {"CPU": 1.0, "reward_node": 1.0}
    assert cluster_capacity(NODES, worker_demand(reward)) == 2
    gpu = OmegaConf.structured(PoolConfig(num_gpus_per_worker=1.0, num_cpus_per_worker=1.0))
    assert cluster_capacity(NODES, worker_demand(gpu), {"tier": "gpu"}) == 2
    assert cluster_capacity(NODES, worker_demand(cpu), {"tier": "cpu"}) == 0


def test_infeasible_reason_lists_the_nodes_and_can_be_turned_off():
    reward = OmegaConf.structured(PoolConfig(num_cpus_per_worker=1.0, resources={"reward_node": 1}))
    assert infeasible_reason(2, reward, NODES) is None
    why = infeasible_reason(3, reward, NODES)
    assert "can never be placed" in why and "at most 2" in why and "10.0.0.2 {CPU: 8, GPU: 2, reward_node: 2}" in why
    assert "10.0.0.3" not in why  # dead node
    reward.fail_if_infeasible = False
    assert infeasible_reason(3, reward, NODES) is None
