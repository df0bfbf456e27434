"""The `forestprune` command line: ask, stats, batch, chat, eval, cache and convert (see fpcli.cli.app)."""

from fpcli.cli.app import app, main

__all__ = ["app", "main"]
