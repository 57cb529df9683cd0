"""`raidd audit`: list the audit records or verify their chain on a stopped array.

The same listing and verification as `raidctl audit`, read from the
members directly (for disaster recovery, or when the daemon cannot run).
Records the daemon had not committed when it stopped are not on the array.
"""

from __future__ import annotations

import argparse
import os

from raidd.commands.storeopen import (
    RECOVERY_MEMBER_HELP,
    add_member_options,
    add_parser,
    emit,
    open_store,
    time_ns,
    warn,
    warn_degraded,
)
from raidd.ctl.audit import describe_report, record_line
from raidd.errors import EXIT_INTEGRITY, EXIT_OK, EXIT_WARNINGS, UsageError
from raidd.store.audit import resolve_path
from raidd.store.store import Store


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = add_parser(
        subparsers,
        common,
        "audit",
        "list the audit records or verify their chain",
        "List the audit records newest first, or verify their hash chain with --verify "
        "(exit 3 when broken). Opens the array read-only.",
    )
    parser.add_argument(
        "--path", help="only records of this path: ROOT, ROOT/PATH or an absolute path"
    )
    parser.add_argument("--since", metavar="TIME", help="only records at or after this time")
    parser.add_argument("--limit", type=int, default=100, metavar="N", help="at most N records")
    parser.add_argument("--verify", action="store_true", help="verify the hash chain")
    add_member_options(parser, RECOVERY_MEMBER_HELP)
    parser.set_defaults(run=run)


def _roots(store: Store) -> dict[str, str]:
    """Return each root's name and path: the configured ones, else `/NAME` as restore uses."""
    roots = {name: f"/{name}" for name in store.root_names()}
    if store.config is not None:
        roots.update({watch.name: os.fspath(watch.path) for watch in store.config.watches})
    return roots


def run(args: argparse.Namespace) -> int:
    if args.member and getattr(args, "config", None):
        raise UsageError("--member and --config exclude each other")
    with open_store(args, read_only=True) as store:
        warn_degraded("audit", store)
        if args.verify:
            report = store.verify_audit().to_json()
            emit(args, report, lambda: print(describe_report(report)))
            return EXIT_OK if report["ok"] else EXIT_INTEGRITY
        hashes = None
        if args.path is not None:
            root, relative = resolve_path(args.path, _roots(store))
            hashes = set(store.audit.hashes_above(root, relative))
        unreadable: list[str] = []
        records = store.audit_records(
            path_hashes=hashes,
            since_ns=time_ns(args.since, end=False),
            limit=args.limit,
            unreadable=unreadable,
        )

    def text() -> None:
        for record in records:
            print(record_line(record))

    emit(args, records, text)
    for object_id in unreadable:
        warn("audit", f"audit object {object_id[:16]} does not open and was skipped")
    return EXIT_WARNINGS if unreadable else EXIT_OK
