"""The catalog's records and the versioned byte form of one commit's catalog delta.

A commit's delta lists, for each root the commit changed, the new versions of
paths and the deletions. The byte form is what gets sealed and written to
the array; docs/FORMAT.md ("Catalog") gives the layout field by field. All
integers are little-endian. Decoding checks every length against the bytes
that remain and rejects trailing bytes, so a truncated or padded delta fails
with a message naming the offset.
"""

import base64
import struct
from dataclasses import dataclass, field
from typing import Any

from raidd.errors import IntegrityError
from raidd.store.scan import EntryType

__all__ = [
    "CATALOG_DELTA_MAGIC",
    "CATALOG_DELTA_VERSION",
    "CHUNK_ID_SIZE",
    "ChunkEntry",
    "CommitDelta",
    "Deletion",
    "Forget",
    "Record",
    "Version",
    "decode_delta",
    "encode_delta",
    "json_name",
]

CATALOG_DELTA_MAGIC = b"RDCD"
CATALOG_DELTA_VERSION = 1
CHUNK_ID_SIZE = 32

FLAG_CHANGED_DURING_READ = 0x01
FLAG_SQLITE_COPY = 0x02
_KNOWN_FLAGS = FLAG_CHANGED_DURING_READ | FLAG_SQLITE_COPY

RECORD_VERSION = 1
RECORD_DELETION = 2
RECORD_FORGET = 3
U64 = struct.Struct("<Q")

_TYPE_CODES = {EntryType.FILE: 1, EntryType.DIRECTORY: 2, EntryType.SYMLINK: 3}
_TYPES_BY_CODE = {code: kind for kind, code in _TYPE_CODES.items()}

# magic, format version, flags, sequence, parent, time_ns, roots, records
HEADER = struct.Struct("<4sHHQQqII")
# record type, entry type, flags, reserved, root index, path length
RECORD_HEAD = struct.Struct("<BBBBHI")
# mode, uid, gid, reserved, mtime_ns, size, hard-link group, ctime_ns, inode
VERSION_FIXED = struct.Struct("<IIIIqQQqQ")
CHUNK = struct.Struct(f"<QI{CHUNK_ID_SIZE}s")
EXTENT = struct.Struct("<QQ")
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class ChunkEntry:
    """One chunk of a file version: offset in the file, length, chunk id."""

    offset: int
    length: int
    chunk_id: bytes


@dataclass(frozen=True)
class Version:
    """A path's content and metadata as written by one commit.

    `hard_link_group` is 0 for none; paths of one snapshot with the same
    non-zero group are hard links of one file. `extents` are the data runs;
    the rest of `size` is holes. `ctime_ns` and `inode` are not restored;
    the next backup compares them to tell an unchanged file from a changed one.
    """

    root: str
    path: bytes
    type: EntryType
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    chunks: tuple[ChunkEntry, ...] = ()
    extents: tuple[tuple[int, int], ...] = ()
    link_target: bytes | None = None
    hard_link_group: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    changed_during_read: bool = False
    sqlite_copy: bool = False
    ctime_ns: int = 0
    inode: int = 0


@dataclass(frozen=True, slots=True)
class Deletion:
    """A path that a commit found gone from its root."""

    root: str
    path: bytes


@dataclass(frozen=True, slots=True)
class Forget:
    """Commits removed from one root's history by retention or `forget`.

    Recording the removal as a record of a new commit keeps it on the array,
    so an index rebuilt from the deltas forgets the same commits.
    """

    root: str
    sequences: tuple[int, ...]


Record = Version | Deletion | Forget


@dataclass(frozen=True)
class CommitDelta:
    """One commit's changes: its sequence (the commit id), time, roots and records."""

    sequence: int
    parent: int
    time_ns: int
    roots: tuple[str, ...]
    records: tuple[Record, ...] = field(default=())


