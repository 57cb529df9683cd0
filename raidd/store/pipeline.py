"""The backup pipeline: scan, read, chunk, hash, compress, seal, pack, write, commit.

The main thread scans each root (or only its changed paths, when the
caller names them: raidd.store.changes) and decides per entry: an entry whose type,
size, mtime, ctime, inode, mode, ownership and xattrs match its current
version is not read again. Changed files go, in batches of consecutive
small files or one large file at a time, to a pool of worker threads (see
worker_count), while a Prefetcher has the kernel read the next
files ahead. Each worker reads its files with FileReader and computes
every chunk's keyed id. A chunk not stored yet is compressed, sealed and
packed, by the worker itself when it is small and by a store pool of the
same size when it is 128 KiB or more, so a large file keeps two threads
busy. The packer's writer thread writes full stripes (parity, checksums,
member writes) meanwhile. pyfastcdc, zstd, hashlib, AES, numpy's XOR and
the member I/O release the GIL, so the steps overlap. The Python parts of
each step hold it: in a first backup of many small files the GIL, not the
cores, limits the speed (see docs/BENCHMARKS.md).

Memory is bounded whatever the file sizes, and does not grow with them:
per worker at most two batches are queued, and a worker keeps the reader's
1 MiB buffer, pyfastcdc's 4 MiB and one chunk (2 MiB at most). At most two
chunks per worker wait for the store pool or are stored there, each with
its compressed and sealed copies (about 6 MiB at the maximum chunk size).
The packer queues at most MAX_QUEUED stripe buffers (plus those one large
object spans) and keeps as many for reuse, and the engine's write batch is
about 2 x members x 512 KiB. With two workers and four members that adds up
to about 50 MiB at the worst, besides the interpreter (an estimate from
these sizes; bench/backup.py's first backup with one worker peaks at about
75 MiB in all).

Problems with single files (unreadable, vanished, changed during read, a
SQLite copy that failed) are reported and the rest of the commit goes on;
a failing pre_backup command skips its root.
"""

import os
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

import crypto
from raidd.config import WatchConfig
from raidd.errors import UsageError
from raidd.store.catalog_format import Deletion, Record, json_name
from raidd.store.changes import scan_changes
from raidd.store.chunker import Chunk
from raidd.store.commands import run_backup_command
from raidd.store.objects import KIND_CHUNK, IndexEntry, associated_data, object_header
from raidd.store.packing import Packer, PendingLocation
from raidd.store.prefetch import Prefetcher
from raidd.store.reader import FileRead, FileReader, find_sqlite_sidecars
from raidd.store.scan import Entry, EntryType, Excluder, ScanProblem, scan_root
from raidd.store.snapshot import HardLinkGroups, is_unchanged, version_from
from raidd.store.sqlite_copy import SqliteCopyError
from raidd.store.store import Store
from raidd.store.walstat import with_wal_ctimes

__all__ = ["BackupProblem", "BackupResult", "run_backup"]

log = structlog.get_logger(__name__)

MAX_WORKERS = 4
FILES_PER_WORKER = 2
# A worker task reads consecutive files up to this many, or this many bytes.
BATCH_FILES = 32
BATCH_BYTES = 4 << 20
# New chunks at least this long are stored by the store pool (see ChunkSink).
HANDOFF_SIZE = 128 << 10
# Chunks handed to the store pool and not stored yet, per worker.
CHUNKS_PER_WORKER = 2


@dataclass(frozen=True)
class BackupProblem:
    """One problem found during a backup: root, path, kind and message."""

    root: str
    path: bytes
    kind: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """Return the problem as JSON (a path that is not UTF-8 as {"base64": ...})."""
        return {
            "root": self.root,
            "path": json_name(self.path),
            "kind": self.kind,
            "message": self.message,
        }


