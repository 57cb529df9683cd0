"""The fault-injecting member: injected errors, bit flips, vanishing and power loss."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from raidd.array.faulty import FaultyMember
from raidd.array.member import MemberIOError, MemberVanishedError


@pytest.fixture
def faulty(tmp_path: Path) -> FaultyMember:
    path = tmp_path / "f.img"
    with open(path, "wb") as image:
        image.truncate(1 << 20)
    return FaultyMember.open(str(path))


def test_read_error_range(faulty: FaultyMember) -> None:
    faulty.fail_reads(8192, 4096)
    assert faulty.pread(4096, 0) == bytes(4096)
    with pytest.raises(MemberIOError, match="injected read error at offset 8192"):
        faulty.pread(4096, 8192)
    with pytest.raises(MemberIOError):
        faulty.pread(100, 12000)


def test_write_error_range(faulty: FaultyMember) -> None:
    faulty.fail_writes(0, 512)
    with pytest.raises(MemberIOError, match="injected write error"):
        faulty.pwrite(b"x" * 1024, 0)
    faulty.pwrite(b"y", 4096)
    assert faulty.pread(1, 4096) == b"y"


def test_flip_bits(faulty: FaultyMember) -> None:
    faulty.pwrite(b"\x0f" * 4, 100)
    faulty.flip_bits(101, 0xFF, 2)
    assert faulty.pread(4, 100) == b"\x0f\xf0\xf0\x0f"


def test_vanish(faulty: FaultyMember) -> None:
    faulty.vanish()
    with pytest.raises(MemberVanishedError):
        faulty.pread(1, 0)
    with pytest.raises(MemberVanishedError):
        faulty.fsync()


def test_power_loss_keeps_synced(faulty: FaultyMember) -> None:
    faulty.pwrite(b"A" * 4096, 0)
    faulty.fsync()
    faulty.pwrite(b"B" * 4096, 0)
    faulty.pwrite(b"C" * 4096, 8192)
    undone = faulty.power_loss(random.Random(3), torn=False)
    data = Path(faulty.path).read_bytes()[:12288]
    first = data[:4096]
    assert first in (b"A" * 4096, b"B" * 4096)
    assert data[8192:] in (b"C" * 4096, bytes(4096))
    assert undone == (first == b"A" * 4096) + (data[8192:] == bytes(4096))


def test_power_loss_tears_at_sectors(faulty: FaultyMember) -> None:
    """A torn write leaves new sectors followed by old ones, never a mix inside a sector."""
    seen_torn = False
    for seed in range(20):
        faulty.plan.vanished = False
        faulty.pwrite(b"O" * 8192, 0)
        faulty.fsync()
        faulty.pwrite(b"N" * 8192, 0)
        faulty.power_loss(random.Random(seed))
        data = Path(faulty.path).read_bytes()[:8192]
        cut = data.find(b"O")
        if cut == -1:
            assert data == b"N" * 8192
            continue
        assert cut % 512 == 0
        assert data == b"N" * cut + b"O" * (8192 - cut)
        seen_torn = seen_torn or cut > 0
    assert seen_torn
