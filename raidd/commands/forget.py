"""`raidd forget`: apply each watched root's retention policy."""

from __future__ import annotations

import argparse

from raidd.commands.storeopen import add_parser, emit, open_store, warn_degraded
from raidd.errors import EXIT_OK
from raidd.store.maintenance import forget


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = add_parser(
        subparsers,
        common,
        "forget",
        "apply the retention policies",
        "Forget the commits that no [watch.retention] rule keeps, as one new commit. "
        "`raidd gc` then frees their space.",
    )
    parser.add_argument("--dry-run", action="store_true", help="show the decision, change nothing")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_store(args, read_only=args.dry_run) as store:
        warn_degraded("forget", store)
        result = forget(store, dry_run=args.dry_run)

    def text() -> None:
        for root, decision in result.roots.items():
            kept = ", ".join(f"{k} ({'/'.join(v)})" for k, v in decision["keep"].items())
            print(f"{root}: keep {kept or 'none'}")
            print(f"{root}: forget {', '.join(map(str, decision['forget'])) or 'none'}")
        if result.sequence is not None:
            print(f"Recorded as commit {result.sequence}.")

    emit(args, result.to_json(), text)
    return EXIT_OK
