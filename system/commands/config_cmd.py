"""``vlmrl config [CONFIG] [key=value ...]``: print the resolved config as YAML."""

from __future__ import annotations

import argparse

from omegaconf import OmegaConf

from vlmrl.system.commands.config_args import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    print(OmegaConf.to_yaml(config_from_args(args), resolve=True), end="")
    return 0
