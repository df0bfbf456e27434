"""The `forestprune` command line: ask, stats, batch, convert (see fpcli.cli.app)."""

from fpcli.cli.app import app, main

__all__ = ["app", "main"]