def json_name(name: bytes) -> str | dict[str, str]:
    """Return a path for JSON output: text when it is UTF-8, else {"base64": ...}."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(name).decode("ascii")}


def _pack_bytes(out: list[bytes], value: bytes, length: struct.Struct = U32) -> None:
    out.append(length.pack(len(value)))
    out.append(value)


def _encode_version(out: list[bytes], record: Version, root_index: int) -> None:
    flags = (FLAG_CHANGED_DURING_READ if record.changed_during_read else 0) | (
        FLAG_SQLITE_COPY if record.sqlite_copy else 0
    )
    out.append(
        RECORD_HEAD.pack(
            RECORD_VERSION, _TYPE_CODES[record.type], flags, 0, root_index, len(record.path)
        )
    )
    out.append(record.path)
    out.append(
        VERSION_FIXED.pack(
            record.mode,
            record.uid,
            record.gid,
            0,
            record.mtime_ns,
            record.size,
            record.hard_link_group,
            record.ctime_ns,
            record.inode,
        )
    )
    _pack_bytes(out, record.link_target or b"")
    out.append(U32.pack(len(record.xattrs)))
    for name, value in record.xattrs:
        _pack_bytes(out, name, U16)
        _pack_bytes(out, value)
    out.append(U32.pack(len(record.extents)))
    for offset, length in record.extents:
        out.append(EXTENT.pack(offset, length))
    out.append(U32.pack(len(record.chunks)))
    for chunk in record.chunks:
        if len(chunk.chunk_id) != CHUNK_ID_SIZE:
            raise ValueError(f"chunk id must be {CHUNK_ID_SIZE} bytes, got {len(chunk.chunk_id)}")
        out.append(CHUNK.pack(chunk.offset, chunk.length, chunk.chunk_id))


def encode_delta(delta: CommitDelta) -> bytes:
    """Serialize a commit delta (format version 1)."""
    root_index = {name: index for index, name in enumerate(delta.roots)}
    out = [
        HEADER.pack(
            CATALOG_DELTA_MAGIC,
            CATALOG_DELTA_VERSION,
            0,
            delta.sequence,
            delta.parent,
            delta.time_ns,
            len(delta.roots),
            len(delta.records),
        )
    ]
    for name in delta.roots:
        _pack_bytes(out, name.encode("utf-8"), U16)
    for record in delta.records:
        if record.root not in root_index:
            raise ValueError(f"record for root {record.root!r} not listed in the commit's roots")
        index = root_index[record.root]
        if isinstance(record, Deletion):
            out.append(RECORD_HEAD.pack(RECORD_DELETION, 0, 0, 0, index, len(record.path)))
            out.append(record.path)
        elif isinstance(record, Forget):
            out.append(RECORD_HEAD.pack(RECORD_FORGET, 0, 0, 0, index, 0))
            out.append(U32.pack(len(record.sequences)))
            out.extend(U64.pack(sequence) for sequence in record.sequences)
        else:
            _encode_version(out, record, index)
    return b"".join(out)


class _Reader:
    """Bounds-checked reads over a delta's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.offset = 0

    def take(self, size: int, what: str) -> bytes:
        if size > len(self.data) - self.offset:
            raise IntegrityError(
                f"catalog delta is truncated: {what} at offset {self.offset} needs {size} "
                f"bytes, {len(self.data) - self.offset} remain"
            )
        value = bytes(self.data[self.offset : self.offset + size])
        self.offset += size
        return value

    def unpack(self, layout: struct.Struct, what: str) -> tuple[Any, ...]:
        return layout.unpack(self.take(layout.size, what))

    def sized(self, length: struct.Struct, what: str) -> bytes:
        (size,) = self.unpack(length, what + " length")
        return self.take(size, what)


