"""``vlmrl build-tiny-vlm DIR [--arch qwen2_5_vl|qwen3_vl] [--clip]``: write a tiny random VLM (or CLIP) checkpoint.

The checkpoint loads with ``from_pretrained(DIR)`` like a real one; its weights are random, so its
rewards are meaningless (it exercises the VLM reward path end to end on a CPU without hub downloads).
``--arch qwen3_vl`` gives the architecture of the released LRM checkpoints (Qwen3-VL-8B-Instruct fine-tunes).
"""

from __future__ import annotations

import argparse

ARCH_NAMES = {"qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="output folder (created)")
    parser.add_argument("--arch", choices=sorted(ARCH_NAMES), default="qwen2_5_vl",
                        help="VLM architecture (default: %(default)s)")
    parser.add_argument("--clip", action="store_true", help="build a tiny CLIP instead of a VLM")
    parser.add_argument("--seed", type=int, default=0, help="weight init seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from vlmrl.reward_workers.backends.tiny_models import TINY_VLM_BUILDERS, build_tiny_clip

    if args.clip:
        out, name = build_tiny_clip(args.dir, seed=args.seed), "CLIP"
    else:
        out, name = TINY_VLM_BUILDERS[args.arch](args.dir, seed=args.seed), ARCH_NAMES[args.arch]
    print(f"wrote tiny {name} to {out}")
    return 0
