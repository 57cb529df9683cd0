"""`raidd restore`: write versions of a snapshot into a directory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from raidd.commands.storeopen import (
    RECOVERY_MEMBER_HELP,
    add_member_options,
    add_parser,
    add_selection_options,
    emit,
    open_store,
    time_ns,
    warn,
    warn_degraded,
)
from raidd.errors import EXIT_INTEGRITY, EXIT_OK, EXIT_USAGE, EXIT_WARNINGS, UsageError
from raidd.store.restore import (
    RestoreResult,
    drop_missing,
    not_found_message,
    restore,
    select,
)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = add_parser(
        subparsers,
        common,
        "restore",
        "restore files from a snapshot",
        "Write the versions under each PATH (a root's name or an absolute path under a "
        "watched root; every root without PATH) to DIR/<root name>/<relative path>. Nothing "
        "is written outside DIR. With --member and a key it needs no configuration and no "
        "state directory.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="what to restore")
    parser.add_argument("--to", required=True, type=Path, metavar="DIR", help="target directory")
    add_selection_options(parser)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace different files already in DIR"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be written")
    add_member_options(parser, RECOVERY_MEMBER_HELP)
    parser.set_defaults(run=run)


def _print_text(result: RestoreResult, dry_run: bool) -> None:
    verb = "would write" if dry_run else "written"
    # One write for every path: a restore lists thousands, and with
    # PYTHONUNBUFFERED each print would be a system call of its own.
    sys.stdout.write(
        "".join(f"{verb}: {repr(os.fsdecode(path))[1:-1]}\n" for path in result.report.written)
    )
    print(
        f"Commit {result.sequence}: {len(result.report.written)} {verb}, "
        f"{len(result.report.unchanged)} unchanged, {len(result.report.conflicts)} conflicts, "
        f"{len(result.report.errors)} errors, {len(result.lost)} lost."
    )


def run(args: argparse.Namespace) -> int:
    if args.member and getattr(args, "config", None):
        raise UsageError("--member and --config exclude each other")
    with open_store(args, read_only=True) as store:
        warn_degraded("restore", store)
        commit = store.resolve_commit(time_ns(args.at), args.commit)
        selections = select(store, [os.fsencode(p) for p in args.paths])
        selections, missing = drop_missing(store, args.paths, selections, commit.sequence)
        missing_paths = [args.paths[index] for index in missing]
        result = restore(
            store,
            args.to,
            selections,
            commit.sequence,
            overwrite=args.overwrite,
            dry_run=args.dry_run,
        )
    for path, reason in result.report.conflicts:
        warn("restore", f"{os.fsdecode(path)!r} left alone: {reason} (use --overwrite)")
    for path, error in result.report.errors:
        warn("restore", f"{os.fsdecode(path)!r}: {error}")
    for path, error in result.lost:
        warn("restore", f"{os.fsdecode(path)!r} is lost: {error}")
    document = result.to_json()
    if missing_paths:
        document["missing"] = missing_paths
    emit(args, document, lambda: _print_text(result, args.dry_run))
    if missing_paths:
        # The paths that exist are restored; the missing ones are an error all the same.
        print(
            f"raidd restore: {not_found_message(missing_paths, result.sequence)}", file=sys.stderr
        )
    if result.lost:
        return EXIT_INTEGRITY
    if missing_paths:
        return EXIT_USAGE
    return EXIT_OK if result.report.ok else EXIT_WARNINGS
