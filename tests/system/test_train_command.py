"""``vlmrl train`` end to end on the ToyReach test env (one local Ray for the module): the pool is started
as part of the job, TensorBoard gets the expected tags and a timeline image, a checkpoint is written,
``train.resume=true`` continues from its iteration and env step count; bad configs fail with the reason."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vlmrl.system.cli import main

NAMESPACE = "vlmrl-test-train"
BATCH = 100


def overrides(tmp_path, *extra):
    return [f"output_dir={tmp_path}", "run_name=smoke", f"pool.namespace={NAMESPACE}", "pool.registry_name=train-smoke",
            f"train.train_batch_size={BATCH}", "train.rollout_fragment_length=50", "train.minibatch_size=50",
            "train.num_epochs=1", "train.checkpoint_every=1", "train.image_every=1", "env.frame_size=16",
            "env.max_episode_steps=20", "scorer.params.fixed_ms=0", "scorer.params.per_item_ms=0", *extra]


def scalars(run_dir):
    tags, steps = set(), {}
    images = set()
    for f in sorted((run_dir / "tb").iterdir()):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0, "images": 0})
        ea.Reload()
        tags |= set(ea.Tags()["scalars"])
        images |= set(ea.Tags()["images"])
        for e in ea.Scalars("charts/env_steps"):
            steps[e.step] = e.value
    return tags, images, steps


def test_train_smoke_writes_tensorboard_and_checkpoint_then_resumes(ray_local, tmp_path, capsys):
    assert main(["train", "train_toy", *overrides(tmp_path, "train.iterations=2")]) == 0
    out = capsys.readouterr().out
    assert "reward worker pool: 1 x synthetic" in out and "iter 2/2" in out and "steps/s" in out
    run_dir = tmp_path / "smoke"
    assert (run_dir / "config.yaml").exists()
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert latest["iteration"] == 2 and latest["env_steps"] >= 2 * BATCH
    assert (run_dir / "checkpoints" / "iter_000001").is_dir() and (run_dir / "checkpoints" / "iter_000002").is_dir()
    tags, images, steps = scalars(run_dir)
    for tag in ("charts/episode_return_mean", "charts/gt_success_rate", "charts/env_steps_per_s",
                "losses/policy_loss", "losses/vf_loss", "reward/component_reward", "reward/reward_latency_ms",
                "reward/pearson_step_reward_vs_dense", "workers/queue_depth", "workers/items_per_s",
                "workers/mean_latency_ms", "workers/client_retries"):
        assert tag in tags, f"missing TensorBoard tag {tag}; have {sorted(tags)}"
    assert "reward/episode_timeline" in images

    assert main(["train", "train_toy", *overrides(tmp_path, "train.iterations=3", "train.resume=true")]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "iter 3/3" in out and "iter 1/3" not in out
    latest2 = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert latest2["iteration"] == 3
    # RLlib's lifetime step counter came back with the checkpoint: iteration 3 adds one batch to it.
    assert latest["env_steps"] + BATCH <= latest2["env_steps"] < latest["env_steps"] + 2 * BATCH
    _, _, steps = scalars(run_dir)
    assert max(steps.values()) == latest2["env_steps"]


@pytest.mark.parametrize("extra, message", [
    (["train.mode=fancy"], "train.mode must be one of"),
    (["env.capture_frames=false"], "capture_frames"),
    (["reward.env_reward_weight=1.0"], "env.reward_mode=none"),
    (["train.mode=env"], "env.reward_mode=dense or sparse"),
    (["env.task=PushCube-v1", "env.vectorize=maniskill", "train.num_envs_per_env_runner=2"],
     "must be 1 or the same number"),
    (["train.num_gpus_per_env_runner=-1"], "num_gpus_per_env_runner must be >= 0"),
    # the job starts the workers: a scorer that cannot start is refused before Ray, in one line
    (["scorer.name=no_such_scorer"], "scorer: unknown scorer 'no_such_scorer'"),
    (["scorer.name=compact_lrm"], "scorer: compact_lrm needs params.weights_dir"),
    (["scorer.params.no_such_param=1"], "scorer: bad params for scorer 'synthetic': Key 'no_such_param' not in"),
])
def test_bad_train_config_fails_with_the_reason(tmp_path, capsys, extra, message):
    assert main(["train", "train_toy", f"output_dir={tmp_path}", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    ([], "scorer: compact_lrm cannot load weights_dir='{out}/demo/lrm' (train one with `vlmrl lrm-train`)"),
    (["scorer.params.ensemble_dirs=[{out}/other]"], "scorer: compact_lrm cannot load weights_dir="),
])
def test_a_missing_lrm_folder_is_refused_before_any_worker_starts(tmp_path, capsys, extra, message):
    # demo.yaml's compact_lrm reads <output_dir>/demo/lrm, not trained here: one line, exit 2, no Ray started
    extra = [e.replace("{out}", str(tmp_path)) for e in extra]
    assert main(["train", "demo", f"output_dir={tmp_path}", *extra]) == 2
    err = capsys.readouterr().err
    assert message.replace("{out}", str(tmp_path)) in err and len(err.strip().splitlines()) == 1


def test_resume_without_checkpoint_says_so(ray_local, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint saved"):
        main(["train", "train_toy", *overrides(tmp_path, "train.mode=env", "env.reward_mode=dense", "train.resume=true")])
