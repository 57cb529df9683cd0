"""The `restore` method: stream the entries of a snapshot to the client (read access).

Every entry the offline `raidd restore` writes is sent, in catalog path
order: `dir` and `symlink` frames, a `file` frame with its content as
`data` and `hole` frames, and a `hardlink` frame for each further name of
a hard-linked file (docs/PROTOCOL.md, "restore"). The directories above a
requested path come first as `dir` frames with `parent` true, which are
not counted in the result. The client writes them
with its own permissions; the daemon writes nothing. A PATH that matches
nothing in the commit is an `operation failed` error when no PATH
matches, and its position in `paths` is listed in the result's `missing`
when others do. Positions, not paths, so that no requested path reaches
the log or the audit record in clear.

A restore never keeps the store thread while it waits for its client: the
entries are listed in one turn of the store thread, and each file's
content is read in turns of at most `TURN_BYTES`, sent from the
connection's own thread in between. Commits run between the turns, so a
client that stops reading stalls only its own restore, and the
connection's write timeout closes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import structlog

from raidd.control.peer import Access
from raidd.control.protocol import OPERATION_FAILED, RpcError
from raidd.control.registry import Registry
from raidd.control.stream import bytes_fields, path_fields, xattr_fields
from raidd.errors import EXIT_USAGE, IntegrityError
from raidd.store.restore import (
    DataSource,
    PathsNotFoundError,
    drop_missing,
    select,
    stream_entries,
)
from raidd.store.restore_writer import RestoreEntry
from raidd.store.scan import EntryType

if TYPE_CHECKING:
    from raidd.control.server import Call
    from raidd.daemon.backups import BackupService
    from raidd.store.store import Store

log = structlog.get_logger(__name__)

StreamedEntry = tuple[RestoreEntry, DataSource | None]

# Content read per turn of the store thread. An estimate: 10 to 20 ms of reading,
# opening and decompressing on one core, which is how long a commit may wait for it.
TURN_BYTES = 1 << 20


def register(registry: Registry, backups: BackupService) -> None:
    """Register `restore`, which runs on the store thread of `backups`."""

    def restore(
        call: Call,
        *,
        paths: list[str] | None = None,
        commit: int | None = None,
        at_ns: int | None = None,
        dry_run: bool = False,
        overwrite: bool = False,
        target: str | None = None,
    ) -> dict[str, Any]:
        """Stream the entries of the selected paths as of a commit (the newest by default).

        `dry_run`, `overwrite` and `target` describe what the client will do
        with the stream. The daemon cannot check them and streams the same
        entries either way; the audit record keeps them.
        """

        def listing(store: Store) -> tuple[int, list[int], list[StreamedEntry]]:
            info = store.resolve_commit(at_ns=at_ns, sequence=commit)
            selections = select(store, [os.fsencode(path) for path in paths or []])
            try:
                selections, missing = drop_missing(store, paths or [], selections, info.sequence)
            except PathsNotFoundError as error:
                # The client names the paths: requested paths stay out of the log.
                raise RpcError(
                    OPERATION_FAILED,
                    f"{len(error.indexes)} of the requested paths not found in commit "
                    f"{error.sequence}",
                    {
                        "error": "PathsNotFoundError",
                        "exit_code": EXIT_USAGE,
                        "missing": error.indexes,
                        "commit": error.sequence,
                    },
                ) from None
            # NOTE: the whole listing is kept in memory (a few hundred bytes per entry),
            # so that no catalog cursor stays open while commits run between the turns.
            return info.sequence, missing, list(stream_entries(store, selections, info.sequence))

        with backups.reading():
            sequence, missing, entries = backups.locked(listing)
            counts = {"files": 0, "directories": 0, "symlinks": 0, "hard_links": 0, "lost": 0}
            sent = 0
            for entry, source in entries:
                call.check_connected()
                if entry.parent_only:
                    send_parent(call, entry)
                    continue
                in_turns = None if source is None else _in_turns(backups, source)
                kind, content_bytes = send_entry(call, entry, in_turns)
                counts[kind] += 1
                sent += content_bytes
        log.info("restore_streamed", commit=sequence, bytes=sent, **counts)
        return {"commit": sequence, "bytes": sent, **counts, "missing": missing}

    registry.add("restore", restore, Access.READ)


def _in_turns(backups: BackupService, source: DataSource) -> DataSource:
    """Return a source that reads `source` on the store thread, `TURN_BYTES` at a time."""

    def pieces() -> Iterator[tuple[int, bytes]]:
        reading = backups.locked(lambda _store: source())
        while True:
            turn, more = backups.locked(lambda _store: _take(reading, TURN_BYTES))
            yield from turn
            if not more:
                return

    return pieces


def _take(
    pieces: Iterator[tuple[int, bytes]], budget: int
) -> tuple[list[tuple[int, bytes]], bool]:
    """Return the next pieces up to `budget` bytes (one at least), and whether more follow."""
    taken: list[tuple[int, bytes]] = []
    size = 0
    while size < budget:
        piece = next(pieces, None)
        if piece is None:
            return taken, False
        taken.append(piece)
        size += len(piece[1])
    return taken, True


def send_parent(call: Call, entry: RestoreEntry) -> None:
    """Send a directory above the requested paths: a `dir` frame with `parent` true."""
    owner = {"mode": entry.mode, "mtime_ns": entry.mtime_ns, "uid": entry.uid, "gid": entry.gid}
    call.emit(
        "dir",
        {
            **path_fields(entry.path),
            **owner,
            "xattrs": xattr_fields(entry.xattrs),
            "parent": True,
        },
    )


def send_entry(call: Call, entry: RestoreEntry, source: DataSource | None) -> tuple[str, int]:
    """Send one entry's frames; return what it counts as in the result, and its content bytes.

    The count is `files`, `directories`, `symlinks`, `hard_links`, or
    `lost` for a file whose content could not be recovered: a `file_lost`
    frame ends that file, and the stream goes on.
    """
    owner = {"mode": entry.mode, "mtime_ns": entry.mtime_ns, "uid": entry.uid, "gid": entry.gid}
    if entry.type is EntryType.DIRECTORY:
        call.emit(
            "dir", {**path_fields(entry.path), **owner, "xattrs": xattr_fields(entry.xattrs)}
        )
        return "directories", 0
    if entry.type is EntryType.SYMLINK:
        target = bytes_fields("target", entry.link_target or b"")
        call.emit("symlink", {**path_fields(entry.path), **target, **owner})
        return "symlinks", 0
    if entry.hard_link_to is not None:
        call.emit(
            "hardlink", {**path_fields(entry.path), **bytes_fields("link_to", entry.hard_link_to)}
        )
        return "hard_links", 0
    assert source is not None
    try:
        sent = call.send_file(
            entry.path, source(), size=entry.size, **owner, xattrs=xattr_fields(entry.xattrs)
        )
    except IntegrityError as error:
        # The `file` frame went out before the first chunk was read.
        call.emit("file_lost", {"error": str(error)})
        log.error("restore_file_lost", path=entry.path, error=str(error))
        return "lost", 0
    return "files", sent
