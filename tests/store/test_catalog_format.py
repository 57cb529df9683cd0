"""The commit delta's byte form: layout, round trip and strict decoding."""

import struct

import pytest

from raidd.errors import IntegrityError
from raidd.store.catalog_format import (
    CHUNK,
    EXTENT,
    HEADER,
    RECORD_HEAD,
    VERSION_FIXED,
    ChunkEntry,
    CommitDelta,
    Deletion,
    Forget,
    Version,
    decode_delta,
    encode_delta,
    json_name,
)
from raidd.store.scan import EntryType


def sample_delta() -> CommitDelta:
    records = (
        Version(
            root="crm",
            path=b"db/northwind.db",
            type=EntryType.FILE,
            mode=0o640,
            uid=1000,
            gid=1001,
            mtime_ns=1_700_000_000_123_456_789,
            size=3 << 20,
            chunks=(
                ChunkEntry(0, 1 << 20, bytes(range(32))),
                ChunkEntry(1 << 20, 2 << 20, bytes(range(1, 33))),
            ),
            extents=((0, 3 << 20),),
            hard_link_group=(7 << 20) | 3,
            xattrs=(
                (b"user.origin", b"crm\x00"),
                (b"system.posix_acl_access", b"\x02\x00\x00\x00"),
            ),
            sqlite_copy=True,
            ctime_ns=1_700_000_001_000_000_000,
            inode=(1 << 63) + 5,
        ),
        Version(
            "crm", b"new\nline\xff", EntryType.FILE, 0o600, 0, 0, -5, changed_during_read=True
        ),
        Version("crm", b"docs", EntryType.DIRECTORY, 0o755, 0, 0, 10),
        Version("exports", b"latest", EntryType.SYMLINK, 0o777, 0, 0, 11, link_target=b"../a\xfe"),
        Deletion("crm", b"old/report.txt"),
        Forget("exports", (3, 5, (1 << 64) - 1)),
    )
    return CommitDelta(42, 41, 1_700_000_000_000_000_000, ("crm", "exports"), records)


def test_struct_sizes_pinned() -> None:
    assert HEADER.size == 40
    assert RECORD_HEAD.size == 10
    assert VERSION_FIXED.size == 56
    assert CHUNK.size == 44
    assert EXTENT.size == 16


def test_header_offsets_pinned() -> None:
    data = encode_delta(sample_delta())
    assert data[0:4] == b"RDCD"
    assert struct.unpack_from("<H", data, 4) == (1,)
    assert struct.unpack_from("<H", data, 6) == (0,)
    assert struct.unpack_from("<Q", data, 8) == (42,)
    assert struct.unpack_from("<Q", data, 16) == (41,)
    assert struct.unpack_from("<q", data, 24) == (1_700_000_000_000_000_000,)
    assert struct.unpack_from("<II", data, 32) == (2, 6)
    assert data[40:45] == b"\x03\x00crm"


def test_round_trip() -> None:
    delta = sample_delta()
    assert decode_delta(encode_delta(delta)) == delta


def test_empty_delta_round_trip() -> None:
    delta = CommitDelta(1, 0, 5, ())
    assert decode_delta(encode_delta(delta)) == delta


def test_every_truncation_rejected() -> None:
    data = encode_delta(sample_delta())
    for length in range(len(data)):
        with pytest.raises(IntegrityError, match="truncated"):
            decode_delta(data[:length])


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(IntegrityError, match="1 trailing bytes"):
        decode_delta(encode_delta(sample_delta()) + b"\x00")


def test_newer_version_names_both() -> None:
    data = bytearray(encode_delta(sample_delta()))
    data[4:6] = struct.pack("<H", 2)
    with pytest.raises(IntegrityError, match=r"version 2 is not supported.*reads version 1"):
        decode_delta(bytes(data))


def test_bad_magic_rejected() -> None:
    data = b"XXXX" + encode_delta(sample_delta())[4:]
    with pytest.raises(IntegrityError, match="not a catalog delta"):
        decode_delta(data)


def test_unknown_codes_rejected() -> None:
    delta = CommitDelta(1, 0, 5, ("crm",), (Version("crm", b"a", EntryType.FILE, 0, 0, 0, 0),))
    data = encode_delta(delta)
    record = HEADER.size + 2 + 3
    for position, value, message in (
        (record, 9, "unknown record type 9"),
        (record + 1, 9, "unknown entry type 9"),
        (record + 2, 0x80, "unknown flags 0x80"),
        (record + 4, 5, "names root 5 of 1"),
    ):
        broken = bytearray(data)
        broken[position] = value
        with pytest.raises(IntegrityError, match=message):
            decode_delta(bytes(broken))


def test_record_for_unlisted_root_rejected() -> None:
    delta = CommitDelta(1, 0, 5, ("crm",), (Deletion("other", b"x"),))
    with pytest.raises(ValueError, match="root 'other' not listed"):
        encode_delta(delta)


def test_chunk_id_length_checked() -> None:
    version = Version(
        "crm", b"a", EntryType.FILE, 0, 0, 0, 0, chunks=(ChunkEntry(0, 1, b"short"),)
    )
    with pytest.raises(ValueError, match="chunk id must be 32 bytes"):
        encode_delta(CommitDelta(1, 0, 5, ("crm",), (version,)))


def test_json_name() -> None:
    assert json_name(b"caf\xc3\xa9") == "café"
    assert json_name(b"new\nline") == "new\nline"
    assert json_name(b"\xff\xfe") == {"base64": "//4="}


def test_forget_record_layout() -> None:
    delta = CommitDelta(9, 8, 5, ("crm",), (Forget("crm", (2, 4)),))
    data = encode_delta(delta)
    record = data[HEADER.size + 2 + 3 :]
    assert record[:10] == bytes([3, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert record[10:] == struct.pack("<IQQ", 2, 2, 4)
    assert decode_delta(data) == delta


def test_non_utf8_root_name_rejected() -> None:
    data = bytearray(encode_delta(CommitDelta(1, 0, 5, ("crm",))))
    data[HEADER.size + 2] = 0xFF
    with pytest.raises(IntegrityError, match="root name that is not UTF-8"):
        decode_delta(bytes(data))
