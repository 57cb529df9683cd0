"""Consistent copies of live SQLite databases in each journal mode, with a writer running."""

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raidd.config import SqliteConfig
from raidd.store.chunker import Chunk, Chunker
from raidd.store.reader import FileReader
from raidd.store.sqlite_copy import (
    CopyLedger,
    SqliteCopyError,
    copy_database,
    journal_mode_of,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
NORTHWIND_SQL = SHARED / "data" / "northwind" / "create.sql"
JOURNAL_MODES = ["delete", "truncate", "persist", "wal"]

WRITER = """
import sqlite3, sys, os, time
path, mode, stop, ready = sys.argv[1:5]
connection = sqlite3.connect(path, timeout=30, isolation_level=None)
# The locks are what the test is about; durability of the writes is not.
connection.execute("PRAGMA synchronous=OFF")
connection.execute(f"PRAGMA journal_mode={mode}")
connection.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, body BLOB)")
connection.execute("CREATE TABLE IF NOT EXISTS lines (id INTEGER PRIMARY KEY, body BLOB)")
count = 0
while not os.path.exists(stop):
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("INSERT INTO orders (body) VALUES (randomblob(3000))")
    connection.execute("INSERT INTO lines (body) VALUES (randomblob(5000))")
    connection.execute("UPDATE orders SET body = randomblob(3000) WHERE id = random() % 50")
    connection.execute("COMMIT")
    count += 1
    # A pause between transactions, as a CRM has, so a reader can take its lock.
    time.sleep(0.002)
    if count == 100:
        open(ready, "w").close()
connection.close()
"""


def make_database(path: Path, mode: str, rows: int = 300) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute(f"PRAGMA journal_mode={mode}")
    connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, body BLOB)")
    connection.execute("CREATE TABLE lines (id INTEGER PRIMARY KEY, body BLOB)")
    connection.execute("BEGIN")
    for _ in range(rows):
        connection.execute("INSERT INTO orders (body) VALUES (randomblob(3000))")
        connection.execute("INSERT INTO lines (body) VALUES (randomblob(5000))")
    connection.execute("COMMIT")
    connection.close()


def check_copy(path: Path) -> tuple[int, int]:
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orders = connection.execute("SELECT count(*) FROM orders").fetchone()[0]
        lines = connection.execute("SELECT count(*) FROM lines").fetchone()[0]
    finally:
        connection.close()
    return orders, lines


def dump(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


@pytest.fixture
def live_writer(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    mode = request.param
    database = tmp_path / "live.db"
    make_database(database, mode)
    stop = tmp_path / "stop"
    ready = tmp_path / "ready"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(database), mode, str(stop), str(ready)]
    )
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline and writer.poll() is None:
        time.sleep(0.01)
    assert ready.exists(), "the writer process did not start writing"
    try:
        yield database
    finally:
        stop.write_bytes(b"")
        writer.wait(timeout=30)
    assert writer.returncode == 0


@pytest.mark.parametrize("live_writer", JOURNAL_MODES, indirect=True)
def test_copy_during_writes_is_consistent(live_writer: Path, tmp_path: Path) -> None:
    """Every copy taken while a second process commits is whole: integrity ok, tables agree."""
    mode = "wal" if journal_mode_of(live_writer.read_bytes()[:100]) == "wal" else "rollback"
    counts = []
    for index in range(2):
        copy = copy_database(live_writer, tmp_path / "state" / f"copy{index}.db", busy_timeout=20)
        assert copy.mode == mode
        orders, lines = check_copy(copy.path)
        assert orders == lines
        counts.append(orders)
        assert not Path(str(copy.path) + "-wal").exists()
        assert not Path(str(copy.path) + ".partial").exists()
    assert counts == sorted(counts)
    assert counts[-1] > 300


@pytest.mark.parametrize("mode", ["delete", "truncate", "persist"])
def test_rollback_copy_byte_identical(tmp_path: Path, mode: str) -> None:
    database = tmp_path / "idle.db"
    make_database(database, mode, rows=50)
    copy = copy_database(database, tmp_path / "state" / "copy.db")
    assert copy.mode == "rollback"
    assert copy.path.read_bytes() == database.read_bytes()


def test_wal_copy_logically_identical(tmp_path: Path) -> None:
    database = tmp_path / "idle.db"
    make_database(database, "wal", rows=50)
    keeper = sqlite3.connect(database)
    keeper.execute("INSERT INTO orders (body) VALUES (x'00')")
    keeper.commit()
    assert Path(str(database) + "-wal").stat().st_size > 0
    copy = copy_database(database, tmp_path / "state" / "copy.db")
    keeper.close()
    assert copy.mode == "wal"
    assert dump(copy.path) == dump(database)
    assert check_copy(copy.path) == (51, 50)


HOLDER = """
import sqlite3, sys, time, os
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.01)
connection.execute("ROLLBACK")
"""


def test_locked_database_times_out(tmp_path: Path) -> None:
    """A writer in another process that keeps its lock past busy_timeout fails the copy."""
    database = tmp_path / "locked.db"
    make_database(database, "delete", rows=5)
    ready = tmp_path / "ready"
    stop = tmp_path / "stop"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(database), str(ready), str(stop)])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(SqliteCopyError, match=r"locked.*more than 0.2s"):
            copy_database(database, tmp_path / "state" / "copy.db", busy_timeout=0.2)
    finally:
        stop.write_bytes(b"")
        holder.wait(timeout=30)
    assert not (tmp_path / "state" / "copy.db").exists()


