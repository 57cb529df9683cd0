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


def describe_forget(result: dict[str, Any], dry_run: bool) -> str:
    """Render a forget result (its JSON form) as lines for people."""
    lines = []
    verb = "would forget" if dry_run else "forget"
    for root, decision in result["roots"].items():
        kept = ", ".join(f"{k} ({'/'.join(v)})" for k, v in decision["keep"].items())
        lines.append(f"{root}: keep {kept or 'none'}")
        lines.append(f"{root}: {verb} {', '.join(map(str, decision['forget'])) or 'none'}")
    if not result["roots"]:
        lines.append("no [watch.retention] rules: every commit is kept")
    if result["commit"] is not None:
        lines.append(f"Recorded as commit {result['commit']}; gc then frees their space.")
    return "\n".join(lines)


def describe_gc(result: dict[str, Any]) -> str:
    """Render a gc result (its JSON form) as a line for people."""
    freed = result["freed_stripes"]
    verb = "would free" if result["dry_run"] else "freed"
    text = (
        f"{verb} {freed} of {result['stripes_before']} stripes; "
        f"{result['dead_chunks']} unreferenced chunks, {result['moved_objects']} objects moved"
    )
    if freed and not result["dry_run"]:
        # The array reuses a stripe freed by commit N only from commit N + 2 on, so that
        # the commit before gc stays readable until the next one is durable.
        text += "; the freed stripes count as free from the next commit on"
    return text
