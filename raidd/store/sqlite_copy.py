"""Consistent copies of live SQLite databases, made in a short-lived child process.

A database is recognized by the 16-byte header "SQLite format 3\\0"; bytes 18
and 19 of the header (file format write and read versions) are 1 for the
rollback journal and 2 for WAL (sqlite.org/fileformat.html, section 1.3).

- Rollback journal: the child opens a read transaction (a SHARED lock, which
  a writer must wait for before it changes the file) and copies the file's
  bytes while the lock is held. The copy is byte-identical to a committed
  state.
- WAL: the child copies through SQLite's online backup API in one step,
  which reads one snapshot while writers go on. The copy is logically
  identical and passes `PRAGMA integrity_check`; its header bytes may differ.
  Opening a WAL database needs write access to its -shm file.

Why a child process: POSIX record locks belong to a process, and closing any
file descriptor of a file drops all of that process's locks on it. A copy
made by a thread of the daemon could lose a lock when another thread closes
the same file, and so copy a torn state.

The child is `python -m raidd.store.sqlite_child MODE SOURCE DESTINATION
BUSY_TIMEOUT` (stdlib only, so it starts quickly); it prints one JSON line
with the result.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from raidd.errors import RaiddError
from raidd.store.sqlite_child import MODE_ROLLBACK, MODE_WAL

__all__ = [
    "SIDECAR_SUFFIXES",
    "SQLITE_HEADER",
    "CopyLedger",
    "SqliteCopy",
    "SqliteCopyError",
    "copy_database",
    "journal_mode_of",
    "sqlite_sidecar_suffixes",
]

log = structlog.get_logger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
SIDECAR_SUFFIXES = (b"-journal", b"-wal", b"-shm")


class SqliteCopyError(RaiddError):
    """A database that could not be copied consistently; the message names it and why."""


def sqlite_sidecar_suffixes() -> tuple[bytes, ...]:
    """Return the suffixes of SQLite's side files, which are not stored separately."""
    return SIDECAR_SUFFIXES


def journal_mode_of(header: bytes) -> str | None:
    """Return "rollback" or "wal" for a SQLite header, None for anything else.

    Args:
        header: at least the first 20 bytes of a file.
    """
    if len(header) < 20 or not header.startswith(SQLITE_HEADER):
        return None
    if header[18] == 2 and header[19] == 2:
        return MODE_WAL
    if header[18] == 1 and header[19] == 1:
        return MODE_ROLLBACK
    return None


@dataclass(frozen=True, slots=True)
class SqliteCopy:
    """A finished copy: its path in the state directory and how it was made."""

    path: Path
    mode: str
    size: int


def copy_database(
    source: Path, destination: Path, busy_timeout: float = 10.0, copy_timeout: float = 600.0
) -> SqliteCopy:
    """Copy a live database consistently into `destination` through a child process.

    Args:
        source: the database file.
        destination: where the copy goes (a file in the state directory); it is
            replaced if present.
        busy_timeout: seconds the child waits for a writer's lock.
        copy_timeout: seconds after which the child is killed.

    Raises:
        SqliteCopyError: not a SQLite database, locked beyond busy_timeout,
            killed after copy_timeout, or any SQLite or I/O error in the child.
    """
    with open(source, "rb") as handle:
        mode = journal_mode_of(handle.read(100))
    if mode is None:
        raise SqliteCopyError(f"{str(source)!r} is not a SQLite 3 database")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    command = [
        sys.executable,
        "-m",
        "raidd.store.sqlite_child",
        mode,
        os.fsdecode(source),
        os.fsdecode(partial),
        repr(busy_timeout),
    ]
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=copy_timeout, check=False
        )
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise SqliteCopyError(
            f"copying the SQLite database {str(source)!r} timed out after {copy_timeout:g}s "
            "(raise sqlite.copy_timeout if the database is that large)"
        ) from None
    report = _parse_report(result.stdout)
    if result.returncode != 0 or report.get("error"):
        partial.unlink(missing_ok=True)
        reason = report.get("error") or result.stderr.strip()[-500:] or f"exit {result.returncode}"
        raise SqliteCopyError(f"copying the SQLite database {str(source)!r} failed: {reason}")
    os.replace(partial, destination)
    size = destination.stat().st_size
    log.info(
        "sqlite_copied",
        path=str(source),
        mode=report.get("mode", mode),
        size=size,
        seconds=round(time.monotonic() - started, 3),
    )
    return SqliteCopy(destination, str(report.get("mode", mode)), size)


def _parse_report(stdout: str) -> dict[str, object]:
    lines = stdout.strip().splitlines()
    if not lines:
        return {}
    try:
        report = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": f"unreadable output from the copy process: {lines[-1][:200]!r}"}
    return report if isinstance(report, dict) else {}


class CopyLedger:
    """The time of the last copy of each large database, kept in the state directory.

    A large database is copied at most once per interval. A clock set back
    (now earlier than the last copy) makes the database due at once, because
    skipping it until the clock catches up could leave it without a new copy
    for as long as the clock was wrong.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._times: dict[str, float] = {}
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            loaded = {}
        except (OSError, ValueError) as error:
            log.warning("sqlite_ledger_unreadable", path=str(path), error=str(error))
            loaded = {}
        if isinstance(loaded, dict):
            self._times = {
                str(key): float(value)
                for key, value in loaded.items()
                if isinstance(value, int | float)
            }

    def is_due(self, database: bytes, interval: float, now: float | None = None) -> bool:
        """Return True when `database` was never copied or its interval has passed."""
        current = time.time() if now is None else now
        last = self._times.get(_ledger_key(database))
        if last is None or current < last:
            return True
        return current - last >= interval

    def record(self, database: bytes, now: float | None = None) -> None:
        """Record a copy of `database` made at `now` and save the ledger atomically."""
        self._times[_ledger_key(database)] = time.time() if now is None else now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self._times, sort_keys=True), encoding="utf-8")
        os.replace(partial, self.path)


def _ledger_key(database: bytes) -> str:
    # JSON keys are text; os.fsdecode keeps undecodable bytes as lone
    # surrogates, which json writes as \udcXX escapes and reads back intact.
    return os.fsdecode(database)
