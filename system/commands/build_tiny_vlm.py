"""``vlmrl build-tiny-vlm DIR [--clip]``: write a tiny random Qwen2.5-VL (or CLIP) checkpoint for tests/demos.

The checkpoint loads with ``from_pretrained(DIR)`` like a real one; its weights are random, so its
rewards are meaningless (it exercises the VLM reward path end to end on a CPU without hub downloads).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="output folder (created)")
    parser.add_argument("--clip", action="store_true", help="build a tiny CLIP instead of a tiny Qwen2.5-VL")
    parser.add_argument("--seed", type=int, default=0, help="weight init seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from vlmrl.reward_workers.backends.tiny_models import build_tiny_clip, build_tiny_qwen_vl

    out = (build_tiny_clip if args.clip else build_tiny_qwen_vl)(args.dir, seed=args.seed)
    print(f"wrote tiny {'CLIP' if args.clip else 'Qwen2.5-VL'} to {out}")
    return 0
