"""`raidctl sync | snapshots | ls | forget | gc | check`: the backup store.

`raidctl restore` lives in raidd.ctl.restore.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from typing import Any

from raidd.commands.ls import listing_line
from raidd.commands.output import describe_forget, describe_gc
from raidd.commands.storeopen import time_ns
from raidd.control.client import RemoteError
from raidd.ctl.common import Context
from raidd.errors import EXIT_OK, EXIT_WARNINGS, UsageError
from raidd.store.restore import ls_not_found_message
from raidd.store.scan import EntryType


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sync = subparsers.add_parser(
        "sync", parents=[common], help="rescan the watched roots and commit now"
    )
    sync.add_argument("roots", nargs="*", metavar="ROOT", help="root names (default: all)")
    timeout_option(sync)
    sync.set_defaults(run=run_sync)
    snapshots = subparsers.add_parser("snapshots", parents=[common], help="list the commits")
    snapshots.add_argument("--limit", type=int, help="list at most this many, newest first")
    timeout_option(snapshots)
    snapshots.set_defaults(run=run_snapshots)
    ls = subparsers.add_parser("ls", parents=[common], help="list a root's entries")
    ls.add_argument("root", help="root name, ROOT/PATH or an absolute path under a watched root")
    ls.add_argument("prefix", nargs="?", default="", help="path under the root")
    selection_options(ls)
    timeout_option(ls)
    ls.set_defaults(run=run_ls)
    for name, text in (
        ("forget", "apply the retention policies now"),
        ("gc", "free the stripes no kept commit references"),
    ):
        parser = subparsers.add_parser(name, parents=[common], help=text)
        parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
        timeout_option(parser)
        parser.set_defaults(run=run_maintenance, method=name)
    check = subparsers.add_parser(
        "check", parents=[common], help="verify catalog, index and allocation (report only)"
    )
    check.add_argument("--read-data", action="store_true", help="also read every chunk")
    timeout_option(check)
    check.set_defaults(run=run_check)


def timeout_option(parser: argparse.ArgumentParser) -> None:
    """Add --timeout: these calls wait for the store, which a long commit holds."""
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="give up after this many seconds without a reply (default: wait until done; "
        "the daemon goes on either way)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the timeout must be a positive number")
    return value


def wait_for_store(context: Context) -> None:
    """Set the reply timeout to --timeout, or to no limit when it is not given."""
    context.client.timeout = getattr(context.args, "timeout", None)


def selection_options(parser: argparse.ArgumentParser) -> None:
    """Add --at and --commit, which pick the snapshot."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--at", metavar="TIME", help="the snapshot at this time (ISO 8601, local time by default)"
    )
    group.add_argument("--commit", type=int, metavar="ID", help="the snapshot of this commit")


def selection_params(args: argparse.Namespace) -> dict[str, Any]:
    """Return the `commit` and `at_ns` params that --commit and --at chose."""
    params: dict[str, Any] = {}
    if args.commit is not None:
        params["commit"] = args.commit
    at = time_ns(args.at)
    if at is not None:
        params["at_ns"] = at
    return params


def run_sync(context: Context) -> int:
    wait_for_store(context)
    roots = context.args.roots
    if sys.stderr.isatty() and not context.json:
        # A commit of many files takes minutes; say what the silence means.
        print(
            "raidctl sync: waiting until the commit is durable "
            "(Ctrl-C stops waiting; the daemon goes on)",
            file=sys.stderr,
        )
    result = context.call("sync", {"roots": roots} if roots else None)
    context.emit(result, describe_sync)
    failed = result.get("failed") or []
    for item in failed:
        print(f"raidctl sync: not committed: {item['error']}", file=sys.stderr)
    return EXIT_WARNINGS if failed else EXIT_OK


def describe_sync(result: dict[str, Any]) -> str:
    """Render a sync result; an unchanged one points to the commit that holds the changes."""
    if result["changed"]:
        return f"commit {result['commit']} at {result['time']}"
    # The watcher commits on its own, often before a sync that follows a change arrives.
    return (
        f"nothing changed since commit {result['commit']} at {result['time']}; "
        "changes made before then are in it or in an earlier commit"
    )


def run_snapshots(context: Context) -> int:
    wait_for_store(context)
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
    wait_for_store(context)
    args = context.args
    params = {"root": args.root, "prefix": args.prefix, **selection_params(args)}
    try:
        result = context.call("ls", params)
    except RemoteError as error:
        if not (isinstance(error.data, dict) and error.data.get("error") == "PathsNotFoundError"):
            raise
        # The daemon keeps the path out of its log and its error, so raidctl names it.
        shown = f"{args.root.rstrip('/')}/{args.prefix.strip('/')}" if args.prefix else args.root
        raise UsageError(ls_not_found_message(shown, error.data.get("commit"))) from None
    # The daemon resolves ROOT/PATH and absolute paths to a root's name.
    root = result.get("root", args.root)

    def human(listing: dict[str, Any]) -> str:
        lines = [
            listing_line(
                EntryType(entry["type"]),
                entry["mode"],
                entry["size"],
                entry["mtime_ns"],
                _under_root(root, path_bytes(entry["path"])),
                path_bytes(entry["link_target"]) if entry.get("link_target") else None,
            )
            for entry in listing["entries"]
        ]
        if listing["truncated"]:
            lines.append("(listing truncated; name a prefix to see the rest)")
        return "\n".join(lines)

    context.emit(result, human)
    return EXIT_OK


def _under_root(root: str, path: bytes) -> bytes:
    # As `raidd ls` prints them: the root's name, then the path under it.
    return os.fsencode(root) + (b"/" + path if path else b"")


def path_bytes(name: str | dict[str, str]) -> bytes:
    """Turn a JSON name back into bytes: text, or {"base64": ...} for a name that is not UTF-8."""
    if isinstance(name, str):
        return name.encode("utf-8", "surrogateescape")
    return base64.b64decode(name["base64"])


def run_maintenance(context: Context) -> int:
    wait_for_store(context)
    dry_run = context.args.dry_run
    result = context.call(context.args.method, {"dry_run": dry_run})
    if context.args.method == "gc":
        context.emit(result, describe_gc)
    else:
        context.emit(result, lambda r: describe_forget(r, dry_run))
    return EXIT_OK


def run_check(context: Context) -> int:
    wait_for_store(context)
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
