"""Superblock format: pinned sizes and offsets, round trip, copies, version refusal."""

from __future__ import annotations

import re
import struct
import uuid
from pathlib import Path

import pytest

from raidd.array import superblock as sbm
from raidd.array.allocmap import (
    LIST_HEADER_SIZE,
    NODE_HEADER_SIZE,
    POINTER_SIZE,
    entry_dtype,
    list_capacity,
    list_record_format,
)
from raidd.array.member import open_member
from raidd.array.superblock import (
    Checkpoint,
    CheckpointKind,
    MapPointer,
    MemberEntry,
    MemberState,
    PendingStripe,
    Superblock,
    UnsupportedFormatError,
    read_superblocks,
    unpack_superblock,
    write_superblock,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"


def field_offsets(fields: tuple[tuple[str, str, str], ...]) -> dict[str, tuple[int, int]]:
    offsets = {}
    position = 0
    for name, code, _ in fields:
        size = struct.calcsize("<" + code)
        offsets[name] = (position, size)
        position += size
    return offsets


def test_layout_pinned() -> None:
    assert sbm.SUPERBLOCK_SIZE == 65536
    assert sbm.HEADER_SIZE == 556
    assert sbm.MEMBER_ENTRY_SIZE == 296
    assert sbm.PENDING_SIZE == 280
    assert (sbm.MEMBER_TABLE_OFFSET, sbm.PENDING_OFFSET) == (1024, 10496)
    assert (sbm.ERROR_COUNTERS_OFFSET, sbm.ERROR_COUNTER_SIZE) == (19456, 12)
    assert (sbm.KEYSLOT_OFFSET, sbm.KEYSLOT_RESERVED, sbm.CHECKSUM_OFFSET) == (20480, 40960, 65504)
    offsets = field_offsets(sbm.HEADER_FIELDS)
    assert offsets["event_counter"] == (88, 8)
    assert offsets["array_name"] == (120, 64)
    assert offsets["map_root_checksum"] == (220, 16)
    assert offsets["metadata_root"] == (292, 256)
    assert offsets["map_root_copy_stripe"] == (548, 8)
    assert NODE_HEADER_SIZE == 32
    assert POINTER_SIZE == 40
    assert entry_dtype(4).itemsize == 48
    assert LIST_HEADER_SIZE == 24
    assert struct.calcsize(list_record_format(4)) == 56
    assert list_capacity(3 * 65536, 4) == 3510
    assert list_capacity(4096, 2) == 101


@pytest.mark.parametrize(
    ("heading", "fields"),
    [
        ("Superblock header", sbm.HEADER_FIELDS),
        ("Member table entry", sbm.MEMBER_ENTRY_FIELDS),
        ("Pending metadata stripe", sbm.PENDING_FIELDS),
        ("Member error counters", sbm.ERROR_COUNTER_FIELDS),
    ],
)
def test_docs_table_matches(heading: str, fields: tuple[tuple[str, str, str], ...]) -> None:
    """docs/FORMAT.md lists every field at the offset and size the code packs it."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split(f"### {heading}", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (\d+) \| [^|]+ \| `(\w+)` \|", section, re.MULTILINE)
    documented = {name: (int(offset), int(size)) for offset, size, name in rows}
    assert documented == field_offsets(fields)


def sample(event: int = 7) -> Superblock:
    return Superblock(
        array_uuid=uuid.uuid4(),
        member_uuid=uuid.uuid4(),
        role=2,
        level=6,
        strip_size=65536,
        member_count=5,
        data_offset=1 << 20,
        data_size=1 << 30,
        stripe_count=16384,
        event_counter=event,
        commit_tag=12345,
        created_time=1,
        commit_time=2,
        array_name="crm-ü",
        reserve_stripes=163,
        map_entries_per_leaf=128,
        map_fanout=128,
        map_depth=1,
        map_root=MapPointer(9, 4096, 2000, b"\x07" * 16),
        checkpoint=Checkpoint(CheckpointKind.REBUILD, 3, uuid.uuid4(), 77, 6),
        members=[
            MemberEntry(
                uuid.uuid4(), i, MemberState.ACTIVE, event, f"/dev/x{i}", (i, 2 * i, 2**32 - 1)
            )
            for i in range(5)
        ],
        pending=[PendingStripe(9, 6, 2, (1, 2, 3, 4, 5))],
        metadata_root=b"root",
        keyslot_area=b"K" * 1000,
    )


def test_round_trip() -> None:
    original = sample()
    parsed = unpack_superblock(original.pack())
    assert parsed == original


def test_checksum_mismatch() -> None:
    data = bytearray(sample().pack())
    data[200] ^= 1
    with pytest.raises(ValueError, match="checksum mismatch"):
        unpack_superblock(bytes(data))


def test_newer_version_refused_naming_both() -> None:
    data = bytearray(sample().pack())
    struct.pack_into("<I", data, 8, 9)
    with pytest.raises(UnsupportedFormatError, match=r"version 9 .*version 2"):
        unpack_superblock(bytes(data))


def test_newest_valid_copy_wins(tmp_path: Path) -> None:
    path = tmp_path / "m.img"
    with open(path, "wb") as image:
        image.truncate(4 << 20)
    member = open_member(str(path), writable=True)
    first = sample(7)
    write_superblock(member, first)
    second = sample(8)
    write_superblock(member, second)
    copies = read_superblocks(member)
    assert [c.superblock.event_counter for c in copies.copies if c.superblock] == [8, 7, 8]
    assert copies.newest == second
    # Tear slot 0 (event 8) and the end copy: slot 1 (event 7) is the newest valid.
    member.pwrite(b"\xff" * 100, 1000)
    member.pwrite(b"\xff" * 100, sbm.end_offset(member.size) + 1000)
    copies = read_superblocks(member)
    assert copies.newest is not None
    assert copies.newest.event_counter == 7
    assert [c.slot for c in copies.copies if c.error] == ["0", "end"]
    member.close()