def test_not_a_database_rejected(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    path.write_bytes(b"not sqlite" * 10)
    with pytest.raises(SqliteCopyError, match="is not a SQLite 3 database"):
        copy_database(path, tmp_path / "copy.db")


def test_header_modes() -> None:
    header = bytearray(b"SQLite format 3\x00" + bytes(84))
    header[18:20] = b"\x01\x01"
    assert journal_mode_of(bytes(header)) == "rollback"
    header[18:20] = b"\x02\x02"
    assert journal_mode_of(bytes(header)) == "wal"
    assert journal_mode_of(b"SQLite format 3\x00") is None
    assert journal_mode_of(b"PK\x03\x04" + bytes(96)) is None


def test_ledger_interval_and_clock_set_back(tmp_path: Path) -> None:
    ledger = CopyLedger(tmp_path / "ledger.json")
    name = b"/srv/crm/\xffbig.db"
    assert ledger.is_due(name, 3600, now=10_000)
    ledger.record(name, now=10_000)
    assert not ledger.is_due(name, 3600, now=12_000)
    assert ledger.is_due(name, 3600, now=13_600)
    assert ledger.is_due(name, 3600, now=5_000)
    reloaded = CopyLedger(tmp_path / "ledger.json")
    assert not reloaded.is_due(name, 3600, now=12_000)


def test_ledger_corrupt_file_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_bytes(b"{not json")
    assert CopyLedger(path).is_due(b"/a.db", 60, now=1.0)


def read_all(reader: FileReader, path: Path) -> tuple[object, bytes]:
    pieces: list[bytes] = []

    def consume(chunk: Chunk) -> None:
        pieces.append(chunk.data)

    result = reader.read(os.fsencode(path), consume)
    return result, b"".join(pieces)


def test_reader_copies_database(tmp_path: Path) -> None:
    database = tmp_path / "crm.db"
    make_database(database, "wal", rows=20)
    reader = FileReader(Chunker(bytes(32)), state_directory=tmp_path / "state")
    result, content = read_all(reader, database)
    assert result.sqlite_mode == "wal"
    restored = tmp_path / "restored.db"
    restored.write_bytes(content)
    assert dump(restored) == dump(database)
    assert list((tmp_path / "state" / "sqlite").glob("*.db")) == []


def test_reader_large_database_once_per_interval(tmp_path: Path) -> None:
    database = tmp_path / "big.db"
    make_database(database, "delete", rows=20)
    config = SqliteConfig(large_size=1024, large_copy_interval=3600)
    reader = FileReader(Chunker(bytes(32)), state_directory=tmp_path / "state", sqlite=config)
    first, content = read_all(reader, database)
    assert not first.skipped_recent_copy
    assert content == database.read_bytes()
    second, again = read_all(reader, database)
    assert second.skipped_recent_copy
    assert again == b""
    small = FileReader(
        Chunker(bytes(32)), state_directory=tmp_path / "state2", sqlite=SqliteConfig()
    )
    third, _ = read_all(small, database)
    assert not third.skipped_recent_copy


@pytest.fixture(scope="module")
def crm_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Northwind CRM database, built from the shared create.sql.

    The dataset builder runs the same script with a commit per statement,
    which takes over ten seconds; synchronous=OFF builds the same content
    in well under one.
    """
    if not NORTHWIND_SQL.exists():
        pytest.skip(f"the Northwind data {NORTHWIND_SQL} is absent")
    path = tmp_path_factory.mktemp("crm") / "northwind.db"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    connection.executescript(NORTHWIND_SQL.read_text(encoding="utf-8"))
    connection.commit()
    connection.close()
    return path


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_northwind_copy(crm_database: Path, tmp_path: Path, mode: str) -> None:
    database = tmp_path / "northwind.db"
    shutil.copyfile(crm_database, database)
    connection = sqlite3.connect(database)
    connection.execute(f"PRAGMA journal_mode={mode}")
    connection.close()
    copy = copy_database(database, tmp_path / "state" / "copy.db")
    assert dump(copy.path) == dump(database)
    if mode == "delete":
        assert copy.path.read_bytes() == database.read_bytes()


HOT_JOURNAL_WRITER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("PRAGMA cache_size=1")
connection.execute("BEGIN IMMEDIATE")
connection.execute("UPDATE orders SET body = x'00'")
open(sys.argv[2], "w").close()
time.sleep(60)
"""


def test_hot_journal_rolled_back_before_copy(tmp_path: Path) -> None:
    """A writer killed mid-transaction leaves a hot journal; the copy is the last commit."""
    database = tmp_path / "crashed.db"
    make_database(database, "delete", rows=200)
    committed = dump(database)
    ready = tmp_path / "ready"
    writer = subprocess.Popen(
        [sys.executable, "-c", HOT_JOURNAL_WRITER, str(database), str(ready)]
    )
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.kill()
    writer.wait(timeout=30)
    assert Path(str(database) + "-journal").exists()
    copy = copy_database(database, tmp_path / "state" / "copy.db")
    assert check_copy(copy.path) == (200, 200)
    assert dump(copy.path) == committed
