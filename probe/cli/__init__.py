"""The `probe` command line: `main` and one module per verb."""

from probe.cli.app import EXIT_STATUS, build_parser, main

__all__ = ["EXIT_STATUS", "build_parser", "main"]
