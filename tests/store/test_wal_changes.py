"""A write that reaches only a WAL database's -wal file is backed up all the same."""

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from raidd.store.pipeline import run_backup
from raidd.store.restore import restore, select
from raidd.store.store import Store
from tests.store.storekit import Setup, make_setup


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    return make_setup(tmp_path / "array", size=16 << 20)


# A writer in a process of its own, as the database's application is: the store's
# processes must not share POSIX locks with it.
WRITER = """
import sqlite3, sys
writer = sqlite3.connect(sys.argv[1], isolation_level=None)
writer.execute("PRAGMA journal_mode=WAL")
writer.execute("PRAGMA wal_autocheckpoint=0")
writer.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
for line in sys.stdin:
    count = int(line)
    writer.executemany("INSERT INTO notes (body) VALUES (?)", [("note",)] * count)
    print("done", flush=True)
"""


@contextlib.contextmanager
def wal_writer(database: Path) -> Iterator[Callable[[int], None]]:
    """Start the writer; yield a function that inserts rows and waits until they are in."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None

    def insert(count: int) -> None:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(f"{count}\n")
        process.stdin.flush()
        assert process.stdout.readline() == "done\n"

    try:
        insert(0)
        yield insert
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return int(copy.execute("SELECT count(*) FROM notes").fetchone()[0])


@pytest.mark.parametrize("changed", [None, {b"crm.db-wal"}], ids=["full-scan", "changed-paths"])
def test_rows_only_in_wal_are_restored(
    setup: Setup, tmp_path: Path, changed: set[bytes] | None
) -> None:
    database = setup.data / "crm.db"
    with wal_writer(database) as insert, Store.open(setup.config()) as store:
        first = run_backup(store).sequence
        database_stat = database.stat()
        insert(50)
        # The rows are only in the -wal file: the database file itself did not change.
        assert database.stat().st_mtime_ns == database_stat.st_mtime_ns
        assert database.stat().st_size == database_stat.st_size
        assert (setup.data / "crm.db-wal").stat().st_size > 0
        paths = None if changed is None else {"data": changed}
        second = run_backup(store, changed_paths=paths).sequence
        assert second is not None
        assert second > first
        assert run_backup(store, changed_paths=paths).sequence is None
        assert run_backup(store).sequence is None
        target = tmp_path / "out"
        result = restore(store, target, select(store, []), second)
        assert not result.lost
    assert _rows(target / "data" / "crm.db") == 50
