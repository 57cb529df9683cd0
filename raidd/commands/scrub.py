"""`raidd scrub`: read every allocated stripe, check parity, repair (offline)."""

from __future__ import annotations

import argparse

from raidd.commands.storeopen import add_parser, emit, open_store
from raidd.errors import EXIT_INTEGRITY, EXIT_OK


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = add_parser(
        subparsers,
        common,
        "scrub",
        "check and repair every allocated stripe",
        "Read every allocated stripe, check strip checksums and parity, and rewrite what "
        "is proven wrong. The key is checked first, so nothing is written without it.",
    )
    parser.add_argument("--check-only", action="store_true", help="report, repair nothing")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_store(args, read_only=args.check_only) as store:
        result = store.array.scrub(repair=not args.check_only)
    document = {
        "errors": result.errors,
        "repaired": result.repaired,
        "lost_stripes": list(result.lost_stripes),
        "lost": result.lost_report(),
        "details": [detail.to_json() for detail in result.details],
    }

    def text() -> None:
        for detail in result.details:
            print(detail.describe())
        for line in result.describe_lost():
            print(line)
        print(
            f"{result.errors} bad strips, {result.repaired} repaired, "
            f"{len(result.lost_stripes)} stripes lost"
        )

    emit(args, document, text)
    return EXIT_INTEGRITY if result.lost_stripes else EXIT_OK
