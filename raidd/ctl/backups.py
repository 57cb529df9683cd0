"""`raidctl sync | snapshots | ls | restore | forget | gc | check`: the backup store.

`restore` receives the files over the control socket and writes them
itself, with the caller's permissions, each through a temporary file that
is renamed into place once its size and SHA-256 match.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from raidd.commands.storeopen import time_ns
from raidd.control.files import directory_sinks
from raidd.control.stream import FileStreamDecoder
from raidd.ctl.common import Context
from raidd.errors import EXIT_OK, EXIT_WARNINGS, UsageError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sync = subparsers.add_parser(
        "sync", parents=[common], help="rescan the watched roots and commit now"
    )
    sync.add_argument("roots", nargs="*", metavar="ROOT", help="root names (default: all)")
    sync.set_defaults(run=run_sync)
    snapshots = subparsers.add_parser("snapshots", parents=[common], help="list the commits")
    snapshots.add_argument("--limit", type=int, help="list at most this many, newest first")
    snapshots.set_defaults(run=run_snapshots)
    ls = subparsers.add_parser("ls", parents=[common], help="list a root's entries")
    ls.add_argument("root", help="root name")
    ls.add_argument("prefix", nargs="?", default="", help="path under the root")
    _selection(ls)
    ls.set_defaults(run=run_ls)
    restore = subparsers.add_parser(
        "restore", parents=[common], help="restore files into a directory"
    )
    restore.add_argument(
        "paths", nargs="*", metavar="PATH", help="root names, ROOT/PATH or absolute paths"
    )
    restore.add_argument("--to", required=True, type=Path, metavar="DIR", help="target directory")
    _selection(restore)
    restore.set_defaults(run=run_restore)
    for name, text in (
        ("forget", "apply the retention policies now"),
        ("gc", "free the stripes no kept commit references"),
    ):
        parser = subparsers.add_parser(name, parents=[common], help=text)
        parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
        parser.set_defaults(run=run_maintenance, method=name)
    check = subparsers.add_parser(
        "check", parents=[common], help="verify catalog, index and allocation (report only)"
    )
    check.add_argument("--read-data", action="store_true", help="also read every chunk")
    check.set_defaults(run=run_check)


def _selection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--at", metavar="TIME", help="the snapshot at this time (ISO 8601, local time by default)"
    )
    group.add_argument("--commit", type=int, metavar="ID", help="the snapshot of this commit")


def _selection_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.commit is not None:
        params["commit"] = args.commit
    at = time_ns(args.at)
    if at is not None:
        params["at_ns"] = at
    return params


def run_sync(context: Context) -> int:
    context.client.timeout = None
    roots = context.args.roots
    result = context.call("sync", {"roots": roots} if roots else None)
    context.emit(
        result,
        lambda r: (
            f"commit {r['commit']} at {r['time']}" + ("" if r["changed"] else " (nothing changed)")
        ),
    )
    return EXIT_OK


def run_snapshots(context: Context) -> int:
    limit = context.args.limit
    rows = context.call("snapshots", {"limit": limit} if limit is not None else None)
    context.emit(
        rows,
        lambda r: (
            "\n".join(f"{row['id']:>6}  {row['time']}  {', '.join(row['roots'])}" for row in r)
            or "no commits"
        ),
    )
    return EXIT_OK


def run_ls(context: Context) -> int:
    args = context.args
    params = {"root": args.root, "prefix": args.prefix, **_selection_params(args)}
    result = context.call("ls", params)

    def human(listing: dict[str, Any]) -> str:
        lines = [
            f"{entry['type']:<7} {entry['mode'] & 0o7777:04o} {entry['size']:>12}  "
            f"{_display_path(entry['path'])}"
            for entry in listing["entries"]
        ]
        if listing["truncated"]:
            lines.append("(listing truncated; name a prefix to see the rest)")
        return "\n".join(lines)

    context.emit(result, human)
    return EXIT_OK


def _display_path(path: str | dict[str, str]) -> str:
    # A name that is not UTF-8 arrives as {"base64": ...}.
    return path if isinstance(path, str) else f"(base64 name) {path['base64']}"


def run_restore(context: Context) -> int:
    args = context.args
    target = args.to
    if target.exists() and not target.is_dir():
        raise UsageError(f"--to {target} is not a directory")
    target.mkdir(parents=True, exist_ok=True)
    if not os.access(target, os.W_OK | os.X_OK):
        raise UsageError(f"--to {target}: you may not write there; choose another directory")
    decoder = FileStreamDecoder(directory_sinks(target.resolve()))
    context.client.timeout = None
    params = {"paths": args.paths, **_selection_params(args)}
    try:
        result = context.call("restore", params, on_frame=decoder.feed)
    finally:
        decoder.abort()
    result["target"] = str(target)
    context.emit(
        result,
        lambda r: (
            f"restored {r['files']} files ({r['bytes']} bytes) of commit {r['commit']} "
            f"into {r['target']}"
            + (f"; {r['skipped']} directories and links not restored" if r["skipped"] else "")
        ),
    )
    return EXIT_OK


def run_maintenance(context: Context) -> int:
    context.client.timeout = None
    result = context.call(context.args.method, {"dry_run": context.args.dry_run})
    context.emit(result, lambda r: f"{context.args.method}: {r}")
    return EXIT_OK


def run_check(context: Context) -> int:
    context.client.timeout = None
    result = context.call("check", {"read_data": context.args.read_data})

    def human(report: dict[str, Any]) -> str:
        lines = [f"error: {text}" for text in report["errors"]]
        lines += [f"warning: {text}" for text in report["warnings"]]
        lines += [f"note: {text}" for text in report["notes"]]
        return "\n".join(lines) or "check: no problems found"

    context.emit(result, human)
    if result["errors"]:
        return 3
    return EXIT_WARNINGS if result["warnings"] else EXIT_OK
