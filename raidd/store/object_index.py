"""The local object index: chunk id -> stored length and pieces, in SQLite.

It is a cache of the index segments on the array, rebuilt from them when
missing or stale. `meta.root` holds the metadata root (hex) that the cache
reflects; the store compares it with the superblock's root at open.
"""

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from raidd.store.indexdb import check_schema_version
from raidd.store.objects import PIECE, IndexEntry, Piece

__all__ = ["OBJECT_SCHEMA_VERSION", "ObjectIndex"]

OBJECT_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    id BLOB PRIMARY KEY,
    length INTEGER NOT NULL,
    pieces BLOB NOT NULL
) WITHOUT ROWID;
"""


def _pack(entry: IndexEntry) -> bytes:
    return b"".join(PIECE.pack(p.stripe, p.offset, p.length) for p in entry.pieces)


def _entry(object_id: bytes, length: int, blob: bytes) -> IndexEntry:
    pieces = tuple(Piece(s, o, n) for s, o, n in PIECE.iter_unpack(blob))
    return IndexEntry(bytes(object_id), length, pieces)


class ObjectIndex:
    """Chunk locations by id; one writer at a time. Use as a context manager."""

    def __init__(self, path: Path | str) -> None:
        """Open or create the index at `path`.

        Raises:
            IntegrityError: the file has another schema version; delete it.
        """
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)
        check_schema_version(self._db, OBJECT_SCHEMA_VERSION, "object index", path)

    def __enter__(self) -> "ObjectIndex":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def root(self) -> bytes | None:
        """Return the metadata root this cache reflects, or None when never set."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'root'").fetchone()
        return bytes.fromhex(row[0]) if row is not None else None

    def get(self, object_id: bytes) -> IndexEntry | None:
        """Return the location of one chunk object, or None."""
        row = self._db.execute(
            "SELECT length, pieces FROM objects WHERE id = ?", (object_id,)
        ).fetchone()
        return _entry(object_id, row[0], row[1]) if row is not None else None

    def contains(self, object_id: bytes) -> bool:
        """Return True when the chunk is stored."""
        return (
            self._db.execute("SELECT 1 FROM objects WHERE id = ?", (object_id,)).fetchone()
            is not None
        )

    def entries(self) -> Iterator[IndexEntry]:
        """Yield every stored chunk's location."""
        for object_id, length, blob in self._db.execute("SELECT id, length, pieces FROM objects"):
            yield _entry(object_id, length, blob)

    def count(self) -> int:
        """Return the number of chunk objects."""
        return int(self._db.execute("SELECT count(*) FROM objects").fetchone()[0])

    def record(
        self, entries: Iterable[IndexEntry], root: bytes, replace_all: bool = False
    ) -> None:
        """Add entries (or replace every entry) and mark the cache as of `root`, atomically."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if replace_all:
                self._db.execute("DELETE FROM objects")
            self._db.executemany(
                "INSERT OR REPLACE INTO objects (id, length, pieces) VALUES (?, ?, ?)",
                ((e.object_id, e.length, _pack(e)) for e in entries),
            )
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('root', ?)", (root.hex(),))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
