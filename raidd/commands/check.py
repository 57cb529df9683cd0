"""`raidd check`: verify that catalog, object index and allocation agree."""

from __future__ import annotations

import argparse

from raidd.commands.storeopen import add_parser, emit, open_store, warn, warn_degraded
from raidd.errors import EXIT_INTEGRITY, EXIT_OK, EXIT_WARNINGS
from raidd.store.maintenance import check


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = add_parser(
        subparsers,
        common,
        "check",
        "check the store's consistency",
        "Check that catalog, object index and allocation map agree and that every metadata "
        "object authenticates. Opens the array read-only; reports, never repairs.",
    )
    parser.add_argument(
        "--read-data", action="store_true", help="also read and authenticate every chunk"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_store(args, read_only=True) as store:
        warn_degraded("check", store)
        result = check(store, read_data=args.read_data)
    for message in result.warnings:
        warn("check", message)

    def text() -> None:
        for message in result.errors:
            print(f"error: {message}")
        for message in result.notes:
            print(f"note: {message}")
        state = "errors found" if result.errors else "no errors"
        print(f"{state}; {result.objects_read} objects read and authenticated")

    emit(args, result.to_json(), text)
    if result.errors:
        return EXIT_INTEGRITY
    return EXIT_WARNINGS if result.warnings else EXIT_OK
