"""The shared ``CONFIG [key=value ...]`` arguments of config-taking subcommands."""

from __future__ import annotations

import argparse
import sys

from omegaconf import DictConfig

from vlmrl.system.config import ConfigError, load_config


def add_config_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("config", nargs="?", default=default,
                        help="YAML config file, or a name in configs/ (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotlist overrides, e.g. server.max_batch=16")


def config_from_args(args: argparse.Namespace) -> DictConfig:
    """Load the config; a bad file or override exits with a one-line error instead of a traceback."""
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # no file given, only overrides
        config, overrides = None, [config, *overrides]
    try:
        return load_config(config, overrides)
    except ConfigError as e:
        print(f"vlmrl: {e}", file=sys.stderr)
        raise SystemExit(2) from e


def run_trainer_command(command: str, trainer_cls, args: argparse.Namespace,
                        user_errors: tuple[type[BaseException], ...] = (), prepare=None) -> int:
    """The shape of ``vlmrl train`` and ``vlmrl offline``: build the trainer for the run dir, save the
    resolved config next to its outputs, run it; a bad setting (ValueError while building, or one of
    ``user_errors`` while running) exits 2 with a one-line message instead of a traceback.
    ``prepare(cfg)`` runs once the trainer has checked the settings, before it runs (e.g. writing a missing test
    dataset)."""
    from vlmrl.system.config import run_dir, save_resolved

    cfg = config_from_args(args)
    try:
        trainer = trainer_cls(cfg, run_dir(cfg), print_fn=lambda s: print(s, flush=True))
        if prepare is not None:
            prepare(cfg)
    except ValueError as e:
        print(f"vlmrl {command}: {e}", file=sys.stderr)
        return 2
    out = save_resolved(cfg, trainer.run_dir)
    print(f"run dir: {trainer.run_dir} (config: {out})", flush=True)
    try:
        return trainer.run()
    except user_errors as e:
        print(f"vlmrl {command}: {e}", file=sys.stderr)
        return 2
