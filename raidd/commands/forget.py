"""`raidd forget`: apply each watched root's retention policy."""

from __future__ import annotations

import argparse

from raidd.commands.output import describe_forget
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

    document = result.to_json()
    emit(args, document, lambda: print(describe_forget(document, args.dry_run)))
    return EXIT_OK
