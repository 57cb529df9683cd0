"""Object, index segment, manifest, page and metadata root layouts (docs/FORMAT.md, "Objects").

An object is a 40-byte plain header followed by one sealed block
(crypto.seal). Chunk objects are sealed under the chunk subkey, metadata
objects (catalog deltas, index segments, manifests, manifest pages) under
the metadata subkey, and audit objects (raidd.store.audit) under the audit
subkey. The associated data is the array UUID, the kind byte and the object
id, so an object moved from another array, or relabelled as another kind or
id, fails authentication.

An object may cross stripe boundaries: its location is a list of pieces
(stripe, offset, length) whose bytes, joined in order, are the header and
the sealed block. All integers are little-endian.
"""

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import crypto
from raidd.errors import IntegrityError

__all__ = [
    "KIND_AUDIT",
    "KIND_CHUNK",
    "KIND_DELTA",
    "KIND_MANIFEST",
    "KIND_PAGE",
    "KIND_SEGMENT",
    "LISTED_KINDS",
    "OBJECT_HEADER",
    "ROOT_SIZE",
    "IndexEntry",
    "Location",
    "Manifest",
    "MetadataRef",
    "MetadataRoot",
    "Piece",
    "decode_manifest",
    "decode_page",
    "decode_root",
    "decode_segment",
    "encode_manifest",
    "encode_page",
    "encode_root",
    "encode_segment",
    "object_header",
    "open_object",
    "parse_header",
]

OBJECT_MAGIC = b"RO"
OBJECT_VERSION = 1
KIND_CHUNK = 1
KIND_DELTA = 2
KIND_SEGMENT = 3
KIND_MANIFEST = 4
KIND_AUDIT = 5
KIND_PAGE = 6
KIND_NAMES = {
    KIND_CHUNK: "chunk",
    KIND_DELTA: "catalog delta",
    KIND_SEGMENT: "index segment",
    KIND_MANIFEST: "manifest",
    KIND_AUDIT: "audit object",
    KIND_PAGE: "manifest page",
}
# The kinds a manifest or a manifest page may list. A new kind of metadata
# object joins this set; paging, gc and check carry it like the others.
LISTED_KINDS = frozenset({KIND_DELTA, KIND_SEGMENT, KIND_AUDIT, KIND_PAGE})
ID_SIZE = 32

# magic, version, kind, sealed length, object id
OBJECT_HEADER = struct.Struct(f"<2sBBI{ID_SIZE}s")
# stripe, offset in the stripe's data, length
PIECE = struct.Struct("<QII")

SEGMENT_MAGIC = b"RDIS"
SEGMENT_VERSION = 1
SEGMENT_FLAG_BASE = 0x0001
# magic, version, flags, commit sequence, entry count
SEGMENT_HEADER = struct.Struct("<4sHHQI")
# object id, stored length (header + sealed), piece count, reserved
SEGMENT_ENTRY = struct.Struct(f"<{ID_SIZE}sIHH")

MANIFEST_MAGIC = b"RDMF"
MANIFEST_VERSION = 2
# Version 1 manifests (no pages; deltas, then segments) still load.
MANIFEST_VERSION_UNPAGED = 1
# magic, version, flags, commit sequence, reference count
MANIFEST_HEADER = struct.Struct("<4sHHQI")
# kind, copy count, height (pages only, 0 for others), object id, stored length
REF_HEAD = struct.Struct(f"<BBH{ID_SIZE}sI")

PAGE_MAGIC = b"RDMP"
PAGE_VERSION = 1
# magic, version, height, reserved, commit sequence, reference count
PAGE_HEADER = struct.Struct("<4sHBBQI")
U16 = struct.Struct("<H")

ROOT_MAGIC = b"RDMR"
ROOT_VERSION = 1
ROOT_SIZE = 256
ROOT_MAX_PIECES = 10
# magic, version, flags, sequence, time_ns, audit head, manifest id,
# manifest stored length, copy count, pieces of copy 1, pieces of copy 2, reserved
ROOT_HEADER = struct.Struct(f"<4sHHQq32s{ID_SIZE}sIBBBB")


@dataclass(frozen=True, slots=True)
class Piece:
    """A run of an object's bytes in one stripe: stripe number, offset, length."""

    stripe: int
    offset: int
    length: int


Location = tuple[Piece, ...]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """Where one chunk object is stored: its id, stored length and pieces."""

    object_id: bytes
    length: int
    pieces: Location


