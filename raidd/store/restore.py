"""Restore: stream the versions of a snapshot with their authenticated content.

Each chunk is read through the array engine (strips verified, rebuilt from
parity when bad), authenticated and decompressed on the way out. A file
whose chunk cannot be recovered is reported lost, and the restore goes on
with the others.
"""

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from raidd.errors import IntegrityError, UsageError
from raidd.store.catalog_format import Version, json_name
from raidd.store.restore_fetch import ChunkFetcher, read_chunk
from raidd.store.restore_writer import RestoreEntry, RestoreReport, RestoreWriter
from raidd.store.scan import EntryType
from raidd.store.snapshot import is_under, locate_path, restore_entries
from raidd.store.store import Store

__all__ = [
    "PathsNotFoundError",
    "RestoreResult",
    "Selection",
    "drop_missing",
    "missing_selections",
    "not_found_message",
    "restore",
    "select",
    "stream_entries",
]

log = structlog.get_logger(__name__)

DataSource = Callable[[], Iterator[tuple[int, bytes]]]

# The restore takes catalog entries ahead of the writer until this many chunks
# wait to be read, or this many entries wait to be written.
LOOKAHEAD_CHUNKS = 64
LOOKAHEAD_FILES = 256


@dataclass(frozen=True)
class Selection:
    """A root and the root-relative path under it to restore (b"" for the whole root)."""

    root: str
    prefix: bytes


