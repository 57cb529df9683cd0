"""Silent corruption: verified reads, blame, repair by read and by scrub."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from raidd.array import Array
from raidd.errors import IntegrityError
from tests.array.conftest import ImageArray, write_random


def corrupt_strip(array: Array, stripe: int, role: int, seed: int) -> bytes:
    """Flip bytes of one member's strip on disk behind the engine; return the old strip."""
    member = array.slots[role].member
    assert member is not None
    offset = array.io.strip_offset(stripe)
    old = os.pread(member.fd, array.io.strip_size, offset)
    rng = random.Random(seed)
    for position in rng.sample(range(len(old)), 5):
        os.pwrite(member.fd, bytes([old[position] ^ 0x5A]), offset + position)
    return old


def strip_on_disk(path: str, array: Array, stripe: int) -> bytes:
    with open(path, "rb") as image:
        image.seek(array.io.strip_offset(stripe))
        return image.read(array.io.strip_size)


@pytest.mark.parametrize(("level", "bad_count"), [(5, 1), (6, 2), (1, 2), (10, 1)])
def test_read_repairs_and_blames(
    make_array: Callable[..., ImageArray], level: int, bad_count: int
) -> None:
    image = make_array(level)
    with image.open() as array:
        written = write_random(array, random.Random(level), 6)
        array.commit(b"r")
        stripe = sorted(written)[2]
        roles = [holders[0] for holders in array.codec.data_roles(stripe)]
        if level == 1:
            roles = [0, 1]
        targets = roles[:bad_count]
        originals = {role: corrupt_strip(array, stripe, role, role) for role in targets}
        assert array.read(stripe) == written[stripe]
        for role in targets:
            assert array.slots[role].counters.checksum == 1
            assert strip_on_disk(image.paths[role], array, stripe) == originals[role]
        others = [s.counters.checksum for s in array.slots if s.role not in targets]
        assert others == [0] * len(others)


@pytest.mark.parametrize(("level", "bad_count"), [(5, 1), (6, 2)])
def test_scrub_repairs_then_clean(
    make_array: Callable[..., ImageArray], level: int, bad_count: int
) -> None:
    """Corrupt parity and data strips in one stripe; scrub blames and repairs, twice is clean."""
    image = make_array(level)
    with image.open() as array:
        written = write_random(array, random.Random(level + 10), 8)
        array.commit(b"r")
        stripe = sorted(written)[3]
        layout = array.geometry.layout(stripe)
        targets = [layout.p, layout.data[0][0]][:bad_count]
        originals = {}
        for role in targets:
            assert role is not None
            originals[role] = corrupt_strip(array, stripe, role, 7 + role)
        check_only = array.scrub(repair=False)
        assert check_only.errors == bad_count
        assert {d.role for d in check_only.details} == set(targets)
        for role in targets:
            assert strip_on_disk(image.paths[role], array, stripe) != originals[role]
        result = array.scrub()
        assert result.errors == bad_count
        assert {(d.stripe, d.role, d.kind) for d in result.details} == {
            (stripe, role, "checksum") for role in targets
        }
        for role in targets:
            assert strip_on_disk(image.paths[role], array, stripe) == originals[role]
        assert array.scrub().errors == 0
    with image.open() as array:
        for number, data in written.items():
            assert array.read(number) == data


