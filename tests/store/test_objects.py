"""The byte layouts of objects, index segments, manifests and the metadata root."""

import uuid

import pytest

import crypto
from raidd.errors import IntegrityError
from raidd.store import objects
from raidd.store.objects import (
    KIND_CHUNK,
    KIND_DELTA,
    KIND_MANIFEST,
    KIND_PAGE,
    KIND_SEGMENT,
    IndexEntry,
    Manifest,
    MetadataRef,
    MetadataRoot,
    Piece,
)


def test_layout_sizes() -> None:
    assert objects.OBJECT_HEADER.size == 40
    assert objects.PIECE.size == 16
    assert objects.SEGMENT_HEADER.size == 20
    assert objects.SEGMENT_ENTRY.size == 40
    assert objects.MANIFEST_HEADER.size == 20
    assert objects.PAGE_HEADER.size == 20
    assert objects.REF_HEAD.size == 40
    assert objects.ROOT_HEADER.size == 96
    assert objects.ROOT_SIZE == 256
    assert objects.ROOT_HEADER.size + objects.ROOT_MAX_PIECES * objects.PIECE.size == 256


def test_object_header_offsets() -> None:
    header = objects.object_header(KIND_CHUNK, 0x01020304, bytes(range(32)))
    assert header[:2] == b"RO"
    assert header[2] == 1
    assert header[3] == KIND_CHUNK
    assert header[4:8] == bytes((4, 3, 2, 1))
    assert header[8:40] == bytes(range(32))


def test_segment_round_trip() -> None:
    entries = [
        IndexEntry(b"a" * 32, 1000, (Piece(7, 0, 600), Piece(9, 0, 400))),
        IndexEntry(b"b" * 32, 50, (Piece(2**40, 123, 50),)),
    ]
    data = objects.encode_segment(12, entries, base=True)
    assert objects.decode_segment(data) == (12, True, entries)
    with pytest.raises(IntegrityError, match="truncated"):
        objects.decode_segment(data[:-1])
    with pytest.raises(IntegrityError, match="trailing"):
        objects.decode_segment(data + b"\0")


def test_manifest_round_trip() -> None:
    delta = MetadataRef(KIND_DELTA, b"d" * 32, 300, ((Piece(1, 0, 300),), (Piece(5, 0, 300),)))
    segment = MetadataRef(KIND_SEGMENT, b"s" * 32, 90, ((Piece(1, 300, 90),),))
    page = MetadataRef(KIND_PAGE, b"p" * 32, 700, ((Piece(2, 0, 700),),), height=2)
    manifest = Manifest(4, (page, delta, segment))
    data = objects.encode_manifest(manifest)
    assert objects.decode_manifest(data) == manifest
    assert manifest.of_kind(KIND_DELTA) == (delta,)
    with pytest.raises(IntegrityError, match="magic"):
        objects.decode_manifest(b"XXXX" + data[4:])
    with pytest.raises(IntegrityError, match="trailing"):
        objects.decode_manifest(data + b"\0")


def test_manifest_offsets() -> None:
    page = MetadataRef(KIND_PAGE, bytes(range(32)), 0x0A0B0C0D, ((Piece(7, 8, 9),),), height=3)
    data = objects.encode_manifest(Manifest(0x0102030405060708, (page,)))
    assert data[0:4] == b"RDMF"
    assert data[4:6] == (2).to_bytes(2, "little")
    assert data[6:8] == bytes(2)
    assert data[8:16] == (0x0102030405060708).to_bytes(8, "little")
    assert data[16:20] == (1).to_bytes(4, "little")
    ref = data[20:]
    assert ref[0] == KIND_PAGE == 6
    assert ref[1] == 1
    assert ref[2:4] == (3).to_bytes(2, "little")
    assert ref[4:36] == bytes(range(32))
    assert ref[36:40] == (0x0A0B0C0D).to_bytes(4, "little")
    assert ref[40:42] == (1).to_bytes(2, "little")
    assert ref[42:58] == objects.PIECE.pack(7, 8, 9)
    assert len(ref) == 58


