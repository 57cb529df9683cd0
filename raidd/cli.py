"""The `raidd` command: the daemon and the offline commands."""

import argparse
import ctypes
import gc
import importlib
import logging
import sys
from collections.abc import Sequence

import structlog

from raidd import __version__
from raidd.errors import EXIT_USAGE
from raidd.toplevel import ArgumentsError, CommandParser, report_arguments_error, run_command

# mallopt parameter number of M_ARENA_MAX in glibc's <malloc.h>.
_M_ARENA_MAX = -8

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
    common = CommandParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="configuration file (default /etc/raidd/raidd.toml)",
    )
    parser = CommandParser(
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


def _limit_malloc_arenas() -> None:
    """Make glibc's malloc serve every thread from one arena (mallopt M_ARENA_MAX).

    By default glibc gives each thread that contends for malloc an arena of
    its own, up to 8 per core, and memory freed in one arena is not reused
    by another. The backup pipeline hands buffers between a dozen threads,
    so its first backup of bench/backup.py's dataset peaked at 123 MiB RSS
    with the default and at 93 MiB with one arena, with less system time
    (MALLOC_ARENA_MAX=1 in the environment, which sets the same parameter).
    Does nothing where the C library has no mallopt (musl).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(_M_ARENA_MAX, 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ArgumentsError as error:
        return report_arguments_error(error, argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # The offline commands print their results and warnings themselves, once each.
    # The engine's warning events would repeat them, so only errors are logged, to
    # the sys.stderr of each event (a replaced sys.stderr is followed). The daemon
    # configures its own logging.
    if args.command != "serve":
        # An offline command runs once and exits. The objects imported so far
        # live until then, so the cyclic collector skips them (freeze), and it
        # runs a tenth as often. A first backup of bench/backup.py's dataset
        # spent about 0.2 s of GIL time in it before and 0.15 s after (py-spy).
        gc.freeze()
        gc.set_threshold(7000, 10, 10)
        _limit_malloc_arenas()
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
