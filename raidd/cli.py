"""The `raidd` command: the daemon and the offline commands."""

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

import structlog

from raidd import __version__
from raidd.errors import EXIT_USAGE
from raidd.toplevel import run_command

# One module per command under raidd/commands; each registers its own parser.
COMMAND_MODULES = (
    "raidd.commands.create",
    "raidd.commands.examine",
    "raidd.commands.assemble",
    "raidd.commands.key",
    "raidd.commands.header",
    "raidd.commands.backup",
    "raidd.commands.snapshots",
    "raidd.commands.ls",
    "raidd.commands.restore",
    "raidd.commands.forget",
    "raidd.commands.gc",
    "raidd.commands.check",
    "raidd.commands.audit",
    "raidd.commands.scrub",
    "raidd.commands.serve",
)


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS keeps a subcommand's default from overwriting --json given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="configuration file (default /etc/raidd/raidd.toml)",
    )
    parser = argparse.ArgumentParser(
        prog="raidd",
        parents=[common],
        description="Keep encrypted, versioned, redundant copies of data directories "
        "on a software RAID of block devices or image files.",
    )
    parser.add_argument("--version", action="version", version=f"raidd {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # The offline commands print their results and warnings themselves, once each.
    # The engine's warning events would repeat them, so only errors are logged, to
    # the sys.stderr of each event (a replaced sys.stderr is followed). The daemon
    # configures its own logging.
    if args.command != "serve":
        structlog.configure(
            logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        )
    name = " ".join(part for part in (args.command, getattr(args, "key_action", None)) if part)
    return run_command(
        f"raidd {name}",
        bool(getattr(args, "json", False)),
        lambda: args.run(args),
        always_traceback=args.command == "serve",
    )


if __name__ == "__main__":
    sys.exit(main())
