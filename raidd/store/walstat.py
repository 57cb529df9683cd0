"""The change time of a WAL-mode SQLite database, counting its -wal file.

A transaction in WAL mode is appended to the `-wal` file, and the database
file itself changes only when a checkpoint copies the pages back
(sqlite.org/wal.html). Its stat alone would therefore show no change
after a write, and the rows would wait for the next checkpoint to be
backed up. So the change time compared and recorded for a database is
the later of its own ctime and its `-wal` file's mtime: every write to
the `-wal` moves it, while the mtime, which a restore sets, stays the
database's own.

NOTE: the `-wal` file's ctime would not do. SQLite running as root gives
the `-wal` file the database's owner when it opens it, and here the
backup's own copy moved that ctime (not the mtime) every time.
"""

import dataclasses
import os
import stat
from collections.abc import Collection, Sequence

from raidd.store.scan import Entry, EntryType
from raidd.store.sqlite_copy import journal_mode_of

__all__ = ["with_wal_ctimes"]

WAL_SUFFIX = b"-wal"


def with_wal_ctimes(
    entries: Sequence[Entry], root: bytes, sidecars: Collection[bytes], *, complete: bool
) -> list[Entry]:
    """Return `entries` with each database's ctime raised to its -wal file's mtime.

    Args:
        entries: one scan's entries of a root.
        root: the root they are relative to.
        sidecars: the entries' paths that are a database's side file
            (`find_sqlite_sidecars`).
        complete: the entries come from a full scan, which lists every
            `-wal` file. A subset scan may lack one, so the files it found
            are checked for a `-wal` beside them.
    """
    by_path = {entry.path: entry for entry in entries}
    databases = {path[: -len(WAL_SUFFIX)] for path in sidecars if path.endswith(WAL_SUFFIX)}
    result = []
    for entry in entries:
        wal_written = None
        if entry.type is EntryType.FILE:
            wal = by_path.get(entry.path + WAL_SUFFIX)
            if entry.path in databases and wal is not None:
                wal_written = wal.mtime_ns
            elif not complete and wal is None:
                wal_written = _database_wal_mtime(root + b"/" + entry.path)
        if wal_written is not None and wal_written > entry.ctime_ns:
            entry = dataclasses.replace(entry, ctime_ns=wal_written)
        result.append(entry)
    return result


def _database_wal_mtime(path: bytes) -> int | None:
    """Return the mtime of the -wal file beside a SQLite database at `path`, or None."""
    try:
        wal = os.lstat(path + WAL_SUFFIX)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(wal.st_mode) or not _is_sqlite(path):
        return None
    return wal.st_mtime_ns


def _is_sqlite(path: bytes) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        # Unreadable or gone: the reader reports the database itself.
        return False
    try:
        return journal_mode_of(os.pread(fd, 100, 0)) is not None
    finally:
        os.close(fd)