@dataclass(frozen=True, slots=True)
class MetadataRef:
    """A metadata object by kind and id, with one location per copy (two on RAID0).

    `height` is 0 except for a manifest page: 1 for a page that lists other
    objects, h + 1 for a page that lists pages of height h.
    """

    kind: int
    object_id: bytes
    length: int
    copies: tuple[Location, ...]
    height: int = 0


@dataclass(frozen=True, slots=True)
class Manifest:
    """The top of a commit's metadata: its references in commit order, oldest first.

    Older references sit in manifest pages (kind KIND_PAGE), listed here in
    place of what they contain; raidd.store.manifest expands and folds them.
    """

    sequence: int
    refs: tuple[MetadataRef, ...]

    def of_kind(self, kind: int) -> tuple[MetadataRef, ...]:
        """Return the references of one kind listed in the top itself (not in pages)."""
        return tuple(ref for ref in self.refs if ref.kind == kind)


@dataclass(frozen=True, slots=True)
class MetadataRoot:
    """The store's reference in the superblock: the newest manifest and the audit chain head."""

    sequence: int
    time_ns: int
    manifest: MetadataRef
    audit_head: bytes = bytes(32)


def associated_data(array_uuid: uuid.UUID, kind: int, object_id: bytes) -> bytes:
    """Return what a sealed object is bound to: array UUID, kind and id."""
    return array_uuid.bytes + bytes((kind,)) + object_id


def object_header(kind: int, sealed_length: int, object_id: bytes) -> bytes:
    """Return the 40-byte plain header of an object."""
    return OBJECT_HEADER.pack(OBJECT_MAGIC, OBJECT_VERSION, kind, sealed_length, object_id)


def parse_header(data: bytes, kind: int, object_id: bytes, where: str) -> int:
    """Check an object's header against the expected kind and id; return the sealed length.

    Raises:
        IntegrityError: bad magic, unknown version, or another kind or id.
    """
    if len(data) < OBJECT_HEADER.size:
        raise IntegrityError(f"{where}: object of {len(data)} bytes is shorter than its header")
    magic, version, found_kind, sealed_length, found_id = OBJECT_HEADER.unpack_from(data)
    if magic != OBJECT_MAGIC:
        raise IntegrityError(f"{where}: no object header (magic {magic!r})")
    if version != OBJECT_VERSION:
        raise IntegrityError(
            f"{where}: object format version {version}; this raidd reads {OBJECT_VERSION}"
        )
    if found_kind != kind or found_id != object_id:
        raise IntegrityError(
            f"{where}: header names {KIND_NAMES.get(found_kind, found_kind)} "
            f"{found_id.hex()[:16]}, expected {KIND_NAMES[kind]} {object_id.hex()[:16]}"
        )
    if OBJECT_HEADER.size + sealed_length != len(data):
        raise IntegrityError(
            f"{where}: header gives {sealed_length} sealed bytes, location has "
            f"{len(data) - OBJECT_HEADER.size}"
        )
    return int(sealed_length)


def open_object(
    key: crypto.SecretKey, array_uuid: uuid.UUID, kind: int, object_id: bytes, data: bytes
) -> bytearray:
    """Check the header and open the sealed block of one stored object.

    Raises:
        IntegrityError: the header does not match.
        crypto.AuthenticationError: the sealed block fails authentication.
    """
    where = f"{KIND_NAMES[kind]} {object_id.hex()[:16]}"
    parse_header(data, kind, object_id, where)
    sealed = memoryview(data)[OBJECT_HEADER.size :]
    return crypto.open(key, sealed, associated_data(array_uuid, kind, object_id))


