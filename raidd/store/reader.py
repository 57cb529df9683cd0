"""Read files that may change while they are read, and hand their chunks on.

A file is opened with O_NOFOLLOW, and its identity (size, mtime, ctime,
inode, device) is taken with fstat before and after the read. An lstat of the
path after the read makes a file replaced by rename count as changed too. If
the identity moved or fewer bytes arrived than the size promised, the file
is read again, up to `max_attempts` times in all; the last read is then kept
with `changed_during_read` set, which callers store as a marked version and
report. A read whose identity held is a consistent copy.

Sparse files are read run by run (SEEK_DATA/SEEK_HOLE), so holes are never
read or stored; each data run is chunked on its own.

SQLite databases (by their header) are first copied consistently by
raidd.store.sqlite_copy into the state directory, and the copy is read
instead. A database of at least `large_size` bytes is copied at most once
per `large_copy_interval`; in between, the reader returns a result with
`skipped_recent_copy` set and the caller keeps the previous version.
"""

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import structlog

from raidd.config import SqliteConfig
from raidd.store.chunker import Chunk, Chunker
from raidd.store.scan import data_extents
from raidd.store.sqlite_copy import (
    SIDECAR_SUFFIXES,
    CopyLedger,
    copy_database,
    journal_mode_of,
)

__all__ = [
    "ChunkRef",
    "FileIdentity",
    "FileRead",
    "FileReader",
    "find_sqlite_sidecars",
]

log = structlog.get_logger(__name__)

Ref = TypeVar("Ref")
DEFAULT_MAX_ATTEMPTS = 3
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


def _open_for_reading(path: bytes) -> int:
    """Open a file without following a final symlink and, where allowed, without atime.

    O_NOATIME keeps a backup from touching access times, but the kernel allows
    it only to the file's owner or a process with CAP_FOWNER (EPERM otherwise),
    so on EPERM the file is opened without it.
    """
    try:
        return os.open(path, _OPEN_FLAGS | os.O_NOATIME)
    except PermissionError as error:
        if error.errno != errno.EPERM:
            raise
        return os.open(path, _OPEN_FLAGS)


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """The stat fields that change when a file's content may have changed."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, info: os.stat_result) -> "FileIdentity":
        """Take the identity fields from a stat result."""
        return cls(info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)


@dataclass(frozen=True, slots=True)
class ChunkRef(Generic[Ref]):
    """A chunk's offset and length in the file, with the value the consumer returned."""

    offset: int
    length: int
    ref: Ref


@dataclass(frozen=True)
class FileRead(Generic[Ref]):
    """The result of reading one file.

    `extents` are the (offset, length) runs that hold data; the rest of
    `size` is holes. `identity` is the file's stat before the kept read.
    """

    path: bytes
    size: int
    chunks: tuple[ChunkRef[Ref], ...]
    extents: tuple[tuple[int, int], ...]
    identity: FileIdentity
    attempts: int
    changed_during_read: bool = False
    sqlite_mode: str | None = None
    skipped_recent_copy: bool = False


class _UnstableRead(Exception):
    """The file changed while it was read; carries the partial result."""

    def __init__(self, result: FileRead[object]) -> None:
        super().__init__("changed during read")
        self.result = result


