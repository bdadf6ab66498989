"""The `probe` command line: `main` and one module per verb."""

from probe.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
