"""``vlmrl record-demos [CONFIG] [key=value ...]``: record demonstrations and mixed-quality episodes
(``demo``, ``noisy_demo``, ``random``) into an episode dataset (``vlmrl.envs.dataset`` format).

Settings: the ``record_demos`` section (counts, output_dir, noise) and the ``env`` section (task,
frame_size, camera). Example::

    vlmrl record-demos record_demos.output_dir=runs/datasets/pushcube_v1 record_demos.num_demo=30
"""

from __future__ import annotations

import argparse
import sys
import time

from vlmrl.system.commands.config_args import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from vlmrl.envs.recording import record_dataset

    if cfg.env.capture_frames:
        from vlmrl.envs.rendering import RenderingUnavailable, check_rendering
        try:
            check_rendering()
        except RenderingUnavailable as e:
            print(f"vlmrl record-demos: cannot render frames: {e} (or set env.capture_frames=false)", file=sys.stderr)
            return 2
    t0 = time.time()
    try:
        stats = record_dataset(cfg.env, cfg.record_demos, log=lambda m: print(m, flush=True))
    except (ValueError, RuntimeError) as e:
        print(f"vlmrl record-demos: {e}", file=sys.stderr)
        return 2
    total = sum(stats.written.values())
    rates = ", ".join(f"{k}: {stats.successes[k]}/{v} successful" for k, v in stats.written.items())
    print(f"wrote {total} episodes ({rates}; {stats.attempts_dropped} attempts with the wrong outcome dropped) "
          f"to {cfg.record_demos.output_dir} in {time.time() - t0:.0f} s", flush=True)
    return 0
