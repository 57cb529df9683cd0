"""Writes, commits and verified reads on image-file arrays of every level."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable

import pytest

from raidd.array import Array, Reserve
from raidd.array.allocmap import FLAG_COPY, FLAG_DATA, FLAG_LIST
from raidd.array.superblock import MAX_PENDING, NO_COPY
from raidd.errors import ArrayError, ArrayFullError, IntegrityError
from tests.array.conftest import MEMBER_COUNTS, ImageArray, MiB, write_random

LEVELS = sorted(MEMBER_COUNTS)


@pytest.mark.parametrize("level", LEVELS)
def test_round_trip_after_reassembly(make_array: Callable[..., ImageArray], level: int) -> None:
    image = make_array(level)
    rng = random.Random(level)
    with image.open() as array:
        written = write_random(array, rng, 20)
        result = array.commit(b"root-1", tail=b"tail bytes")
        assert result.event == 2
    with image.open(search_recorded_paths=False) as array:
        assert array.metadata_root == b"root-1"
        assert array.read(result.tail_stripe, 0, 10) == b"tail bytes"
        for stripe, data in written.items():
            assert array.read(stripe) == data
        first = next(iter(written))
        assert array.read(first, 3000, 100) == written[first][3000:3100]


def loss_patterns(level: int) -> list[tuple[int, ...]]:
    count = MEMBER_COUNTS[level]
    tolerance = {0: 0, 1: count - 1, 5: 1, 6: 2, 10: 1}[level]
    patterns: list[tuple[int, ...]] = []
    for lost in range(1, tolerance + 1):
        patterns += list(itertools.combinations(range(count), lost))
    if level == 10:
        # Any one member of each mirror pair may go, so (0, 2) and (1, 3) survive too.
        patterns += [(0, 2), (1, 3), (0, 3), (1, 2)]
    return patterns


@pytest.mark.parametrize("level", [1, 5, 6, 10])
def test_every_loss_within_tolerance(make_array: Callable[..., ImageArray], level: int) -> None:
    """Lose members in every combination up to the tolerance: reads stay byte-identical."""
    image = make_array(level)
    rng = random.Random(100 + level)
    with image.open() as array:
        written = write_random(array, rng, 12)
        array.commit(b"r")
    for lost in loss_patterns(level):
        paths = [p for i, p in enumerate(image.paths) if i not in lost]
        with image.open(read_only=True, search_recorded_paths=False) as array:
            pass
        array = ImageArray(paths, image.lock_dir, level).open(
            read_only=True, search_recorded_paths=False
        )
        with array:
            assert array.report.degraded
            assert array.report.missing_roles == sorted(lost)
            for stripe, data in written.items():
                assert array.read(stripe) == data, f"lost {lost}, stripe {stripe}"


@pytest.mark.parametrize("level", LEVELS)
def test_one_loss_too_many(make_array: Callable[..., ImageArray], level: int) -> None:
    image = make_array(level)
    with image.open() as array:
        write_random(array, random.Random(1), 3)
        array.commit(b"r")
    count = MEMBER_COUNTS[level]
    tolerance = {0: 0, 1: count - 1, 5: 1, 6: 2, 10: 1}[level]
    lost = list(range(tolerance + 1)) if level != 10 else [0, 1]
    paths = [p for i, p in enumerate(image.paths) if i not in lost]
    expected = "no raidd member found" if not paths else "cannot start: role 0"
    with pytest.raises(ArrayError, match=expected):
        ImageArray(paths, image.lock_dir, level).open(search_recorded_paths=False)


def test_degraded_writes_read_back(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    os.unlink(image.paths[2])
    with image.open() as array:
        assert array.degraded
        written = write_random(array, random.Random(5), 10)
        array.commit(b"r")
    with image.open() as array:
        assert array.status()["state"] == "degraded"
        for stripe, data in written.items():
            assert array.read(stripe) == data


def test_uncommitted_stripes_are_free_after_close(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    with image.open() as array:
        kept = write_random(array, random.Random(2), 3)
        array.commit(b"r")
        dropped = write_random(array, random.Random(3), 3)
    with image.open() as array:
        for stripe in kept:
            assert array.read(stripe) == kept[stripe]
        for stripe in dropped:
            with pytest.raises(ArrayError, match="not allocated"):
                array.read(stripe)


def test_freed_stripe_reused_two_commits_later(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(1, members=2)
    with image.open() as array:
        stripe = array.write_stripe(b"x")
        first = array.commit(b"r").event
        array.free([stripe])
        freed = array.commit(b"r").event
        assert array.map.entries[stripe]["written_at"] == freed
        assert not array.map.free_mask(freed + 1)[stripe]
        assert array.map.free_mask(freed + 2)[stripe]
        assert first == freed - 1


def test_freed_stripes_not_overwritten_by_next_commit(
    make_array: Callable[..., ImageArray],
) -> None:
    image = make_array(5)
    with image.open() as array:
        written = write_random(array, random.Random(9), 40)
        array.commit(b"r")
        array.free(written)
        array.commit(b"r")
        new = write_random(array, random.Random(10), 200)
        assert not set(new) & set(written)


def test_commit_writes_only_changed_leaves(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    with image.open() as array:
        write_random(array, random.Random(4), 5)
        array.commit(b"r")
        plans = array.map.plan()
        leaves = [p for p in plans if p.level == 0]
        assert len(array.map.pointers[0]) > 10
        assert len(leaves) <= 2


def test_array_full_refuses_then_reads(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(1, members=2, size=16 * 1024 * 1024)
    with image.open() as array:
        written = {}
        with pytest.raises(ArrayFullError, match="is full"):
            while True:
                stripe = array.write_stripe(b"d" * 10)
                written[stripe] = b"d" * 10
                if len(written) % 500 == 0:
                    array.commit(b"r")
        array.commit(b"r")
        assert array.free_stripe_count() <= array.reserve_stripes + 1
        with pytest.raises(ArrayFullError):
            array.write_stripe(b"more")
        assert array.read(next(iter(written)), 0, 10) == b"d" * 10
        # The reserve is there for garbage collection.
        gc = array.write_stripe(b"gc", reserve=Reserve.ALL)
        array.commit(b"r", freed=list(written)[:100])
        assert array.read(gc, 0, 2) == b"gc"


def test_read_out_of_range(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    with image.open() as array:
        stripe = array.write_stripe(b"x")
        with pytest.raises(ArrayError, match="exceeds the stripe"):
            array.read(stripe, array.stripe_data_size - 1, 2)
        with pytest.raises(ArrayError, match="out of range"):
            array.read(array.stripe_count)
        with pytest.raises(ArrayError, match="do not fit"):
            array.write_stripe(bytes(array.stripe_data_size + 1))


def test_read_only_refuses_writes(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    with image.open(read_only=True) as array, pytest.raises(ArrayError, match="read-only"):
        array.write_stripe(b"x")


def test_free_twice_rejected(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    with image.open() as array:
        stripe = array.write_stripe(b"x")
        array.commit(b"r")
        array.free([stripe])
        with pytest.raises(ArrayError, match="contains no data"):
            array.free([stripe])
        assert not int(array.map.entries[stripe]["flags"]) & FLAG_DATA


def test_beyond_tolerance_read_raises(make_array: Callable[..., ImageArray]) -> None:
    """With one member gone and another returning garbage, RAID5 raises, never guesses."""
    image = make_array(5)
    with image.open() as array:
        stripe = array.write_stripe(random.Random(1).randbytes(array.stripe_data_size))
        array.commit(b"r")
    os.unlink(image.paths[0])
    with image.open() as array:
        role = array.codec.data_roles(stripe)[1][0]
        member = array.slots[role].member
        assert member is not None
        offset = array.io.strip_offset(stripe)
        os.pwrite(member.fd, b"\xaa" * 4096, offset)
        with pytest.raises(IntegrityError, match=f"stripe {stripe} cannot be read"):
            array.read(stripe)


def test_deleted_image_fails_member(make_array: Callable[..., ImageArray]) -> None:
    """An image file deleted while the array runs is a vanished member: degraded, no loss."""
    image = make_array(6)
    with image.open() as array:
        before = write_random(array, random.Random(20), 5)
        array.commit(b"r1")
        os.unlink(image.paths[4])
        after = write_random(array, random.Random(21), 5)
        array.commit(b"r2")
        assert array.slots[4].state.name == "FAILED"
        assert array.degraded
        for stripe, data in {**before, **after}.items():
            assert array.read(stripe) == data
    with image.open() as array:
        assert array.report.missing_roles == [4]
        assert array.metadata_root == b"r2"
        for stripe, data in {**before, **after}.items():
            assert array.read(stripe) == data


def test_commit_changing_many_leaves(make_array: Callable[..., ImageArray]) -> None:
    """A commit whose map nodes need more stripes than the superblock lists uses pending lists."""
    image = make_array(1, members=2)
    with image.open() as array:
        # One leaf (64 entries) fills a 4 KiB stripe here, so 2500 stripes dirty 40 leaves.
        assert array.map.shape.entries_per_leaf == 64
        written = {array.write_stripe(b"stripe %d" % i): i for i in range(2500)}
        array.commit(b"many")
        lists = [p for p in array._pending if p.flags & FLAG_LIST]
        assert lists, "the superblock should list pending-list stripes"
        assert len(array._pending) <= MAX_PENDING
        list_stripes = {p.stripe for p in lists}
    with image.open() as array:
        assert array.metadata_root == b"many"
        for stripe, i in written.items():
            assert array.read(stripe, 0, 16).rstrip(b"\0") == b"stripe %d" % i
        assert array.map.list_stripes == list_stripes
        assert array.scrub().errors == 0
        array.commit(b"next", tail=b"small")
        for stripe in list_stripes:
            assert not array.map.is_allocated(stripe)
    with image.open() as array:
        assert array.metadata_root == b"next"
        assert array.map.list_stripes == set()
        for stripe, i in list(written.items())[::97]:
            assert array.read(stripe, 0, 16).rstrip(b"\0") == b"stripe %d" % i


def _flip_map_node(array: Array, path_by_role: list[str], stripe: int, offset: int) -> None:
    """Flip one byte of a stripe's data at `offset` on the member that holds it."""
    index = offset // array.codec.strip_size
    role = array.codec.data_roles(stripe)[index][0]
    position = array.io.strip_offset(stripe) + offset % array.codec.strip_size
    with open(path_by_role[role], "r+b") as member:
        member.seek(position)
        byte = member.read(1)
        member.seek(position)
        member.write(bytes([byte[0] ^ 0x40]))