def test_scrub_corrupted_map_node(make_array: Callable[..., ImageArray]) -> None:
    """A corrupted strip holding map nodes is reconstructed at assembly and repaired by scrub."""
    image = make_array(5)
    with image.open() as array:
        written = write_random(array, random.Random(3), 5)
        array.commit(b"r")
        root = array._root
        role = array.codec.data_roles(root.stripe)[root.offset // array.io.strip_size][0]
        corrupt_strip(array, root.stripe, role, 1)
    with image.open() as array:
        for number, data in written.items():
            assert array.read(number) == data
        result = array.scrub()
        assert [(d.stripe, d.role) for d in result.details] == [(root.stripe, role)]
        assert array.scrub().errors == 0


def test_check_only_scrub_writes_nothing(
    make_array: Callable[..., ImageArray], tmp_path: Path
) -> None:
    image = make_array(6)
    with image.open() as array:
        written = write_random(array, random.Random(5), 4)
        array.commit(b"r")
        stripe = next(iter(written))
        corrupt_strip(array, stripe, 0, 3)
    before = [Path(p).read_bytes() for p in image.paths]
    with image.open(read_only=True) as array:
        assert array.scrub(repair=False).errors == 1
        assert array.read(stripe) == written[stripe]
    assert [Path(p).read_bytes() for p in image.paths] == before


@pytest.mark.parametrize("level", [5, 6])
def test_scrub_checks_parity_itself(make_array: Callable[..., ImageArray], level: int) -> None:
    """A strip that matches a wrong checksum still fails parity; RAID6 syndromes name it."""
    from raidd.array.codec import strip_checksum

    image = make_array(level)
    with image.open() as array:
        written = write_random(array, random.Random(30 + level), 6)
        array.commit(b"r")
        stripe = sorted(written)[1]
        role = array.codec.data_roles(stripe)[0][0]
        corrupt_strip(array, stripe, role, 4)
        bad = strip_on_disk(image.paths[role], array, stripe)
        array.map.entries[stripe]["checksums"][role] = strip_checksum(bad)
        result = array.scrub(repair=False)
        assert result.errors == 1
        (detail,) = result.details
        assert (detail.stripe, detail.kind) == (stripe, "parity")
        assert detail.role == (role if level == 6 else -1)


@pytest.mark.parametrize(("level", "members"), [(5, 3), (1, 2)])
def test_scrub_records_a_stripe_beyond_the_tolerance_as_lost(
    make_array: Callable[..., ImageArray], level: int, members: int
) -> None:
    """The same strip wrong on two members: scrub lists the stripe lost and keeps the mark."""
    image = make_array(level, members=members)
    with image.open() as array:
        written = write_random(array, random.Random(40 + level), 6)
        array.commit(b"r")
        stripe = sorted(written)[1]
        for role in (0, 1):
            corrupt_strip(array, stripe, role, 50 + role)
        check_only = array.scrub(repair=False)
        assert check_only.lost_stripes == [stripe]
        assert array.map.entries[stripe]["lost"] == 0
        result = array.scrub()
        assert result.lost_stripes == [stripe]
        assert result.repaired == 0
        assert {(d.stripe, d.role, d.kind) for d in result.details} == {
            (stripe, 0, "checksum"),
            (stripe, 1, "checksum"),
        }
        (lost,) = result.describe_lost()
        assert lost.startswith(f"stripe {stripe} is lost: role 0 ({image.paths[0]}: checksum")
        assert f"role 1 ({image.paths[1]}: checksum mismatch)" in lost
        assert [r["stripe"] for r in result.lost_report()] == [stripe]
        others = sorted(written)[0]
        assert array.read(others) == written[others]
    with image.open() as array:
        assert array.map.entries[stripe]["lost"] == 0b11
        assert array.status()["lost_stripes"] == [stripe]
        with pytest.raises(IntegrityError, match="recorded as lost by a rebuild or scrub"):
            array.read(stripe)
        assert array.scrub().lost_stripes == [stripe]


def test_error_counters_survive_a_restart(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    with image.open() as array:
        written = write_random(array, random.Random(60), 4)
        array.commit(b"r")
        stripe = sorted(written)[0]
        role = array.codec.data_roles(stripe)[0][0]
        corrupt_strip(array, stripe, role, 61)
        assert array.read(stripe) == written[stripe]
        assert array.slots[role].counters.checksum == 1
        array.commit(b"s")
    with image.open() as array:
        counts = [(s.counters.read, s.counters.checksum) for s in array.slots]
        assert counts[role] == (0, 1)
        assert sum(checksum for _, checksum in counts) == 1
        assert array.status()["members"][role]["checksum_errors"] == 1