@dataclass
class BackupResult:
    """What one backup did; `sequence` is None when nothing changed."""

    sequence: int | None = None
    time_ns: int | None = None
    roots: tuple[str, ...] = ()
    files_read: int = 0
    files_unchanged: int = 0
    bytes_read: int = 0
    chunks_new: int = 0
    bytes_stored: int = 0
    problems: list[BackupProblem] = field(default_factory=list)
    # Roots that could not be backed up at all (missing root, failed
    # pre_backup): root name -> the cause, naming the root's path.
    failed_roots: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON."""
        return {
            "commit": self.sequence,
            "time_ns": self.time_ns,
            "roots": list(self.roots),
            "files_read": self.files_read,
            "files_unchanged": self.files_unchanged,
            "bytes_read": self.bytes_read,
            "chunks_new": self.chunks_new,
            "bytes_stored": self.bytes_stored,
            "problems": [problem.to_json() for problem in self.problems],
            "failed_roots": dict(self.failed_roots),
        }


class ChunkSink:
    """Store chunks that are not stored yet; called from the file worker threads.

    A new chunk of at least HANDOFF_SIZE bytes is compressed, sealed and
    packed by the `store_pool`, so that the file worker goes on reading and
    hashing the next chunk of a large file meanwhile. At most `in_flight`
    chunks wait there or are being stored; consume() blocks beyond that.
    Smaller chunks (most small files) are stored by the file worker itself,
    which saves the hand-off. The first error of a pool task (ArrayFullError,
    say) is raised by the next consume() and by wait().
    """

    def __init__(
        self, store: Store, packer: Packer, store_pool: ThreadPoolExecutor, in_flight: int
    ) -> None:
        self.store = store
        self.packer = packer
        self.id_key = store.keys.chunk_id
        self.new: dict[bytes, tuple[int, PendingLocation]] = {}
        self._in_flight: set[bytes] = set()
        self._lock = threading.Lock()
        self._pool = store_pool
        self._slots = threading.BoundedSemaphore(in_flight)
        self._tasks: list[Future[None]] = []
        self._error: BaseException | None = None
        self.bytes_read = 0

    def consume(self, chunk: Any) -> bytes:
        """Return the chunk's id, storing the chunk first when it is new."""
        if self._error is not None:
            raise self._error
        object_id = crypto.chunk_id(self.id_key, chunk.data)
        with self._lock:
            self.bytes_read += len(chunk.data)
            if object_id in self.new or object_id in self._in_flight:
                return object_id
            if self.store.chunk_reusable(object_id):
                return object_id
            self._in_flight.add(object_id)
        if len(chunk.data) < HANDOFF_SIZE:
            self._store_chunk(object_id, chunk.data)
            return object_id
        self._slots.acquire()
        try:
            task = self._pool.submit(self._store_in_pool, object_id, chunk.data)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._tasks.append(task)
        return object_id

    def _store_in_pool(self, object_id: bytes, data: bytes) -> None:
        try:
            self._store_chunk(object_id, data)
        except BaseException as error:
            with self._lock:
                if self._error is None:
                    self._error = error
            raise
        finally:
            self._slots.release()

    def _store_chunk(self, object_id: bytes, data: bytes) -> None:
        # The same object as Store.seal_object builds, with the header and the
        # sealed block handed to the packer as two parts: joining them would
        # copy every chunk once more.
        try:
            encoded = self.store.compressor.encode(data).to_bytes()
            sealed = crypto.seal(
                self.store.keys.chunk,
                encoded,
                associated_data(self.store.array.uuid, KIND_CHUNK, object_id),
            )
            del encoded
            header = object_header(KIND_CHUNK, len(sealed), object_id)
            location = self.packer.add((header, sealed))
        finally:
            with self._lock:
                self._in_flight.discard(object_id)
        with self._lock:
            self.new[object_id] = (len(header) + len(sealed), location)

    def wait(self) -> None:
        """Wait for every chunk handed to the pool; raise the first error of one."""
        with self._lock:
            tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.exception()
        if self._error is not None:
            raise self._error

    def entries(self) -> list[IndexEntry]:
        """Return the new chunks' locations (after the packer was flushed)."""
        return [
            IndexEntry(object_id, length, location.resolve())
            for object_id, (length, location) in self.new.items()
        ]


def select_watches(store: Store, roots: Sequence[str] | None) -> list[WatchConfig]:
    """Return the watched roots named by path or name; every one when `roots` is empty.

    Raises:
        UsageError: a ROOT that is neither a watched root's name nor its path.
    """
    if store.config is None:
        raise UsageError("backup needs a configuration that lists the watched roots")
    watches = list(store.config.watches)
    if not roots:
        return watches
    chosen = []
    for root in roots:
        match = [
            w
            for w in watches
            if w.name == root or os.path.abspath(root) == os.path.abspath(w.path)
        ]
        if not match:
            known = ", ".join(f"{w.name} ({w.path})" for w in watches) or "none"
            raise UsageError(f"{root!r} is not a watched root's name or path (roots: {known})")
        chosen.extend(m for m in match if m not in chosen)
    return chosen


