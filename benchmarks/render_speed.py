"""Simulator and rendering speed of ManiSkillTaskEnv on this machine.

    .venv/bin/python -m benchmarks.render_speed [--task PushCube-v1] [--steps 60] [--frame-size 128]
        [--lp-threads N] [--shader-cache DIR|none] [--shader-pack minimal] [--vector N]

Prints steps/s state-only and with one camera at frame_stride 1 and 4, the per-frame render cost,
and the start-up seconds of a rendering env (env creation + reset + first frame). Each configuration
runs in a fresh process so start-up and shader-cache effects are measured, not hidden.

``--vector N`` runs the same configurations through ManiSkillTaskVectorEnv as well (the GPU-sim path RLlib's env
runners take with ``env.sim_backend=gpu``): N envs on ManiSkill's GPU sim (N > 1 needs CUDA), or N=1 on the CPU
sim, and prints env steps/s and frames/s of both paths and their ratio (vector / single env).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.record import add_record_args, record_from_args, val


def _child(task: str, steps: int, stride: int, frame_size: int, capture: bool, shader_pack: str,
           vector: int = 0) -> dict:
    """One configuration: ``steps`` env steps (``vector`` > 0: of each of ``vector`` envs in ManiSkillTaskVectorEnv)."""
    t0 = time.time()
    from vlmrl.envs.maniskill_env import ManiSkillTaskEnv
    from vlmrl.envs.maniskill_vector_env import ManiSkillTaskVectorEnv
    t_import = time.time() - t0
    kw = dict(task=task, capture_frames=capture, frame_stride=stride, frame_size=frame_size, shader_pack=shader_pack,
              max_episode_steps=10_000)
    if vector:
        env = ManiSkillTaskVectorEnv(None, vectorize="maniskill", num_envs=vector,
                                     sim_backend="gpu" if vector > 1 else "cpu", **kw)
    else:
        env = ManiSkillTaskEnv(None, **kw)
    env.reset(seed=0)
    startup = time.time() - t0
    frames = 0
    t1 = time.time()
    for _ in range(steps):
        _, _, _, _, info = env.step(env.action_space.sample())
        frames += int(np.sum(info["has_frame"]))  # a bool, or one per sub-env
    dt = time.time() - t1
    env.close()
    n = max(1, vector)
    return dict(import_s=round(t_import, 2), startup_s=round(startup, 2), steps_per_s=round(n * steps / dt, 1),
                frames_per_s=round(frames / dt, 1), frames=frames)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="PushCube-v1")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--frame-size", type=int, default=128)
    p.add_argument("--shader-pack", default="minimal")
    p.add_argument("--lp-threads", type=int, default=None, help="LP_NUM_THREADS for lavapipe (default: Mesa's)")
    p.add_argument("--shader-cache", default=None, help="MESA_SHADER_CACHE_DIR; 'none' disables the cache")
    p.add_argument("--vector", type=int, default=0,
                   help="also run N envs through ManiSkillTaskVectorEnv (N > 1: GPU sim, needs CUDA)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    add_record_args(p, "result file name (default: render_speed, or render_speed_vector with --vector)")
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(**json.loads(a.child))))
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if a.lp_threads:
        env["LP_NUM_THREADS"] = str(a.lp_threads)
    if a.shader_cache == "none":
        env["MESA_SHADER_CACHE_DISABLE"] = "true"
    elif a.shader_cache:
        env["MESA_SHADER_CACHE_DIR"] = a.shader_cache
    from vlmrl.envs.rendering import describe
    print(f"rendering: {describe()}  LP_NUM_THREADS={env.get('LP_NUM_THREADS', 'default')} "
          f"shader cache={'off' if a.shader_cache == 'none' else env.get('MESA_SHADER_CACHE_DIR', 'default')}")
    results = {}
    configs = [("state-only", False, 1), ("camera stride 1", True, 1), ("camera stride 4", True, 4)]
    runs = [(name, capture, stride, 0) for name, capture, stride in configs]
    if a.vector:
        runs += [(f"vector {name}", capture, stride, a.vector) for name, capture, stride in configs]
    for name, capture, stride, vector in runs:
        spec = dict(task=a.task, steps=a.steps, stride=stride, frame_size=a.frame_size, capture=capture,
                    shader_pack=a.shader_pack, vector=vector)
        out = subprocess.run([sys.executable, "-m", "benchmarks.render_speed", "--child", json.dumps(spec)],
                             capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-2000:]}")
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[name] = r
        print(f"{name:23s} {r['steps_per_s']:9.1f} env steps/s {r['frames_per_s']:8.1f} frames/s  ({r['frames']} frames "
              f"in {a.steps} steps x {max(1, vector)} envs)  start-up {r['startup_s']:.1f} s (import {r['import_s']:.1f} s)")
    s, c1 = results["state-only"]["steps_per_s"], results["camera stride 1"]["steps_per_s"]
    per_frame_ms = 1000 * (1 / c1 - 1 / s)
    print(f"per-frame render cost {per_frame_ms:.0f} ms ({a.frame_size}x{a.frame_size}); "
          f"render start-up overhead {results['camera stride 1']['startup_s'] - results['state-only']['startup_s']:.1f} s")
    startup_overhead = results['camera stride 1']['startup_s'] - results['state-only']['startup_s']
    values = {f"{name.replace(' ', '_').replace('-', '_')}_steps_per_s": val(r["steps_per_s"], unit="env steps/s")
              for name, r in results.items()}
    values["per_frame_render_ms"] = val(per_frame_ms, unit="ms", note=f"{a.frame_size}x{a.frame_size}")
    values["render_startup_overhead_s"] = val(startup_overhead, unit="s")
    for name, _, _ in configs if a.vector else ():
        v, one = results[f"vector {name}"], results[name]
        print(f"vector ({a.vector} envs) / single env, {name}: env steps/s {v['steps_per_s'] / one['steps_per_s']:.2f}x")
        values[f"vector_over_single_{name.replace(' ', '_').replace('-', '_')}"] = val(
            v["steps_per_s"] / one["steps_per_s"], unit="ratio", note=f"{a.vector} vector env(s)")
    record_from_args(a, "render_speed" + ("_vector" if a.vector else ""), values,
                     notes=f"{a.task}, {a.steps} steps per configuration, {a.frame_size} px frames, shader pack "
                           f"{a.shader_pack}, shader cache {a.shader_cache or 'default'}, rendering: {describe()}",
                     argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
