"""The child process that copies one SQLite database; see raidd.store.sqlite_copy.

Run as `python -m raidd.store.sqlite_child MODE SOURCE DESTINATION
BUSY_TIMEOUT`. It prints one JSON line, {"mode": ...} or {"error": ...}, and
exits 0 or 1. It imports only the standard library, because every copy
starts a new interpreter and structlog alone takes longer to import than
copying a small database.
"""

import json
import os
import sqlite3
import sys
from urllib.parse import quote

MODE_ROLLBACK = "rollback"
MODE_WAL = "wal"
_COPY_BLOCK = 1 << 20


def _open_for_copy(source: str, busy_timeout: float) -> sqlite3.Connection:
    """Open a read transaction on a rollback-journal database, holding SHARED.

    The connection is read-only unless a hot journal (left by a writer that
    died mid-transaction) is present. SQLite must roll such a journal back
    before anyone may read, which a read-only connection cannot do, so the
    open is repeated read-write. The rollback is what the database's own
    application does on its next open, and it restores the last commit.
    """
    for mode in ("ro", "rw"):
        uri = "file:" + _uri_path(source) + "?mode=" + mode
        connection = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
        try:
            connection.execute("BEGIN")
            # The first read takes the SHARED lock and keeps it until COMMIT.
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return connection
        except sqlite3.OperationalError as error:
            connection.close()
            if mode == "rw" or "readonly" not in str(error):
                raise
    raise AssertionError("unreachable: the read-write attempt returns or raises")


def _copy_rollback(source: str, destination: str, busy_timeout: float) -> str:
    """Copy the file's bytes inside a read transaction; return the mode copied."""
    connection = _open_for_copy(source, busy_timeout)
    try:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() == "wal":
            connection.execute("COMMIT")
            return _copy_wal(source, destination, busy_timeout)
        # NOTE: closing this descriptor drops every POSIX lock this process
        # has on the file, SQLite's SHARED lock included. It is closed only
        # after the last byte is copied, so the copy is still consistent.
        with open(source, "rb") as reader, open(destination, "wb") as writer:
            # No fsync: the copy is read right away and then deleted.
            while block := reader.read(_COPY_BLOCK):
                writer.write(block)
        connection.execute("COMMIT")
        return MODE_ROLLBACK
    finally:
        connection.close()


def _copy_wal(source: str, destination: str, busy_timeout: float) -> str:
    """Copy through the online backup API in one step; return the mode copied."""
    if os.path.exists(destination):
        os.unlink(destination)
    origin = sqlite3.connect(source, timeout=busy_timeout)
    try:
        target = sqlite3.connect(destination)
        try:
            origin.backup(target, pages=-1)
            # Keep the database in WAL mode, as its application set it. Closing
            # the only connection checkpoints and removes the copy's -wal and
            # -shm, so the copy is one file whose header still says WAL.
            target.execute("PRAGMA journal_mode=WAL")
            target.commit()
        finally:
            target.close()
    finally:
        origin.close()
    return MODE_WAL


def _uri_path(path: str) -> str:
    return quote(os.path.abspath(path))


def _child_main(argv: list[str]) -> int:
    mode, source, destination, busy_timeout = argv[0], argv[1], argv[2], float(argv[3])
    try:
        if mode == MODE_WAL:
            copied = _copy_wal(source, destination, busy_timeout)
        else:
            copied = _copy_rollback(source, destination, busy_timeout)
    except (sqlite3.Error, OSError) as error:
        text = str(error)
        if "locked" in text or "busy" in text:
            text += f" (a writer held the lock for more than {busy_timeout:g}s)"
        print(json.dumps({"error": text}))
        return 1
    print(json.dumps({"mode": copied}))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