def run_backup(
    store: Store,
    roots: Sequence[str] | None = None,
    now_ns: int | None = None,
    *,
    changed_paths: Mapping[str, Collection[bytes]] | None = None,
) -> BackupResult:
    """Back up the watched roots named in `roots` (all when empty) as one commit.

    Args:
        store: the open, writable store.
        roots: watched roots by name or path; every root when empty.
        now_ns: the commit's clock reading; time.time_ns() when None.
        changed_paths: for a root name in it, the paths relative to the
            root (b"" for the root) that changed: only those, and what
            their change can have moved, are scanned, and every other path
            keeps its version (raidd.store.changes). A root not in it is
            scanned in full.

    A root that cannot be backed up at all is named in the result's
    `failed_roots`, and the other roots are committed.

    Raises:
        ArrayFullError: the array ran out of stripes; nothing was committed,
            and the stripes written for it are free again.
        UsageError: an unknown root.
    """
    watches = select_watches(store, roots)
    try:
        return _run_backup(store, watches, now_ns, changed_paths)
    except BaseException:
        # Nothing references what the failed commit wrote, so its stripes go
        # back to the free list now rather than after a restart.
        store.array.discard_uncommitted()
        raise


def _run_backup(
    store: Store,
    watches: Sequence[WatchConfig],
    now_ns: int | None,
    changed_paths: Mapping[str, Collection[bytes]] | None,
) -> BackupResult:
    assert store.config is not None
    result = BackupResult()
    sequence = store.catalog.next_commit(()).sequence
    packer = Packer(store.array)
    reader = FileReader(
        store.chunker, state_directory=store.state_directory, sqlite=store.config.sqlite
    )
    workers = worker_count()
    records: list[Record] = []
    changed_roots: list[str] = []
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="raidd-backup") as pool,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="raidd-store") as store_pool,
    ):
        sink = ChunkSink(store, packer, store_pool, workers * CHUNKS_PER_WORKER)
        slots = threading.BoundedSemaphore(workers * FILES_PER_WORKER)
        for watch in watches:
            changed = None if changed_paths is None else changed_paths.get(watch.name)
            root_records = _backup_root(
                store, watch, reader, sink, pool, slots, sequence, result, changed
            )
            if root_records:
                records.extend(root_records)
                changed_roots.append(watch.name)
        sink.wait()
    result.bytes_read = sink.bytes_read
    if not records:
        log.info("backup_no_changes", roots=[w.name for w in watches])
        return result
    delta = store.catalog.next_commit(changed_roots, now_ns)
    delta = replace(delta, records=tuple(records))
    store.commit(delta, packer, _lazy_entries(sink))
    result.sequence = delta.sequence
    result.time_ns = delta.time_ns
    result.roots = delta.roots
    result.chunks_new = len(sink.new)
    result.bytes_stored = sum(length for length, _ in sink.new.values())
    return result


def worker_count() -> int:
    """Return how many file workers (and store pool threads) a backup runs.

    One core fewer than the machine has, at least one and at most
    MAX_WORKERS. The Python parts of reading, hashing, compressing and
    sealing hold the GIL, so more threads than cores only wait for it. On
    2 cores, one file worker and one store thread backed up bench/backup.py's
    dataset as fast as two of each (4.67 to 5.24 s against 4.82 to 5.22 s,
    three first backups each, alternating) with a peak RSS of 78 to 79 MiB
    instead of 91 to 94 MiB.
    """
    return max(1, min(MAX_WORKERS, (os.cpu_count() or 1) - 1))


def _batches(sizes: Sequence[int]) -> Iterator[range]:
    """Split files into runs of consecutive ones that one worker task reads.

    A run ends at BATCH_FILES files or once it holds BATCH_BYTES, so small
    files share a task (one future and semaphore round per run, not per
    file), and a large file is a task of its own.
    """
    start = 0
    total = 0
    for index, size in enumerate(sizes):
        if index > start and (index - start >= BATCH_FILES or total + size > BATCH_BYTES):
            yield range(start, index)
            start, total = index, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))


def _read_batch(
    reader: FileReader, paths: Sequence[bytes], consume: Callable[[Chunk], bytes]
) -> list[FileRead[bytes] | OSError | SqliteCopyError]:
    """Read files in order; a file's OSError or SqliteCopyError is its result."""
    results: list[FileRead[bytes] | OSError | SqliteCopyError] = []
    for path in paths:
        try:
            results.append(reader.read(path, consume))
        except (OSError, SqliteCopyError) as error:
            results.append(error)
    return results


def _lazy_entries(sink: ChunkSink) -> Any:
    # Resolved only after the commit flushed the packer.
    yield from sink.entries()