def test_raid0_map_copy_read_after_bit_flip(make_array: Callable[..., ImageArray]) -> None:
    """On RAID0 a map node (leaf or root) that fails its checksum is read from its copy."""
    image = make_array(0)
    with image.open() as array:
        written = write_random(array, random.Random(41), 300)
        array.commit(b"r0", tail=b"tail bytes")
        root = array._root
        leaf = array.map.pointers[0][0]
        paths = [slot.path for slot in array.slots]
    assert root.copy_stripe != NO_COPY
    assert leaf.copy_stripe != NO_COPY
    assert leaf.copy_stripe != leaf.stripe
    with image.open(read_only=True) as array:
        assert array.read(leaf.copy_stripe, leaf.offset, leaf.length) == array.read(
            leaf.stripe, leaf.offset, leaf.length
        )
        for pointer in (root, leaf):
            _flip_map_node(array, paths, pointer.stripe, pointer.offset + 40)
    with image.open() as array:
        assert array.metadata_root == b"r0"
        for pointer in (root, leaf):
            with pytest.raises(IntegrityError):
                array.read(pointer.stripe, pointer.offset, pointer.length)
        for stripe, data in written.items():
            assert array.read(stripe) == data
        # The next commit rewrites the map from memory, so both copies are whole again.
        array.commit(b"r0 again")
    with image.open() as array:
        for stripe, data in list(written.items())[::17]:
            assert array.read(stripe) == data