class _Cursor:
    """Bounds-checked reading of a metadata structure; errors name the offset."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.offset = 0
        self.what = what

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        if self.offset + layout.size > len(self.data):
            raise IntegrityError(f"{self.what} is truncated at offset {self.offset}")
        values = layout.unpack_from(self.data, self.offset)
        self.offset += layout.size
        return values

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise IntegrityError(
                f"{self.what} has {len(self.data) - self.offset} trailing bytes at offset "
                f"{self.offset}"
            )


def _pack_pieces(out: list[bytes], pieces: Location) -> None:
    out.extend(PIECE.pack(p.stripe, p.offset, p.length) for p in pieces)


def _read_pieces(cursor: _Cursor, count: int) -> Location:
    pieces = []
    for _ in range(count):
        stripe, offset, length = cursor.unpack(PIECE)
        pieces.append(Piece(int(stripe), int(offset), int(length)))
    return tuple(pieces)


def _check_magic(magic: Any, version: Any, expected: bytes, known: int, what: str) -> None:
    if magic != expected:
        raise IntegrityError(f"{what}: magic {magic!r}, expected {expected!r}")
    if version != known:
        raise IntegrityError(f"{what}: format version {version}; this raidd reads {known}")


def encode_segment(sequence: int, entries: Sequence[IndexEntry], base: bool) -> bytes:
    """Return an index segment: chunk locations added by one commit (all of them if `base`)."""
    out = [
        SEGMENT_HEADER.pack(
            SEGMENT_MAGIC,
            SEGMENT_VERSION,
            SEGMENT_FLAG_BASE if base else 0,
            sequence,
            len(entries),
        )
    ]
    for entry in entries:
        out.append(SEGMENT_ENTRY.pack(entry.object_id, entry.length, len(entry.pieces), 0))
        _pack_pieces(out, entry.pieces)
    return b"".join(out)


def decode_segment(data: bytes) -> tuple[int, bool, list[IndexEntry]]:
    """Decode an index segment into (sequence, base flag, entries).

    Raises:
        IntegrityError: wrong magic or version, unknown flags, truncated or padded.
    """
    cursor = _Cursor(data, "index segment")
    magic, version, flags, sequence, count = cursor.unpack(SEGMENT_HEADER)
    _check_magic(magic, version, SEGMENT_MAGIC, SEGMENT_VERSION, "index segment")
    if int(flags) & ~SEGMENT_FLAG_BASE:
        raise IntegrityError(f"index segment has unknown flags {flags:#x}")
    entries = []
    for _ in range(int(count)):
        object_id, length, piece_count, _reserved = cursor.unpack(SEGMENT_ENTRY)
        pieces = _read_pieces(cursor, int(piece_count))
        entries.append(IndexEntry(bytes(object_id), int(length), pieces))
    cursor.finish()
    return int(sequence), bool(int(flags) & SEGMENT_FLAG_BASE), entries


def _encode_ref(out: list[bytes], ref: MetadataRef) -> None:
    out.append(REF_HEAD.pack(ref.kind, len(ref.copies), ref.height, ref.object_id, ref.length))
    for copy in ref.copies:
        out.append(U16.pack(len(copy)))
        _pack_pieces(out, copy)


def _decode_ref(cursor: _Cursor, kinds: frozenset[int]) -> MetadataRef:
    at = cursor.offset
    kind, copy_count, height, object_id, length = cursor.unpack(REF_HEAD)
    if kind not in kinds:
        raise IntegrityError(
            f"{cursor.what} lists an object of unknown kind {kind} at offset {at}"
        )
    if (kind == KIND_PAGE) != (height > 0):
        raise IntegrityError(
            f"{cursor.what} lists a {KIND_NAMES[kind]} of height {height} at offset {at}"
        )
    if not 1 <= copy_count <= 2:
        raise IntegrityError(f"{cursor.what} lists {copy_count} copies at offset {at}")
    copies = []
    for _ in range(int(copy_count)):
        (count,) = cursor.unpack(U16)
        copies.append(_read_pieces(cursor, int(count)))
    return MetadataRef(int(kind), bytes(object_id), int(length), tuple(copies), int(height))


def _decode_refs(cursor: _Cursor, count: int, kinds: frozenset[int]) -> tuple[MetadataRef, ...]:
    refs = tuple(_decode_ref(cursor, kinds) for _ in range(count))
    cursor.finish()
    return refs


def encode_manifest(manifest: Manifest) -> bytes:
    """Return the byte form of a manifest (version 2): header, then its references in order."""
    refs = manifest.refs
    out = [MANIFEST_HEADER.pack(MANIFEST_MAGIC, MANIFEST_VERSION, 0, manifest.sequence, len(refs))]
    for ref in refs:
        _encode_ref(out, ref)
    return b"".join(out)


def decode_manifest(data: bytes) -> Manifest:
    """Decode a manifest of version 2, or of version 1 (deltas and segments, no pages).

    Raises:
        IntegrityError: wrong magic or version, an unknown kind, truncated or padded.
    """
    cursor = _Cursor(data, "manifest")
    magic, version, _flags, sequence, count = cursor.unpack(MANIFEST_HEADER)
    if version == MANIFEST_VERSION_UNPAGED:
        kinds = frozenset({KIND_DELTA, KIND_SEGMENT})
        version = MANIFEST_VERSION
    else:
        kinds = LISTED_KINDS
    _check_magic(magic, version, MANIFEST_MAGIC, MANIFEST_VERSION, "manifest")
    return Manifest(int(sequence), _decode_refs(cursor, int(count), kinds))


def encode_page(sequence: int, height: int, refs: Sequence[MetadataRef]) -> bytes:
    """Return a manifest page: `refs` (each of height `height - 1`) sealed by commit `sequence`.

    Raises:
        ValueError: a reference of another height, or an empty page.
    """
    if not refs or any(ref.height != height - 1 for ref in refs):
        raise ValueError(f"a page of height {height} lists references of height {height - 1}")
    out = [PAGE_HEADER.pack(PAGE_MAGIC, PAGE_VERSION, height, 0, sequence, len(refs))]
    for ref in refs:
        _encode_ref(out, ref)
    return b"".join(out)


def decode_page(data: bytes) -> tuple[int, int, tuple[MetadataRef, ...]]:
    """Decode a manifest page into (commit sequence, height, references).

    Raises:
        IntegrityError: wrong magic or version, an empty page, a reference of
            the wrong height or kind, truncated or padded.
    """
    cursor = _Cursor(data, "manifest page")
    magic, version, height, _reserved, sequence, count = cursor.unpack(PAGE_HEADER)
    _check_magic(magic, version, PAGE_MAGIC, PAGE_VERSION, "manifest page")
    refs = _decode_refs(cursor, int(count), LISTED_KINDS)
    if not refs or height < 1 or any(ref.height != height - 1 for ref in refs):
        raise IntegrityError(
            f"manifest page of height {height} lists {len(refs)} references of heights "
            f"{sorted({ref.height for ref in refs})}"
        )
    return int(sequence), int(height), refs


def encode_root(root: MetadataRoot) -> bytes:
    """Return the 256-byte metadata root kept in the superblock.

    Raises:
        IntegrityError: the manifest's copies need more than 10 pieces in all.
    """
    copies = root.manifest.copies
    if not 1 <= len(copies) <= 2:
        raise ValueError(f"a manifest has 1 or 2 copies, got {len(copies)}")
    counts = [len(copy) for copy in copies] + [0] * (2 - len(copies))
    if sum(counts) > ROOT_MAX_PIECES:
        raise IntegrityError(
            f"the manifest spans {sum(counts)} stripe pieces; the metadata root can list at most "
            f"{ROOT_MAX_PIECES}: the commit history is too long for this stripe size"
        )
    out = [
        ROOT_HEADER.pack(
            ROOT_MAGIC,
            ROOT_VERSION,
            0,
            root.sequence,
            root.time_ns,
            root.audit_head,
            root.manifest.object_id,
            root.manifest.length,
            len(copies),
            counts[0],
            counts[1],
            0,
        )
    ]
    for copy in copies:
        _pack_pieces(out, copy)
    data = b"".join(out)
    return data + bytes(ROOT_SIZE - len(data))


def decode_root(data: bytes) -> MetadataRoot | None:
    """Decode the metadata root; None for an array the store has never committed to.

    Raises:
        IntegrityError: a root of another version or with impossible counts.
    """
    if not data.strip(b"\0"):
        return None
    if len(data) < ROOT_HEADER.size:
        raise IntegrityError(f"metadata root of {len(data)} bytes is too short")
    fields = ROOT_HEADER.unpack_from(data)
    magic, version, _flags, sequence, time_ns, audit, manifest_id, length = fields[:8]
    copy_count, first, second = fields[8:11]
    _check_magic(magic, version, ROOT_MAGIC, ROOT_VERSION, "metadata root")
    if not 1 <= copy_count <= 2 or first + second > ROOT_MAX_PIECES:
        raise IntegrityError(f"metadata root lists {copy_count} copies of {first}+{second} pieces")
    cursor = _Cursor(data[: ROOT_HEADER.size + (first + second) * PIECE.size], "metadata root")
    cursor.offset = ROOT_HEADER.size
    copies = [_read_pieces(cursor, first)]
    if copy_count == 2:
        copies.append(_read_pieces(cursor, second))
    manifest = MetadataRef(KIND_MANIFEST, manifest_id, length, tuple(copies))
    return MetadataRoot(sequence, time_ns, manifest, audit)