def _backup_root(
    store: Store,
    watch: WatchConfig,
    reader: FileReader,
    sink: ChunkSink,
    pool: ThreadPoolExecutor,
    slots: threading.BoundedSemaphore,
    sequence: int,
    result: BackupResult,
    changed: Collection[bytes] | None = None,
) -> list[Record]:
    def report(path: bytes, kind: str, message: str) -> None:
        result.problems.append(BackupProblem(watch.name, path, kind, message))
        log.warning(
            "backup_problem",
            root=watch.name,
            path=path.decode("utf-8", "replace"),
            kind=kind,
            message=message,
        )

    def fail_root(kind: str, message: str) -> list[Record]:
        report(b"", kind, message)
        result.failed_roots[watch.name] = f"root {watch.name} ({watch.path}): {message}"
        return []

    if watch.pre_backup is not None:
        outcome = run_backup_command(
            watch.pre_backup, watch.path, watch.name, "pre_backup", watch.command_timeout
        )
        if not outcome.ok:
            return fail_root("pre_backup_failed", outcome.describe())
    scan_problems: list[ScanProblem] = []
    excluder = Excluder(watch.exclude)
    try:
        if changed is None:
            entries = list(scan_root(watch.path, excluder, scan_problems))
            previous = store.catalog.current(watch.name)
        else:
            subset = scan_changes(
                store.catalog, watch.name, watch.path, excluder, changed, scan_problems
            )
            entries, previous = subset.entries, subset.previous
    except OSError as error:
        return fail_root("root_unreadable", f"cannot open the root: {error.strerror}")
    root_bytes = os.fsencode(watch.path)
    files = [e.path for e in entries if e.type is EntryType.FILE]
    vanished = [p.path for p in scan_problems if p.kind == "vanished"]
    sidecars = find_sqlite_sidecars([*files, *vanished], root_bytes, is_file=files)
    for problem in scan_problems:
        # A database's -journal comes and goes with each transaction; it is never stored.
        if problem.path not in sidecars:
            report(problem.path, problem.kind, problem.message)
    entries = with_wal_ctimes(entries, root_bytes, sidecars, complete=changed is None)
    groups = HardLinkGroups(sequence)
    records: list[Record] = []
    pending: list[tuple[range, Future[list[FileRead[bytes] | OSError | SqliteCopyError]]]] = []
    seen: set[bytes] = set()
    to_read: list[tuple[Entry, int]] = []
    for entry in entries:
        if entry.path in sidecars:
            continue
        seen.add(entry.path)
        group = groups.assign(entry)
        if is_unchanged(entry, previous.get(entry.path)):
            result.files_unchanged += entry.type is EntryType.FILE
            continue
        if entry.type is not EntryType.FILE:
            records.append(version_from(watch.name, entry, None, group))
            continue
        to_read.append((entry, group))
    paths = [root_bytes + b"/" + entry.path if entry.path else root_bytes for entry, _ in to_read]
    # A sparse file is not read ahead: its holes would fill the page cache with zeros.
    sizes = [entry.size if entry.blocks * 512 >= entry.size else 0 for entry, _ in to_read]
    with Prefetcher(paths, sizes) as prefetcher:
        for batch in _batches([entry.size for entry, _ in to_read]):
            slots.acquire()
            prefetcher.advance(batch.start)
            future = pool.submit(
                _read_batch, reader, paths[batch.start : batch.stop], sink.consume
            )
            future.add_done_callback(lambda _future: slots.release())
            pending.append((batch, future))
    for batch, future in pending:
        for (entry, group), read in zip(
            to_read[batch.start : batch.stop], future.result(), strict=True
        ):
            if isinstance(read, OSError):
                report(entry.path, "unreadable", read.strerror or str(read))
                if entry.path not in previous:
                    seen.discard(entry.path)
                continue
            if isinstance(read, SqliteCopyError):
                report(entry.path, "sqlite_copy_failed", str(read))
                continue
            if read.skipped_recent_copy:
                continue
            result.files_read += 1
            if read.changed_during_read:
                report(entry.path, "changed_during_read", f"kept after {read.attempts} reads")
            records.append(version_from(watch.name, entry, read, group))
    records.extend(Deletion(watch.name, path) for path in sorted(previous.keys() - seen))
    if watch.post_backup is not None:
        outcome = run_backup_command(
            watch.post_backup, watch.path, watch.name, "post_backup", watch.command_timeout
        )
        if not outcome.ok:
            report(b"", "post_backup_failed", outcome.describe())
    records.sort(key=lambda r: (r.path, isinstance(r, Deletion)))
    return records
