"""`raidd gc`: free stripes that no snapshot needs."""

from __future__ import annotations

import argparse

from raidd.commands.output import describe_gc
from raidd.commands.storeopen import add_parser, emit, open_store, warn_degraded
from raidd.errors import EXIT_OK
from raidd.store.maintenance import gc


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = add_parser(
        subparsers,
        common,
        "gc",
        "free unreferenced space",
        "Free stripes whose objects no snapshot references, after copying the live "
        "objects of sparsely used stripes to new ones. Crash-safe; runs on a full array.",
    )
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_store(args, read_only=args.dry_run) as store:
        warn_degraded("gc", store)
        result = gc(store, dry_run=args.dry_run)

    document = result.to_json()
    emit(args, document, lambda: print(describe_gc(document)))
    return EXIT_OK
