"""`raidd backup`: scan the watched roots once and commit what changed."""

from __future__ import annotations

import argparse
import os

from raidd.commands.storeopen import add_parser, emit, open_store, warn, warn_degraded
from raidd.commands.units import format_size
from raidd.errors import EXIT_OK, EXIT_USAGE, EXIT_WARNINGS
from raidd.store.pipeline import BackupResult, run_backup, select_watches


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = add_parser(
        subparsers,
        common,
        "backup",
        "back up the watched roots once",
        "Scan the watched roots (all, or the ROOTs named by path or name), store what "
        "changed and commit it as one snapshot.",
    )
    parser.add_argument("roots", nargs="*", metavar="ROOT", help="a watched root's path or name")
    parser.set_defaults(run=run)


def _print_text(result: BackupResult) -> None:
    if result.sequence is None:
        print(f"No changes: {result.files_unchanged} files unchanged, nothing committed.")
        return
    print(
        f"Commit {result.sequence} of {', '.join(result.roots)}: {result.files_read} files "
        f"read ({format_size(result.bytes_read)}), {result.files_unchanged} unchanged, "
        f"{result.chunks_new} new chunks ({format_size(result.bytes_stored)} stored)."
    )


def run(args: argparse.Namespace) -> int:
    with open_store(args, read_only=False) as store:
        warn_degraded("backup", store)
        chosen = len(select_watches(store, args.roots))
        result = run_backup(store, args.roots)
    for problem in result.problems:
        path = os.fsdecode(problem.path) or "."
        warn("backup", f"{problem.root}: {path!r}: {problem.kind}: {problem.message}")
    emit(args, result.to_json(), lambda: _print_text(result))
    if result.failed_roots and len(result.failed_roots) == chosen:
        # No root could be backed up: an error, as `raidctl sync` reports it.
        return EXIT_USAGE
    return EXIT_WARNINGS if result.problems else EXIT_OK
