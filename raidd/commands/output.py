"""Output helpers shared by the offline commands: JSON results and escaped names."""

from __future__ import annotations

import argparse
import json
from typing import Any


def wants_json(args: argparse.Namespace) -> bool:
    """Return whether `--json` was given, before or after the command name."""
    return bool(getattr(args, "json", False))


def print_json(result: Any) -> None:
    print(json.dumps(result, indent=2))


def printable(text: str) -> str:
    """Escape control characters (as \\x1b, \\n) so on-disk text cannot drive the terminal."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
