"""Shared pytest fixtures."""

import os

# Keep Ray and torch small on 2-core CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A small SYNTHETIC episode dataset (vlmrl.envs.synthetic_episodes): 24 episodes of 24 steps,
    48x48 frames, demo/noisy_demo/random sources cycled, three tasks. Read-only: don't write into it."""
    from vlmrl.envs.synthetic_episodes import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic_dataset"), num_episodes=24, seed=0)


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL checkpoint (vlmrl build-tiny-vlm), built once per session. Read-only."""
    from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen_vl

    return str(build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny_vlm") / "qwen"))


@pytest.fixture(scope="session")
def tiny_qwen3_vl_dir(tmp_path_factory):
    """A tiny random Qwen3-VL checkpoint (vlmrl build-tiny-vlm --arch qwen3_vl), built once per session. Read-only."""
    from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen3_vl

    return str(build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny_qwen3_vl") / "qwen3"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny random CLIP checkpoint (vlmrl build-tiny-vlm --clip), built once per session. Read-only."""
    from vlmrl.reward_workers.backends.tiny_models import build_tiny_clip

    return str(build_tiny_clip(tmp_path_factory.mktemp("tiny_clip") / "clip"))


@pytest.fixture(scope="module")
def ray_local(request):
    """A local Ray (2 CPUs) for one test module, in the module's ``NAMESPACE`` (default ``vlmrl-test``)."""
    import types

    import ray

    from vlmrl.reward_workers.pool import ensure_ray  # retries Ray's start-up timeout on a loaded machine

    ensure_ray(types.SimpleNamespace(ray_address=None, namespace=getattr(request.module, "NAMESPACE", "vlmrl-test")),
               num_cpus=2, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True, scope="module")
def _ray_is_shut_down_after_each_module():
    """Modules that start Ray share nothing: whatever a module (or the code it runs in-process) left
    initialised is shut down before the next module's own ``ray.init``."""
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
