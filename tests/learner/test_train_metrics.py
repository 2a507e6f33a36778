"""What vlmrl train logs: RLlib result dicts and worker status rows -> prefixed scalars; console line;
the reward timeline image."""

from __future__ import annotations

import numpy as np

from vlmrl.actors.timeline import RewardTimeline, render_timeline
from vlmrl.learner.online.train_metrics import console_line, scalars_from_result, scalars_from_worker_status
from vlmrl.reward_workers.client import RewardResult


def test_result_dict_maps_to_prefixed_scalars():
    result = {
        "env_runners": {"episode_return_mean": 2.5, "episode_len_mean": 20, "num_env_steps_sampled_lifetime": 400,
                        "vlmrl": {"gt_success": 0.25, "gt_final_env_reward": 0.7, "reward_latency_ms": 3.0,
                                  "component_progress": 0.01, "client_retries": 2.0, "client_failures": 0.0,
                                  "pearson_step_reward_vs_dense": float("nan")}},
        "learners": {"default_policy": {"policy_loss": -0.1, "vf_loss": 0.5, "entropy": 2.8},
                     "__all_modules__": {"total_loss": 9.0}},
    }
    s = scalars_from_result(result)
    assert s == {"charts/episode_return_mean": 2.5, "charts/episode_len_mean": 20.0, "charts/env_steps": 400.0,
                 "charts/gt_success_rate": 0.25, "charts/gt_final_env_reward": 0.7, "reward/reward_latency_ms": 3.0,
                 "reward/component_progress": 0.01, "workers/client_retries": 2.0, "workers/client_failures": 0.0,
                 "losses/policy_loss": -0.1, "losses/vf_loss": 0.5, "losses/entropy": 2.8}  # NaN dropped


def test_worker_status_rows_aggregate_and_skip_errors():
    rows = [{"queue_depth": 3, "items_per_s": 100.0, "mean_latency_ms": 10.0, "mean_batch_size": 4.0,
             "cache_hits": 1, "cache_misses": 3, "items": 50, "mean_scorer_ms": 2.0},
            {"queue_depth": 1, "items_per_s": 50.0, "mean_latency_ms": 20.0, "mean_batch_size": 2.0,
             "cache_hits": 1, "cache_misses": 3, "items": 30, "mean_scorer_ms": 4.0},
            {"worker_id": "w9", "error": "RayActorError: dead"}]
    s = scalars_from_worker_status(rows)
    assert s["workers/num_workers"] == 2 and s["workers/queue_depth"] == 4 and s["workers/items_per_s"] == 150
    assert s["workers/mean_latency_ms"] == 15 and s["workers/cache_hit_rate"] == 0.25
    line = console_line(3, 10, {**s, "charts/env_steps": 1200, "charts/episode_return_mean": 1.5,
                                "charts/env_steps_per_s": 300, "reward/reward_latency_ms": 4.2})
    assert line.startswith("iter 3/10 | env steps 1200 | return 1.500") and "workers 2, queue 4, 150 items/s" in line
    assert "corr(score, gt)" not in line and "NO env steps" not in line  # no frames scored against ground truth yet
    healthy = console_line(3, 10, {"charts/env_steps": 1200, "reward/pearson_frame_score_vs_dense": 0.41})
    assert healthy.endswith("corr(score, gt) 0.41")
    # the PushCube from-scratch run whose policy parked the gripper by the cube: the compact LRM scored 0.94 complete
    assert "reward exploited?" in console_line(3, 10, {"reward/pearson_frame_score_vs_dense": -0.54})
    # an overloaded machine: the remote env runner returned no samples within sample_timeout_s (seen in a make demo)
    assert "NO env steps sampled" in console_line(1, 8, {"workers/num_workers": 2})


def test_timeline_image_draws_frames_and_curves():
    tl = RewardTimeline("ep", max_frames=3, task_text="reach")
    for t in range(0, 9, 2):
        tl.add_frame(t, np.full((8, 8, 3), 20 * t, np.uint8))
        tl.add_score(t, RewardResult(reward=t / 10, components={"progress": t / 10}), {"progress": 0.2} if t else {})
    tl.add_steps(np.linspace(0, 1, 8), np.linspace(0.5, 0.9, 8), success=True)
    assert tl.shown_frames() == [0, 4, 8]
    assert sorted(tl.compact().frames) == [0, 4, 8]
    img = render_timeline(tl)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 100
    assert img.std() > 10  # not a blank canvas
