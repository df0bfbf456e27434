"""`python -m fpcli` runs the same command line as `forestprune`."""

from fpcli.cli import main

main()