def test_raid0_small_commit_costs_two_stripes(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(0)
    with image.open() as array:
        array.commit(b"one", tail=b"x")
        before = array.free_stripe_count()
        array.commit(b"two", tail=b"y")
        # Two new map stripes; the two of the commit before are freed later.
        assert before - array.free_stripe_count() == 2


def test_raid0_pending_list_copy_used(make_array: Callable[..., ImageArray]) -> None:
    """On RAID0 a pending list stripe that fails its checksums is read from its copy."""
    image = make_array(0, members=2, size=32 * MiB)
    with image.open() as array:
        assert array.map.shape.entries_per_leaf == 128
        written = {array.write_stripe(b"raid0 %d" % i): i for i in range(4400)}
        array.commit(b"lists")
        lists = [p for p in array._pending if p.flags & FLAG_LIST]
        originals = [p for p in lists if not p.flags & FLAG_COPY]
        assert originals and len(lists) == 2 * len(originals)
        paths = [slot.path for slot in array.slots]
    with image.open(read_only=True) as array:
        _flip_map_node(array, paths, originals[0].stripe, 8)
    with image.open() as array:
        assert array.metadata_root == b"lists"
        with pytest.raises(IntegrityError):
            array.read(originals[0].stripe)
        for stripe, i in list(written.items())[::7]:
            assert array.read(stripe, 0, 16).rstrip(b"\0") == b"raid0 %d" % i
