"""The ``vlmrl`` command line. Each subcommand lives in its own module under ``vlmrl.system.commands``
(imported only when used, so ``vlmrl --help`` stays fast) and exposes ``add_arguments(parser)``
and ``run(args) -> int``. Config-taking commands accept a YAML path (or a name in ``configs/``)
followed by ``key=value`` overrides.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Add a line here to add a subcommand.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("vlmrl.system.commands.demo", "run the demo (see README)"),
    "config": ("vlmrl.system.commands.config_cmd", "print the resolved config"),
    "serve": ("vlmrl.system.commands.serve", "run one reward worker's gRPC server in this process (no Ray)"),
    "workers": ("vlmrl.system.commands.workers", "start, scale and inspect the reward worker pool on Ray"),
    "record-demos": ("vlmrl.system.commands.record_demos", "record demo / noisy / random episodes into an episode dataset"),
    "lrm-train": ("vlmrl.system.commands.lrm_train", "train a reward model (compact LRM or LoRA VLM) on episode datasets"),
    "eval-reward": ("vlmrl.system.commands.eval_reward", "compare scorers' reward quality on held-out episodes"),
    "audit-reward": ("vlmrl.system.commands.audit_reward", "score scripted non-progress behaviours on held-out seeds: does the reward pay for them? (gate for RL runs)"),
    "build-offline-dataset": ("vlmrl.system.commands.build_offline_dataset", "merge recorded sources into one mixed-quality offline episode dataset + manifest"),
    "label": ("vlmrl.system.commands.label", "label every step of an offline dataset with window (RG-VLM) rewards from the reward workers -> Parquet"),
    "train": ("vlmrl.system.commands.train", "online PPO on an env with rewards from the reward worker pool (TensorBoard, checkpoints)"),
    "offline": ("vlmrl.system.commands.offline", "language-conditioned IQL (AWR) on a labelled/episode dataset + seen/unseen-text evaluation"),
    "build-tiny-vlm": ("vlmrl.system.commands.build_tiny_vlm", "write a tiny random Qwen2.5-VL / Qwen3-VL (--arch) or CLIP (--clip) checkpoint for tests"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmrl", description="RL with rewards from vision-language models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        top.parse_args(argv or ["--help"])  # prints help or an "invalid choice" error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"vlmrl {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
