"""Shared parts of the store commands: options, opening the store, printing results."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raidd.config import DEFAULT_CONFIG_PATH, load_config
from raidd.errors import UsageError
from raidd.store.store import Store, UnlockKey
from raidd.timespec import TimeSpecError, parse_duration, parse_time

NS_PER_SECOND = 1_000_000_000


def add_parser(
    subparsers: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    name: str,
    help_text: str,
    description: str,
) -> argparse.ArgumentParser:
    """Add a store subcommand that accepts the common options before or after it."""
    return subparsers.add_parser(name, parents=[common], help=help_text, description=description)


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """Add --at TIME and --commit ID, which exclude each other."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--at",
        metavar="TIME",
        help="the snapshot at this time: ISO 8601 (local time unless a zone is given) "
        "or a duration ago such as 90s, 2h, 3d",
    )
    group.add_argument("--commit", type=int, metavar="ID", help="the snapshot of this commit")


def add_member_options(parser: argparse.ArgumentParser, member_help: str) -> None:
    """Add `--member` (repeatable) and the exclusive `--keyfile` / `--passphrase-file`."""
    parser.add_argument("--member", action="append", metavar="PATH", help=member_help)
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--keyfile", type=Path, help="unlock with this key file")
    keys.add_argument(
        "--passphrase-file", type=Path, help="unlock with the passphrase in this file"
    )


RECOVERY_MEMBER_HELP = (
    "disaster recovery: a member path (repeatable); needs --keyfile or "
    "--passphrase-file, or a passphrase typed on the terminal"
)


def time_ns(text: str | None, *, end: bool = True) -> int | None:
    """Parse a TIME option into ns since the epoch.

    Args:
        text: the option's value, or None.
        end: for an ISO time, return the end of the last unit it gives
            (for --at); False returns its start (for --since).

    Raises:
        UsageError: an invalid time.
    """
    if text is None:
        return None
    try:
        moment = parse_time(text)
    except TimeSpecError as error:
        raise UsageError(str(error)) from error
    # An ISO time names its whole last second (or microsecond), so the time
    # that `raidd snapshots` prints, in whole seconds, selects that commit.
    seconds = int(moment.timestamp() // 1)
    start = seconds * NS_PER_SECOND + moment.microsecond * 1000
    if _is_duration(text) or not end:
        return start
    if moment.microsecond or "." in text:
        return start + 999
    return start + NS_PER_SECOND - 1


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text.strip())
    except TimeSpecError:
        return False
    return True


def open_store(args: argparse.Namespace, *, read_only: bool) -> Store:
    """Open the store from --config, or from --member and a key for disaster recovery."""
    members = getattr(args, "member", None)
    if members:
        return Store.open_members(members, _command_line_key(args), read_only=read_only)
    config = load_config(getattr(args, "config", None) or DEFAULT_CONFIG_PATH)
    key = _command_line_key(args) if _has_key_option(args) else None
    return Store.open(config, read_only=read_only, key=key)


def _has_key_option(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "keyfile", None) or getattr(args, "passphrase_file", None))


def _command_line_key(args: argparse.Namespace) -> UnlockKey:
    keyfile = getattr(args, "keyfile", None)
    if keyfile is not None:
        return UnlockKey(keyfile=Path(keyfile))
    passphrase_file = getattr(args, "passphrase_file", None)
    if passphrase_file is not None:
        try:
            text = Path(passphrase_file).read_text(encoding="utf-8").rstrip("\n")
        except OSError as error:
            raise UsageError(
                f"cannot read passphrase file {passphrase_file}: {error.strerror}"
            ) from error
        return UnlockKey(passphrase=text)
    if sys.stdin.isatty():
        return UnlockKey(passphrase=getpass.getpass("Passphrase: "))
    raise UsageError("with --member, pass --keyfile KEY or --passphrase-file FILE")


def emit(args: argparse.Namespace, document: Any, text: Callable[[], None]) -> None:
    """Print `document` as JSON with --json, else call `text` to print it for people."""
    if getattr(args, "json", False):
        print(json.dumps(document, indent=2))
    else:
        text()


def warn(command: str, message: str) -> None:
    """Print a warning line on stderr."""
    print(f"raidd {command}: warning: {message}", file=sys.stderr)


def warn_degraded(command: str, store: Store) -> None:
    """Warn on stderr when the array runs degraded."""
    if store.array.degraded:
        warn(command, f"array {store.array.uuid} is degraded; replace the failed member")