def test_page_offsets_and_checks() -> None:
    leaf = MetadataRef(KIND_DELTA, b"d" * 32, 300, ((Piece(1, 0, 300),),))
    data = objects.encode_page(0x1122, 1, [leaf, leaf])
    assert data[0:4] == b"RDMP"
    assert data[4:6] == (1).to_bytes(2, "little")
    assert data[6] == 1
    assert data[7] == 0
    assert data[8:16] == (0x1122).to_bytes(8, "little")
    assert data[16:20] == (2).to_bytes(4, "little")
    assert objects.decode_page(data) == (0x1122, 1, (leaf, leaf))
    with pytest.raises(ValueError, match="height"):
        objects.encode_page(1, 2, [leaf])
    with pytest.raises(ValueError, match="height"):
        objects.encode_page(1, 1, [])
    # A page that claims height 2 but lists objects is rejected when read.
    with pytest.raises(IntegrityError, match="height 2"):
        objects.decode_page(data[:6] + bytes((2,)) + data[7:])
    # A delta that claims a height is rejected.
    bad = objects.encode_manifest(Manifest(1, (leaf,)))
    with pytest.raises(IntegrityError, match="height 5"):
        objects.decode_manifest(bad[:22] + (5).to_bytes(2, "little") + bad[24:])
    with pytest.raises(IntegrityError, match="unknown kind 9"):
        objects.decode_manifest(bad[:20] + bytes((9,)) + bad[21:])


def test_unpaged_manifest_still_loads() -> None:
    """A version 1 manifest (deltas, then segments) reads as a top with no pages."""
    delta = MetadataRef(KIND_DELTA, b"d" * 32, 300, ((Piece(1, 0, 300),),))
    segment = MetadataRef(KIND_SEGMENT, b"s" * 32, 90, ((Piece(1, 300, 90),),))
    data = bytearray(objects.encode_manifest(Manifest(3, (delta, segment))))
    data[4:6] = (1).to_bytes(2, "little")
    assert objects.decode_manifest(bytes(data)) == Manifest(3, (delta, segment))
    page = MetadataRef(KIND_PAGE, b"p" * 32, 70, ((Piece(2, 0, 70),),), height=1)
    data = bytearray(objects.encode_manifest(Manifest(3, (page,))))
    data[4:6] = (1).to_bytes(2, "little")
    with pytest.raises(IntegrityError, match="unknown kind 6"):
        objects.decode_manifest(bytes(data))


def test_root_round_trip_and_limits() -> None:
    ref = MetadataRef(KIND_MANIFEST, b"m" * 32, 999, ((Piece(3, 0, 999),), (Piece(8, 0, 999),)))
    root = MetadataRoot(17, 1_700_000_000_000_000_000, ref, audit_head=b"h" * 32)
    data = objects.encode_root(root)
    assert len(data) == 256
    assert data[:4] == b"RDMR"
    assert objects.decode_root(data) == root
    assert objects.decode_root(bytes(256)) is None
    long = MetadataRef(KIND_MANIFEST, b"m" * 32, 1, (tuple(Piece(i, 0, 1) for i in range(11)),))
    with pytest.raises(IntegrityError, match="at most 10"):
        objects.encode_root(MetadataRoot(1, 1, long))


def test_sealed_object_bound_to_array_and_id() -> None:
    master = crypto.MasterKey.generate()
    keys = crypto.derive_subkeys(master)
    array = uuid.uuid4()
    object_id = b"i" * 32
    ad = objects.associated_data(array, KIND_CHUNK, object_id)
    sealed = crypto.seal(keys.chunk, b"payload", ad)
    stored = objects.object_header(KIND_CHUNK, len(sealed), object_id) + bytes(sealed)
    assert objects.open_object(keys.chunk, array, KIND_CHUNK, object_id, stored) == b"payload"
    with pytest.raises(crypto.AuthenticationError):
        objects.open_object(keys.chunk, uuid.uuid4(), KIND_CHUNK, object_id, stored)
    with pytest.raises(IntegrityError, match="expected"):
        objects.open_object(keys.chunk, array, KIND_CHUNK, b"j" * 32, stored)
    with pytest.raises(IntegrityError, match="expected"):
        objects.open_object(keys.chunk, array, KIND_DELTA, object_id, stored)
