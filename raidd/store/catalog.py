"""The catalog index: commits and versions of paths per root, in local SQLite.

The catalog itself lives on the array as one sealed delta per commit
(raidd.store.catalog_format). This index is a cache in the state directory:
it is built by applying those deltas in commit order, and rebuilt from the
array when it is missing or stale.

Model:

- A commit has a sequence number (its id, 1, 2, 3, ...), the sequence of its
  parent, a time in ns since the epoch and the roots it changed. Commit
  times strictly increase: a new commit's time is the later of the clock
  and the previous commit's time plus 1 ns. A clock set back therefore
  cannot reorder history, and "at time T" always names one commit.
- A version is visible to commits `first <= C < last`. `first` is the commit
  that wrote it. `last` is the commit that wrote the path's next version or
  found it deleted, or NULL while the version is current.
- The state of a root at time T is, with C the newest commit at or before T,
  every version of that root visible to C.
"""

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from raidd.errors import IntegrityError
from raidd.store.catalog_format import (
    CHUNK,
    EXTENT,
    U16,
    U32,
    ChunkEntry,
    CommitDelta,
    Deletion,
    Forget,
    Record,
    Version,
)
from raidd.store.indexdb import check_schema_version
from raidd.store.scan import EntryType

__all__ = ["SCHEMA_VERSION", "CatalogIndex", "CommitInfo"]

