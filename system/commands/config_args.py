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
