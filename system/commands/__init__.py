"""One module per ``vlmrl`` subcommand (see ``vlmrl.system.cli.COMMANDS``)."""
