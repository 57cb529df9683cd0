"""`raidd examine`: newer versions, invalid and implausible copies, escaped names."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

from raidd.array.superblock import (
    CHECKSUM_OFFSET,
    FORMAT_VERSION,
    HEADER_FIELDS,
    SUPERBLOCK_SIZE,
)
from tests.commands.conftest import Result


def field_offset(name: str) -> int:
    codes = ""
    for field, code, _ in HEADER_FIELDS:
        if field == name:
            return struct.calcsize("<" + codes)
        codes += code
    raise KeyError(name)


def patch(path: str, copy_offset: int, name: str, value: bytes) -> None:
    """Change one header field of one copy and recompute the copy's checksum."""
    with open(path, "r+b") as handle:
        handle.seek(copy_offset)
        data = bytearray(handle.read(SUPERBLOCK_SIZE))
        start = field_offset(name)
        data[start : start + len(value)] = value
        data[CHECKSUM_OFFSET:] = hashlib.sha256(data[:CHECKSUM_OFFSET]).digest()
        handle.seek(copy_offset)
        handle.write(data)


def create(raidd: Callable[..., Result], tmp_path: Path, *extra: str) -> list[str]:
    members = [str(tmp_path / "a"), str(tmp_path / "b")]
    result = raidd(
        "create",
        "--level",
        "1",
        "--size",
        "16MiB",
        "--new-keyfile",
        tmp_path / "k",
        *extra,
        *members,
    )
    assert result.code == 0, result.err
    return members


def test_newer_version_per_member(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = create(raidd, tmp_path)
    newer = FORMAT_VERSION + 1
    patch(members[1], 0, "version", struct.pack("<I", newer))
    result = raidd("examine", "--json", *members)
    assert result.code == 1
    first, second = result.json()
    assert first["event_counter"] == 1
    assert f"version {newer}" in second["error"]
    assert f"version {FORMAT_VERSION}" in second["error"]
    refused = raidd("key", "list", *members)
    assert refused.code == 2
    assert f"version {newer}" in refused.err


def test_invalid_copy_warns(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = create(raidd, tmp_path)
    with open(members[0], "r+b") as handle:
        handle.seek(SUPERBLOCK_SIZE + 100)
        handle.write(b"\xff")
    result = raidd("examine", members[0])
    assert result.code == 1
    assert "copy 1 (superblock checksum mismatch) invalid" in result.err
    assert result.err.count("warning:") == 1


def test_implausible_fields_invalid(raidd: Callable[..., Result], tmp_path: Path) -> None:
    cases = {
        "level": (struct.pack("<I", 7), "unknown RAID level 7"),
        "strip_size": (struct.pack("<I", 3000), "strip size 3000"),
        "role": (struct.pack("<i", 9), "role 9 out of range"),
        "member_count": (struct.pack("<I", 0), "member count 0"),
        "superblock_size": (struct.pack("<I", 100), "superblock size field is 100"),
    }
    for name, (value, reason) in cases.items():
        (tmp_path / name).mkdir()
        members = create(raidd, tmp_path / name)
        patch(members[0], SUPERBLOCK_SIZE, name, value)
        result = raidd("examine", "--json", members[0])
        assert result.code == 1, name
        copies = result.json()[0]["superblocks"]
        assert copies[1]["valid"] is False, name
        assert reason in copies[1]["error"], name


def test_name_escaped(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = create(raidd, tmp_path, "--name", "plain")
    for offset in (0, SUPERBLOCK_SIZE):
        patch(members[0], offset, "array_name", b"a\x1b[31mRED\nx".ljust(64, b"\0"))
    result = raidd("examine", members[0])
    assert "\x1b" not in result.out
    assert "a\\x1b[31mRED\\nx" in result.out