@dataclass
class RestoreResult:
    """The writer's report, the files lost beyond the tolerance and the commit used."""

    sequence: int
    report: RestoreReport
    lost: list[tuple[bytes, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON."""
        return {
            "commit": self.sequence,
            "written": [json_name(p) for p in self.report.written],
            "unchanged": [json_name(p) for p in self.report.unchanged],
            "conflicts": [{"path": json_name(p), "reason": r} for p, r in self.report.conflicts],
            "errors": [{"path": json_name(p), "error": e} for p, e in self.report.errors],
            "lost": [{"path": json_name(p), "error": e} for p, e in self.lost],
        }


def select(store: Store, paths: Sequence[bytes]) -> list[Selection]:
    """Turn restore PATH arguments into selections; every root without any.

    A PATH is a root's name, an absolute path under a configured root, or
    (without a configuration) `name/relative/path`.

    Raises:
        UsageError: a PATH that names no root.
    """
    known = store.root_names()
    if not paths:
        return [Selection(name, b"") for name in known]
    roots = {name: os.fsencode(os.path.abspath(f"/{name}")) for name in known}
    if store.config is not None:
        roots.update({w.name: os.fsencode(os.path.abspath(w.path)) for w in store.config.watches})
    chosen = []
    for path in paths:
        first, _, rest = path.partition(b"/")
        if not path.startswith(b"/") and os.fsdecode(first) in roots:
            chosen.append(Selection(os.fsdecode(first), rest.strip(b"/")))
            continue
        name, relative = locate_path(path, roots)
        chosen.append(Selection(name, relative))
    for selection in chosen:
        if selection.root not in known:
            raise UsageError(f"root {selection.root!r} has no commit in the catalog")
    return chosen


def missing_selections(
    store: Store, selections: Sequence[Selection], sequence: int
) -> list[Selection]:
    """Return the selections that match no entry of commit `sequence`, in their order.

    A whole root (an empty prefix) is never missing: select() has checked
    that the catalog knows it.
    """
    wanted: dict[str, set[bytes]] = {}
    for selection in selections:
        if selection.prefix:
            wanted.setdefault(selection.root, set()).add(selection.prefix)
    found: set[tuple[str, bytes]] = set()
    for root, prefixes in wanted.items():
        unseen = set(prefixes)
        for version in store.catalog.state(root, sequence):
            seen = {prefix for prefix in unseen if is_under(version.path, prefix)}
            unseen -= seen
            found.update((root, prefix) for prefix in seen)
            if not unseen:
                break
    return [s for s in selections if s.prefix and (s.root, s.prefix) not in found]


class PathsNotFoundError(UsageError):
    """No restore PATH matches anything in the commit.

    Attributes:
        indexes: the positions of the missing PATHs among the arguments.
        sequence: the commit.
    """

    def __init__(self, paths: Sequence[str], indexes: list[int], sequence: int) -> None:
        super().__init__(not_found_message([paths[i] for i in indexes], sequence))
        self.indexes = indexes
        self.sequence = sequence


def drop_missing(
    store: Store, paths: Sequence[str], selections: Sequence[Selection], sequence: int
) -> tuple[list[Selection], list[int]]:
    """Split the selections of restore PATH arguments into those found and those missing.

    Args:
        paths: the PATH arguments, in the order select() got them (empty for every root).
        selections: what select() returned for them.

    Returns:
        The selections that match entries of commit `sequence`, and the
        positions in `paths` of the arguments that match none.

    Raises:
        PathsNotFoundError: no PATH matches anything, so there is nothing to restore.
    """
    missing = missing_selections(store, selections, sequence)
    if not missing:
        return list(selections), []
    indexes = [index for index, selection in enumerate(selections) if selection in missing]
    if len(indexes) == len(selections):
        raise PathsNotFoundError(paths, indexes, sequence)
    return [s for s in selections if s not in missing], indexes


def not_found_message(paths: Sequence[str], sequence: int) -> str:
    """Return the error for restore PATH arguments that match nothing in a commit."""
    names = ", ".join(repr(path) for path in paths)
    return f"{names} not found in commit {sequence}; check the path with `ls`"


def ls_selection(store: Store, root: str, prefix: str = "") -> Selection:
    """Turn `ls` arguments into one selection: ROOT may also be `ROOT/PATH` or an absolute path.

    Raises:
        UsageError: ROOT names no root in the catalog, and the message lists the roots.
    """
    path = root if not prefix.strip("/") else f"{root.rstrip('/')}/{prefix.strip('/')}"
    (selection,) = select(store, [os.fsencode(path)])
    return selection


def ls_not_found_message(path: str, sequence: int) -> str:
    """Return the error for an `ls` PATH that matches nothing in a commit."""
    return (
        f"{path!r} not found in commit {sequence}; "
        "list the directory above it to see what it contains"
    )


def chunk_source(store: Store, version: Version) -> DataSource:
    """Return a callable that yields (offset, bytes) of a file version, authenticated."""

    def pieces() -> Iterator[tuple[int, bytes]]:
        for chunk in version.chunks:
            entry = store.objects.get(chunk.chunk_id)
            location = entry.pieces if entry is not None else None
            yield chunk.offset, read_chunk(store, chunk.chunk_id, location, chunk.length)

    return pieces


def _prefetched_source(
    store: Store, version: Version, fetcher: ChunkFetcher, file: int
) -> DataSource:
    """Return a data source whose first call takes the chunks the fetcher read ahead.

    The writer may call a source twice (compare, then write); the second
    call reads the chunks again directly.
    """
    taken = False

    def pieces() -> Iterator[tuple[int, bytes]]:
        nonlocal taken
        if taken:
            yield from chunk_source(store, version)()
            return
        taken = True
        yield from fetcher.pieces(file)

    return pieces


def stream_entries(
    store: Store, selections: Sequence[Selection], sequence: int
) -> Iterator[tuple[RestoreEntry, DataSource | None]]:
    """Yield each entry to restore with its content source (None for non-files).

    Paths are `<root name>/<path relative to the root>`, as they land under
    the target directory.
    """
    for entry, version in _stream_versions(store, selections, sequence):
        source = chunk_source(store, version) if entry.type is EntryType.FILE else None
        yield entry, source


def _stream_versions(
    store: Store, selections: Sequence[Selection], sequence: int
) -> Iterator[tuple[RestoreEntry, Version]]:
    for selection in selections:
        prefix = selection.prefix
        versions = store.catalog.state(selection.root, sequence)
        # The directories above the prefix come too, so that the parents the
        # writer creates get their recorded mode and mtime.
        for entry, version in restore_entries(
            versions,
            os.fsencode(selection.root),
            keep=lambda v, prefix=prefix: is_under(v.path, prefix) or is_under(prefix, v.path),
        ):
            if is_under(version.path, prefix):
                yield entry, version
            elif version.type is EntryType.DIRECTORY:
                yield replace(entry, parent_only=True), version


def _read_ahead(
    store: Store,
    selections: Sequence[Selection],
    sequence: int,
    fetcher: ChunkFetcher | None,
) -> Iterator[tuple[RestoreEntry, DataSource | None]]:
    """Yield entries like stream_entries, with their chunks handed to `fetcher` early.

    Entries are taken from the catalog until LOOKAHEAD_CHUNKS chunks wait in
    the fetcher, so it reads ahead across small files. A hard link to a file
    restored earlier usually needs no data, so its chunks are not fetched.
    """
    versions = _stream_versions(store, selections, sequence)
    if fetcher is None:
        for entry, version in versions:
            source = chunk_source(store, version) if entry.type is EntryType.FILE else None
            yield entry, source
        return
    ahead: deque[tuple[RestoreEntry, DataSource | None]] = deque()
    for number, (entry, version) in enumerate(versions):
        source: DataSource | None = None
        if entry.type is EntryType.FILE and entry.hard_link_to is None:
            fetcher.add(number, version)
            source = _prefetched_source(store, version, fetcher, number)
        elif entry.type is EntryType.FILE:
            source = chunk_source(store, version)
        ahead.append((entry, source))
        while ahead and (fetcher.queued >= LOOKAHEAD_CHUNKS or len(ahead) > LOOKAHEAD_FILES):
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()


def restore(
    store: Store,
    target: Path,
    selections: Sequence[Selection],
    sequence: int,
    *,
    overwrite: bool = False,
    dry_run: bool = False,
) -> RestoreResult:
    """Write the selected versions of commit `sequence` under `target`."""
    with (
        RestoreWriter(target, overwrite=overwrite, dry_run=dry_run) as writer,
        contextlib.ExitStack() as stack,
    ):
        # A dry run writes nothing and reads chunks only to compare existing files.
        fetcher = None if dry_run else stack.enter_context(ChunkFetcher(store))
        lost: list[tuple[bytes, str]] = []
        for entry, source in _read_ahead(store, selections, sequence, fetcher):
            try:
                writer.restore(entry, source)
            except IntegrityError as error:
                lost.append((entry.path, str(error)))
                log.error("restore_file_lost", path=entry.path, error=str(error))
        report = writer.finish()
    log.info(
        "restore_done",
        commit=sequence,
        written=len(report.written),
        unchanged=len(report.unchanged),
        conflicts=len(report.conflicts),
        lost=len(lost),
    )
    return RestoreResult(sequence, report, lost)
