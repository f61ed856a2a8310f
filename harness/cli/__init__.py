"""The `mallocbench` command line: one module per group of commands."""

from harness.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
