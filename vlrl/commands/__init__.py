"""The `vlrl` subcommands, one module per group: each holds its commands' help texts, their argparse options
(`add_parsers(sub)`) and the functions that run them. `vlrl.cli` puts them together."""

from __future__ import annotations

import sys


def fail(message: str) -> int:
    """The one-line error a user's mistake gets (no traceback): printed to stderr; the exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2
