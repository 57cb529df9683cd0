"""`raidd snapshots`: list the commits, newest first."""

from __future__ import annotations

import argparse
from datetime import datetime

from raidd.commands.storeopen import add_parser, emit, open_store, time_ns, warn_degraded
from raidd.errors import EXIT_OK


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = add_parser(
        subparsers,
        common,
        "snapshots",
        "list the snapshots",
        "List the commits, newest first, with their time and roots. Opens the array read-only.",
    )
    parser.add_argument("--since", metavar="TIME", help="only commits at or after this time")
    parser.add_argument("--limit", type=int, metavar="N", help="at most N commits")
    parser.set_defaults(run=run)


def format_time(value_ns: int) -> str:
    """Return a commit time as local ISO 8601 with seconds."""
    return datetime.fromtimestamp(value_ns / 1e9).astimezone().isoformat(timespec="seconds")


def run(args: argparse.Namespace) -> int:
    with open_store(args, read_only=True) as store:
        warn_degraded("snapshots", store)
        commits = store.snapshots(since_ns=time_ns(args.since, end=False), limit=args.limit)
    rows = [
        {"commit": c.sequence, "parent": c.parent, "time_ns": c.time_ns, "roots": list(c.roots)}
        for c in commits
    ]

    def text() -> None:
        for row in rows:
            print(f"{row['commit']:>6}  {format_time(row['time_ns'])}  {' '.join(row['roots'])}")

    emit(args, rows, text)
    return EXIT_OK