class FileReader:
    """Read files into chunks with change detection and SQLite copies.

    One instance may be shared by threads; the consumer callback must be
    thread-safe if it is.
    """

    def __init__(
        self,
        chunker: Chunker,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        state_directory: Path | None = None,
        sqlite: SqliteConfig | None = None,
    ) -> None:
        """Create a reader.

        Args:
            chunker: the array's chunker.
            max_attempts: reads of a changing file before it is kept marked.
            state_directory: where SQLite copies are made; None reads
                databases like any other file (no consistent copy).
            sqlite: copy settings; the defaults when None.
        """
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be 1 or more, got {max_attempts}")
        self.chunker = chunker
        self.max_attempts = max_attempts
        self.state_directory = state_directory
        self.sqlite = sqlite or SqliteConfig()
        self.ledger = (
            CopyLedger(state_directory / "sqlite" / "ledger.json")
            if state_directory is not None
            else None
        )

    def read(self, path: bytes, consume: Callable[[Chunk], Ref]) -> FileRead[Ref]:
        """Read one file and pass each chunk to `consume`, in order.

        Chunks of a discarded attempt have already been consumed; they are
        content-addressed, so storing them twice costs nothing, and garbage
        collection frees those that no version references.

        Args:
            path: absolute path; a final symlink component is not followed.
            consume: called with each chunk; its return value is kept in the result.

        Raises:
            OSError: the file cannot be opened or read (permission denied,
                vanished, not a regular file); the caller reports it.
            SqliteCopyError: a database could not be copied consistently.
        """
        if self.state_directory is not None:
            mode = self._sqlite_mode(path)
            if mode is not None:
                return self._read_database(path, mode, consume)
        result: FileRead[Ref] | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._read_once(path, consume, attempt)
            except _UnstableRead as unstable:
                result = unstable.result  # type: ignore[assignment]
                log.info("file_changed_during_read", path=path, attempt=attempt)
        assert result is not None
        log.warning("file_kept_changed_during_read", path=path, attempts=self.max_attempts)
        return FileRead(
            path=result.path,
            size=result.size,
            chunks=result.chunks,
            extents=result.extents,
            identity=result.identity,
            attempts=self.max_attempts,
            changed_during_read=True,
        )

    def _read_once(
        self, path: bytes, consume: Callable[[Chunk], Ref], attempt: int
    ) -> FileRead[Ref]:
        fd = _open_for_reading(path)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", os.fsdecode(path))
            os.set_blocking(fd, True)
            size = before.st_size
            sparse = before.st_blocks * 512 < size
            extents = data_extents(fd, size) if sparse else ([(0, size)] if size else [])
            chunks: list[ChunkRef[Ref]] = []
            received = 0
            with os.fdopen(os.dup(fd), "rb", buffering=1 << 20) as stream:
                for offset, length in extents:
                    stream.seek(offset)
                    for chunk in self.chunker.chunk_stream(
                        stream, limit=length, base_offset=offset
                    ):
                        chunks.append(ChunkRef(chunk.offset, len(chunk.data), consume(chunk)))
                        received += len(chunk.data)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        try:
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        identity = FileIdentity.of(before)
        result: FileRead[Ref] = FileRead(
            path=path,
            size=size,
            chunks=tuple(chunks),
            extents=tuple(extents),
            identity=identity,
            attempts=attempt,
        )
        expected = sum(length for _, length in extents)
        stable = (
            FileIdentity.of(after) == identity
            and current is not None
            and FileIdentity.of(current) == identity
            and received == expected
        )
        if not stable:
            raise _UnstableRead(result)  # type: ignore[arg-type]
        return result

    def _sqlite_mode(self, path: bytes) -> str | None:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return journal_mode_of(os.pread(fd, 100, 0))
        finally:
            os.close(fd)

    def _read_database(
        self, path: bytes, mode: str, consume: Callable[[Chunk], Ref]
    ) -> FileRead[Ref]:
        assert self.state_directory is not None and self.ledger is not None
        original = os.stat(path, follow_symlinks=False)
        large = original.st_size >= self.sqlite.large_size
        if large and not self.ledger.is_due(path, self.sqlite.large_copy_interval):
            log.info("sqlite_copy_skipped_recent", path=path, size=original.st_size)
            return FileRead(
                path=path,
                size=original.st_size,
                chunks=(),
                extents=(),
                identity=FileIdentity.of(original),
                attempts=0,
                sqlite_mode=mode,
                skipped_recent_copy=True,
            )
        name = hashlib.blake2b(path, digest_size=16).hexdigest() + ".db"
        copy = copy_database(
            Path(os.fsdecode(path)),
            self.state_directory / "sqlite" / name,
            busy_timeout=self.sqlite.busy_timeout,
            copy_timeout=self.sqlite.copy_timeout,
        )
        try:
            inner = FileReader(self.chunker, max_attempts=1)
            copied = inner._read_once(os.fsencode(copy.path), consume, 1)
        finally:
            copy.path.unlink(missing_ok=True)
        if large:
            self.ledger.record(path)
        return FileRead(
            path=path,
            size=copied.size,
            chunks=copied.chunks,
            extents=copied.extents,
            identity=FileIdentity.of(original),
            attempts=1,
            sqlite_mode=copy.mode,
        )


def find_sqlite_sidecars(
    paths: Iterable[bytes], root: bytes, is_file: Collection[bytes] | None = None
) -> set[bytes]:
    """Return the paths that are a SQLite database's -journal, -wal or -shm file.

    Args:
        paths: relative paths of one scan.
        root: the root they are relative to.
        is_file: if given, only these paths count as possible databases.

    A side file counts only when the path without its suffix is a SQLite
    database; `notes.txt-wal` beside a text file is kept.
    """
    known = set(paths)
    candidates = known if is_file is None else known & set(is_file)
    sidecars = set()
    checked: dict[bytes, bool] = {}
    for path in known:
        for suffix in SIDECAR_SUFFIXES:
            if not path.endswith(suffix):
                continue
            base = path[: -len(suffix)]
            if base not in candidates:
                continue
            if base not in checked:
                checked[base] = _has_sqlite_header(root + b"/" + base)
            if checked[base]:
                sidecars.add(path)
    return sidecars


def _has_sqlite_header(path: bytes) -> bool:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return False
    try:
        return journal_mode_of(os.pread(fd, 100, 0)) is not None
    finally:
        os.close(fd)