SCHEMA_VERSION = 1
# Parameters per query when looking many paths up: below SQLite's limit of 999 before
# version 3.32 (32,766 since).
_QUERY_BATCH = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commits (
    sequence INTEGER PRIMARY KEY,
    parent INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    roots TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commit_roots (
    root TEXT NOT NULL,
    sequence INTEGER NOT NULL REFERENCES commits (sequence) ON DELETE CASCADE,
    PRIMARY KEY (root, sequence)
);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY,
    root TEXT NOT NULL,
    path BLOB NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER,
    type TEXT NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    link_target BLOB,
    hard_link_group INTEGER NOT NULL,
    changed_during_read INTEGER NOT NULL,
    sqlite_copy INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    xattrs BLOB NOT NULL,
    extents BLOB NOT NULL,
    chunks BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS versions_by_path ON versions (root, path, first);
CREATE INDEX IF NOT EXISTS versions_by_first ON versions (root, first);
CREATE INDEX IF NOT EXISTS versions_current ON versions (root, path) WHERE last IS NULL;
"""

_VERSION_COLUMNS = (
    "root, path, first, last, type, mode, uid, gid, mtime_ns, size, link_target, "
    "hard_link_group, changed_during_read, sqlite_copy, ctime_ns, inode, xattrs, extents, chunks"
)


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """A commit as the index lists it."""

    sequence: int
    parent: int
    time_ns: int
    roots: tuple[str, ...]


def _pack_xattrs(xattrs: Sequence[tuple[bytes, bytes]]) -> bytes:
    parts = []
    for name, value in xattrs:
        parts += [U16.pack(len(name)), name, U32.pack(len(value)), value]
    return b"".join(parts)


def _unpack_xattrs(blob: bytes) -> tuple[tuple[bytes, bytes], ...]:
    pairs = []
    offset = 0
    while offset < len(blob):
        (name_length,) = U16.unpack_from(blob, offset)
        offset += U16.size
        name = blob[offset : offset + name_length]
        offset += name_length
        (value_length,) = U32.unpack_from(blob, offset)
        offset += U32.size
        pairs.append((name, blob[offset : offset + value_length]))
        offset += value_length
    return tuple(pairs)


def _to_signed(value: int) -> int:
    """Map a u64 (an inode number) onto SQLite's signed 64-bit INTEGER."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _row_to_version(row: sqlite3.Row) -> Version:
    kind = EntryType(row["type"])
    return Version(
        root=row["root"],
        path=bytes(row["path"]),
        type=kind,
        mode=row["mode"],
        uid=row["uid"],
        gid=row["gid"],
        mtime_ns=row["mtime_ns"],
        size=row["size"],
        chunks=tuple(
            ChunkEntry(offset, length, chunk_id)
            for offset, length, chunk_id in CHUNK.iter_unpack(row["chunks"])
        ),
        extents=tuple(EXTENT.iter_unpack(row["extents"])),
        link_target=bytes(row["link_target"]) if row["link_target"] is not None else None,
        hard_link_group=row["hard_link_group"],
        xattrs=_unpack_xattrs(bytes(row["xattrs"])),
        changed_during_read=bool(row["changed_during_read"]),
        sqlite_copy=bool(row["sqlite_copy"]),
        ctime_ns=row["ctime_ns"],
        inode=row["inode"] % (1 << 64),
    )


class CatalogIndex:
    """The local SQLite index of the catalog; one writer at a time.

    Use as a context manager, or call close().
    """

    def __init__(self, path: Path | str) -> None:
        """Open or create the index at `path` (":memory:" for a throwaway one).

        Raises:
            IntegrityError: the file contains an index of another schema version;
                delete it and it is rebuilt from the array.
        """
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys = ON")
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)
        check_schema_version(self._db, SCHEMA_VERSION, "catalog index", path)

    def __enter__(self) -> "CatalogIndex":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def last_commit(self) -> CommitInfo | None:
        """Return the newest commit, or None for an empty catalog."""
        row = self._db.execute("SELECT * FROM commits ORDER BY sequence DESC LIMIT 1").fetchone()
        return _row_to_commit(row) if row is not None else None

    def _high_water(self) -> tuple[int, int] | None:
        """Return the sequence and time of the newest commit ever applied, forgotten or not."""
        rows = dict(
            self._db.execute(
                "SELECT key, value FROM meta WHERE key IN ('last_sequence', 'last_time_ns')"
            ).fetchall()
        )
        if "last_sequence" not in rows:
            return None
        return int(rows["last_sequence"]), int(rows["last_time_ns"])

    def next_commit(self, roots: Iterable[str], now_ns: int | None = None) -> CommitDelta:
        """Start the next commit: sequence last + 1, a time that never goes backwards.

        Args:
            roots: the names of the roots this commit changes.
            now_ns: the clock in ns since the epoch; time.time_ns() when None.
        """
        last = self._high_water()
        clock = time.time_ns() if now_ns is None else now_ns
        if last is None:
            return CommitDelta(1, 0, clock, tuple(roots))
        sequence, time_ns = last
        return CommitDelta(sequence + 1, sequence, max(clock, time_ns + 1), tuple(roots))

    def apply(self, delta: CommitDelta) -> None:
        """Record a commit's delta; deltas must arrive in commit order.

        Raises:
            IntegrityError: the sequence or time does not follow the last
                commit, or a record names a root the commit does not list.
        """
        last = self._high_water()
        if last is not None and (delta.sequence <= last[0] or delta.time_ns <= last[1]):
            raise IntegrityError(
                f"commit {delta.sequence} at {delta.time_ns} ns does not follow commit "
                f"{last[0]} at {last[1]} ns: deltas must be applied in order"
            )
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("last_sequence", str(delta.sequence)), ("last_time_ns", str(delta.time_ns))],
            )
            self._db.execute(
                "INSERT INTO commits (sequence, parent, time_ns, roots) VALUES (?, ?, ?, ?)",
                (delta.sequence, delta.parent, delta.time_ns, json.dumps(list(delta.roots))),
            )
            # A root whose only records are Forget records gets no snapshot
            # at this commit: forgetting is not a new state of the root.
            forget_only = {r.root for r in delta.records if isinstance(r, Forget)} - {
                r.root for r in delta.records if not isinstance(r, Forget)
            }
            self._db.executemany(
                "INSERT INTO commit_roots (root, sequence) VALUES (?, ?)",
                [(root, delta.sequence) for root in delta.roots if root not in forget_only],
            )
            for record in delta.records:
                self._apply_record(delta, record)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _apply_record(self, delta: CommitDelta, record: Record) -> None:
        if record.root not in delta.roots:
            raise IntegrityError(
                f"commit {delta.sequence} has a record for root {record.root!r}, which it "
                "does not list"
            )
        if isinstance(record, Forget):
            self._forget_in_transaction(record.root, record.sequences)
            return
        self._db.execute(
            "UPDATE versions SET last = ? WHERE root = ? AND path = ? AND last IS NULL",
            (delta.sequence, record.root, record.path),
        )
        if isinstance(record, Deletion):
            return
        self._db.execute(
            f"INSERT INTO versions ({_VERSION_COLUMNS}) VALUES "
            "(?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.root,
                record.path,
                delta.sequence,
                record.type.value,
                record.mode,
                record.uid,
                record.gid,
                record.mtime_ns,
                record.size,
                record.link_target,
                record.hard_link_group,
                int(record.changed_during_read),
                int(record.sqlite_copy),
                record.ctime_ns,
                _to_signed(record.inode),
                _pack_xattrs(record.xattrs),
                b"".join(EXTENT.pack(*extent) for extent in record.extents),
                b"".join(CHUNK.pack(c.offset, c.length, c.chunk_id) for c in record.chunks),
            ),
        )

    def commits(
        self, root: str | None = None, since_ns: int | None = None, limit: int | None = None
    ) -> list[CommitInfo]:
        """List commits newest first, optionally only those of one root or since a time."""
        query = "SELECT c.* FROM commits c"
        arguments: list[object] = []
        conditions = []
        if root is not None:
            query += " JOIN commit_roots r ON r.sequence = c.sequence"
            conditions.append("r.root = ?")
            arguments.append(root)
        if since_ns is not None:
            conditions.append("c.time_ns >= ?")
            arguments.append(since_ns)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY c.sequence DESC"
        if limit is not None:
            query += " LIMIT ?"
            arguments.append(limit)
        return [_row_to_commit(row) for row in self._db.execute(query, arguments)]

    def commit(self, sequence: int) -> CommitInfo | None:
        """Return the commit with this sequence, or None."""
        row = self._db.execute("SELECT * FROM commits WHERE sequence = ?", (sequence,)).fetchone()
        return _row_to_commit(row) if row is not None else None

    def commit_at(self, time_ns: int) -> CommitInfo | None:
        """Return the newest commit at or before `time_ns`, or None if there is none."""
        row = self._db.execute(
            "SELECT * FROM commits WHERE time_ns <= ? ORDER BY sequence DESC LIMIT 1", (time_ns,)
        ).fetchone()
        return _row_to_commit(row) if row is not None else None

    def state(self, root: str, sequence: int) -> Iterator[Version]:
        """Yield the versions of `root` visible to commit `sequence`, sorted by path."""
        rows = self._db.execute(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE root = ? AND first <= ? "
            "AND (last IS NULL OR last > ?) ORDER BY path",
            (root, sequence, sequence),
        )
        for row in rows:
            yield _row_to_version(row)

    def state_at(self, root: str, time_ns: int) -> Iterator[Version]:
        """Yield the state of `root` at `time_ns`: nothing before its first commit."""
        commit = self.commit_at(time_ns)
        if commit is not None:
            yield from self.state(root, commit.sequence)

    def current(self, root: str) -> dict[bytes, Version]:
        """Return the current version of every path of `root`, for change detection."""
        rows = self._db.execute(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE root = ? AND last IS NULL", (root,)
        )
        return {bytes(row["path"]): _row_to_version(row) for row in rows}

    def current_versions(self, root: str, paths: Iterable[bytes]) -> dict[bytes, Version]:
        """Return the current versions of the given paths of `root` that have one."""
        wanted = list(dict.fromkeys(paths))
        found: dict[bytes, Version] = {}
        for start in range(0, len(wanted), _QUERY_BATCH):
            batch = wanted[start : start + _QUERY_BATCH]
            rows = self._db.execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE root = ? AND last IS NULL "
                f"AND path IN ({', '.join('?' * len(batch))})",
                (root, *batch),
            )
            found.update((bytes(row["path"]), _row_to_version(row)) for row in rows)
        return found

    def current_under(self, root: str, prefix: bytes) -> dict[bytes, Version]:
        """Return the current versions of `prefix` and of every path under it."""
        if not prefix:
            return self.current(root)
        # Two range lookups, because SQLite scans the whole index for an OR of them.
        found = self.current_versions(root, [prefix])
        rows = self._db.execute(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE root = ? AND last IS NULL "
            "AND path > ? AND path < ?",
            (root, prefix + b"/", prefix + b"0"),
        )
        found.update((bytes(row["path"]), _row_to_version(row)) for row in rows)
        return found

    def current_child_names(self, root: str, directory: bytes) -> set[bytes]:
        """Return the names of the current entries directly inside `directory`."""
        if not directory:
            rows = self._db.execute(
                "SELECT path FROM versions WHERE root = ? AND last IS NULL AND path > ? "
                "AND instr(path, ?) = 0",
                (root, b"", b"/"),
            )
            return {bytes(name) for (name,) in rows}
        start = directory + b"/"
        # b"0" is the byte after b"/", so the range contains exactly the paths under `directory`.
        rows = self._db.execute(
            "SELECT substr(path, ?) FROM versions WHERE root = ? AND last IS NULL "
            "AND path > ? AND path < ? AND instr(substr(path, ?), ?) = 0",
            (len(start) + 1, root, start, directory + b"0", len(start) + 1, b"/"),
        )
        return {bytes(name) for (name,) in rows}

    def current_linked(
        self, root: str, inodes: Iterable[int], groups: Iterable[int]
    ) -> set[bytes]:
        """Return the paths of current files with one of `inodes` or hard-link `groups`."""
        inode_list = [_to_signed(inode) for inode in set(inodes)]
        group_list = [group for group in set(groups) if group]
        paths: set[bytes] = set()
        for column, values in (("inode", inode_list), ("hard_link_group", group_list)):
            for start in range(0, len(values), _QUERY_BATCH):
                batch = values[start : start + _QUERY_BATCH]
                rows = self._db.execute(
                    "SELECT path FROM versions WHERE root = ? AND last IS NULL AND type = ? "
                    f"AND {column} IN ({', '.join('?' * len(batch))})",
                    (root, EntryType.FILE.value, *batch),
                )
                paths.update(bytes(path) for (path,) in rows)
        return paths

    def history(self, root: str, path: bytes) -> list[tuple[int, int | None, Version]]:
        """Return (first, last, version) for every stored version of one path, oldest first."""
        rows = self._db.execute(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE root = ? AND path = ? ORDER BY first",
            (root, path),
        )
        return [(row["first"], row["last"], _row_to_version(row)) for row in rows]

    def forget(self, root: str, sequences: Iterable[int]) -> int:
        """Remove commits from one root's history in the index alone.

        The store records a forget on the array as a Forget record of a new
        commit, which apply() carries out with the same rules; this method is
        for an index that has no array behind it (tests, dry runs on a copy).

        Returns:
            The number of versions dropped.

        Raises:
            IntegrityError: `sequences` includes the root's newest commit.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            dropped = self._forget_in_transaction(root, sequences)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return dropped

    def _forget_in_transaction(self, root: str, sequences: Iterable[int]) -> int:
        """Drop the root's commits, then every version visible to none of the rest.

        A commit that lists several roots stays for the others; it is deleted
        once no root lists it. A version is dropped when it is visible to no
        remaining commit of its root. The root's newest commit is always kept.
        """
        wanted = sorted(set(sequences))
        newest = self._db.execute(
            "SELECT max(sequence) FROM commit_roots WHERE root = ?", (root,)
        ).fetchone()[0]
        if newest is not None and newest in wanted:
            raise IntegrityError(
                f"commit {newest} is the newest commit of root {root!r} and cannot be forgotten"
            )
        self._db.executemany(
            "DELETE FROM commit_roots WHERE root = ? AND sequence = ?",
            [(root, sequence) for sequence in wanted],
        )
        self._db.execute(
            "DELETE FROM commits WHERE NOT EXISTS "
            "(SELECT 1 FROM commit_roots r WHERE r.sequence = commits.sequence)"
        )
        cursor = self._db.execute(
            "DELETE FROM versions WHERE root = ? AND NOT EXISTS (SELECT 1 FROM commit_roots r "
            "WHERE r.root = versions.root AND r.sequence >= versions.first "
            "AND (versions.last IS NULL OR r.sequence < versions.last))",
            (root,),
        )
        return cursor.rowcount

    def referenced_chunks(self) -> set[bytes]:
        """Return the id of every chunk that some stored version references."""
        chunk_ids: set[bytes] = set()
        for (blob,) in self._db.execute("SELECT chunks FROM versions"):
            chunk_ids.update(chunk_id for _, _, chunk_id in CHUNK.iter_unpack(blob))
        return chunk_ids


def _row_to_commit(row: sqlite3.Row) -> CommitInfo:
    return CommitInfo(
        row["sequence"], row["parent"], row["time_ns"], tuple(json.loads(row["roots"]))
    )
