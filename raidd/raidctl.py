"""The `raidctl` command: a client of the raidd control socket.

Options (`--socket`, `--json`) are accepted before or after the
subcommand. Exit codes are those of the offline `raidd` commands: 0 done,
1 done with warnings, 2 usage or request error, 3 integrity error, 4 array
busy, 5 key error. A daemon that cannot be reached is a request error.
`status --test` exits 1 when degraded or behind and 3 when failed;
`audit --verify` exits 3 when the audit chain is broken.
"""

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

import structlog

from raidd import __version__
from raidd.control.client import ControlClient
from raidd.ctl.common import Context, socket_path
from raidd.errors import EXIT_USAGE
from raidd.toplevel import ArgumentsError, CommandParser, report_arguments_error, run_command

SUBCOMMAND_MODULES = (
    "raidd.ctl.status",
    "raidd.ctl.members",
    "raidd.ctl.jobs",
    "raidd.ctl.keys",
    "raidd.ctl.backups",
    "raidd.ctl.restore",
    "raidd.ctl.audit",
)


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS keeps a subcommand's default from overwriting an option given before it.
    common = CommandParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    common.add_argument(
        "--socket",
        default=argparse.SUPPRESS,
        help="control socket (default $RAIDD_SOCKET or /run/raidd/control.sock)",
    )
    parser = CommandParser(
        prog="raidctl",
        parents=[common],
        description="Query and administer a running raidd daemon through its control socket.",
    )
    parser.add_argument("--version", action="version", version=f"raidctl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ArgumentsError as error:
        return report_arguments_error(error, argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # raidctl prints its results and warnings itself, so library events that would
    # repeat them (a restore's conflicts) are dropped. Errors go to stderr, because
    # stdout carries the --json output.
    structlog.configure(
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
    )
    client = ControlClient(socket_path(args))

    def run() -> int:
        with client:
            return int(args.run(Context(args, client)))

    name = " ".join(part for part in (args.command, getattr(args, "key_action", None)) if part)
    return run_command(
        f"raidctl {name}",
        bool(getattr(args, "json", False)),
        run,
        reply_source=lambda: str(client.path) if client.replied else None,
    )


if __name__ == "__main__":
    sys.exit(main())
