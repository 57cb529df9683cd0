"""The backup pipeline: scan, read, chunk, hash, compress, seal, pack, write, commit.

The main thread scans each root (or only its changed paths, when the
caller names them: raidd.store.changes) and decides per entry: an entry whose type,
size, mtime, ctime, inode, mode, ownership and xattrs match its current
version is not read again. Changed files go to a pool of worker threads,
one per core and at most four. Each worker reads its file with FileReader
and computes every chunk's keyed id. A chunk not stored yet is then
compressed, sealed and packed. pyfastcdc, zstd, hashlib and AES release
the GIL, so the cores work in parallel.

Memory is bounded whatever the file sizes: at most two files per worker
are in flight (a semaphore), a worker holds one chunk (2 MiB at most) and
the reader's 4 MiB buffer, and the packer holds one stripe buffer.

Problems with single files (unreadable, vanished, changed during read, a
SQLite copy that failed) are reported and the rest of the commit goes on;
a failing pre_backup command skips its root.
"""

import os
import threading
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

import crypto
from raidd.config import WatchConfig
from raidd.errors import UsageError
from raidd.store.catalog_format import Deletion, Record, json_name
from raidd.store.changes import scan_changes
from raidd.store.commands import run_backup_command
from raidd.store.objects import KIND_CHUNK, IndexEntry
from raidd.store.packing import Packer, PendingLocation
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
    """Store chunks that are not stored yet; called from the worker threads."""

    def __init__(self, store: Store, packer: Packer) -> None:
        self.store = store
        self.packer = packer
        self.id_key = store.keys.chunk_id
        self.new: dict[bytes, tuple[int, PendingLocation]] = {}
        self._in_flight: set[bytes] = set()
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self.bytes_read = 0

    def consume(self, chunk: Any) -> bytes:
        """Return the chunk's id, storing the chunk first when it is new."""
        object_id = crypto.chunk_id(self.id_key, chunk.data)
        with self._lock:
            self.bytes_read += len(chunk.data)
            if object_id in self.new or object_id in self._in_flight:
                return object_id
            if self.store.objects.contains(object_id):
                return object_id
            self._in_flight.add(object_id)
        try:
            encoded = self.store.compressor.encode(chunk.data).to_bytes()
            stored = self.store.seal_object(KIND_CHUNK, object_id, encoded)
            location = self.packer.add(stored)
        finally:
            with self._lock:
                self._in_flight.discard(object_id)
        with self._lock:
            self.new[object_id] = (len(stored), location)
        return object_id

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
    sink = ChunkSink(store, packer)
    reader = FileReader(
        store.chunker, state_directory=store.state_directory, sqlite=store.config.sqlite
    )
    workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1))
    records: list[Record] = []
    changed_roots: list[str] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="raidd-backup") as pool:
        slots = threading.BoundedSemaphore(workers * FILES_PER_WORKER)
        for watch in watches:
            changed = None if changed_paths is None else changed_paths.get(watch.name)
            root_records = _backup_root(
                store, watch, reader, sink, pool, slots, sequence, result, changed
            )
            if root_records:
                records.extend(root_records)
                changed_roots.append(watch.name)
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
    pending: list[tuple[Entry, int, Future[FileRead[bytes]]]] = []
    seen: set[bytes] = set()
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
        slots.acquire()
        path = root_bytes + b"/" + entry.path if entry.path else root_bytes
        future = pool.submit(reader.read, path, sink.consume)
        future.add_done_callback(lambda _future: slots.release())
        pending.append((entry, group, future))
    for entry, group, future in pending:
        try:
            read = future.result()
        except OSError as error:
            report(entry.path, "unreadable", error.strerror or str(error))
            if entry.path not in previous:
                seen.discard(entry.path)
            continue
        except SqliteCopyError as error:
            report(entry.path, "sqlite_copy_failed", str(error))
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