def _decode_version(
    reader: _Reader, root: str, path: bytes, type_code: int, flags: int
) -> Version:
    kind = _TYPES_BY_CODE.get(type_code)
    if kind is None:
        raise IntegrityError(f"catalog delta has unknown entry type {type_code} for {path!r}")
    if flags & ~_KNOWN_FLAGS:
        raise IntegrityError(f"catalog delta has unknown flags 0x{flags:02x} for {path!r}")
    fields = reader.unpack(VERSION_FIXED, "version fields")
    mode, uid, gid, _, mtime_ns, size, group, ctime_ns, inode = fields
    target = reader.sized(U32, "symlink target")
    (xattr_count,) = reader.unpack(U32, "xattr count")
    xattrs = tuple(
        (reader.sized(U16, "xattr name"), reader.sized(U32, "xattr value"))
        for _ in range(xattr_count)
    )
    (extent_count,) = reader.unpack(U32, "extent count")
    extents = tuple(
        (offset, length)
        for offset, length in (reader.unpack(EXTENT, "extent") for _ in range(extent_count))
    )
    (chunk_count,) = reader.unpack(U32, "chunk count")
    chunks = []
    for _ in range(chunk_count):
        offset, length, chunk_id = CHUNK.unpack(reader.take(CHUNK.size, "chunk"))
        chunks.append(ChunkEntry(offset, length, chunk_id))
    return Version(
        root=root,
        path=path,
        type=kind,
        mode=mode,
        uid=uid,
        gid=gid,
        mtime_ns=mtime_ns,
        size=size,
        chunks=tuple(chunks),
        extents=extents,
        link_target=target if kind is EntryType.SYMLINK else None,
        hard_link_group=group,
        xattrs=xattrs,
        changed_during_read=bool(flags & FLAG_CHANGED_DURING_READ),
        sqlite_copy=bool(flags & FLAG_SQLITE_COPY),
        ctime_ns=ctime_ns,
        inode=inode,
    )


def _root_name(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(f"catalog delta has a root name that is not UTF-8: {raw!r}") from None


def decode_delta(data: bytes) -> CommitDelta:
    """Parse a commit delta.

    Raises:
        IntegrityError: wrong magic, a format version newer than this reader
            (naming both), a truncated record, unknown codes or trailing bytes.
    """
    reader = _Reader(data)
    magic, version, _, sequence, parent, time_ns, root_count, record_count = reader.unpack(
        HEADER, "header"
    )
    if magic != CATALOG_DELTA_MAGIC:
        raise IntegrityError(
            f"not a catalog delta: magic {magic!r}, expected {CATALOG_DELTA_MAGIC!r}"
        )
    if version != CATALOG_DELTA_VERSION:
        raise IntegrityError(
            f"catalog delta format version {version} is not supported: this raidd reads "
            f"version {CATALOG_DELTA_VERSION} (upgrade raidd to read it)"
        )
    roots = tuple(_root_name(reader.sized(U16, "root name")) for _ in range(root_count))
    records: list[Record] = []
    for _ in range(record_count):
        record_type, type_code, flags, _, root_index, path_length = reader.unpack(
            RECORD_HEAD, "record header"
        )
        if root_index >= len(roots):
            raise IntegrityError(f"catalog delta record names root {root_index} of {len(roots)}")
        path = reader.take(path_length, "path")
        if record_type == RECORD_DELETION:
            records.append(Deletion(roots[root_index], path))
        elif record_type == RECORD_FORGET:
            (count,) = reader.unpack(U32, "forget count")
            sequences = tuple(reader.unpack(U64, "forgotten sequence")[0] for _ in range(count))
            records.append(Forget(roots[root_index], sequences))
        elif record_type == RECORD_VERSION:
            records.append(_decode_version(reader, roots[root_index], path, type_code, flags))
        else:
            raise IntegrityError(f"catalog delta has unknown record type {record_type}")
    if reader.offset != len(data):
        raise IntegrityError(
            f"catalog delta has {len(data) - reader.offset} trailing bytes after its last record"
        )
    return CommitDelta(sequence, parent, time_ns, roots, tuple(records))
