"""Assembly: identity by UUID, stale, foreign and duplicate members, split brain."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from raidd.array import assemble, create_array
from raidd.array.superblock import SUPERBLOCK_SIZE, MemberState, end_offset
from raidd.errors import ArrayBusyError, ArrayError
from tests.array.conftest import ImageArray, write_random


def file_digest(path: str) -> bytes:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).digest()


def test_renamed_and_reordered(make_array: Callable[..., ImageArray], tmp_path: Path) -> None:
    image = make_array(6)
    with image.open() as array:
        written = write_random(array, random.Random(1), 10)
        array.commit(b"r")
    moved = []
    for i, path in enumerate(image.paths):
        target = tmp_path / f"renamed-{(i * 3) % 5}.img"
        os.rename(path, target)
        moved.append(str(target))
    random.Random(2).shuffle(moved)
    with assemble(moved, lock_dir=image.lock_dir) as array:
        assert not array.report.degraded
        for stripe, data in written.items():
            assert array.read(stripe) == data
        assert {slot.path for slot in array.slots} == set(moved)


def test_same_device_twice_counts_once(
    make_array: Callable[..., ImageArray], tmp_path: Path
) -> None:
    image = make_array(5)
    os.symlink(image.paths[0], tmp_path / "alias.img")
    with assemble([*image.paths, str(tmp_path / "alias.img")], lock_dir=image.lock_dir) as array:
        assert not array.report.degraded
        assert array.report.rejected == []


def test_recorded_path_is_searched(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    with assemble(image.paths[:3], lock_dir=image.lock_dir) as array:
        assert not array.report.degraded
        assert array.slots[3].path == os.path.abspath(image.paths[3])


def test_stale_member_never_read(make_array: Callable[..., ImageArray], tmp_path: Path) -> None:
    """A member copied aside and put back after more commits is stale and left untouched."""
    image = make_array(5)
    aside = tmp_path / "aside.img"
    with image.open() as array:
        write_random(array, random.Random(3), 5)
        array.commit(b"r1")
    shutil.copyfile(image.paths[1], aside)
    with image.open() as array:
        written = write_random(array, random.Random(4), 5)
        array.commit(b"r2")
        array.commit(b"r3")
    shutil.copyfile(aside, image.paths[1])
    before = file_digest(image.paths[1])
    with image.open() as array:
        assert [item["path"] for item in array.report.stale] == [image.paths[1]]
        assert "missed commits" in array.report.stale[0]["reason"]
        assert array.slots[1].member is None
        assert array.report.degraded
        for stripe, data in written.items():
            assert array.read(stripe) == data
        array.write_stripe(b"more")
        array.commit(b"r4")
    assert file_digest(image.paths[1]) == before
    with image.open() as array:
        assert "marked absent" in array.report.stale[0]["reason"]


def copy_superblocks(path: str) -> list[tuple[int, bytes]]:
    size = os.path.getsize(path)
    with open(path, "rb") as image:
        saved = []
        for offset in (0, SUPERBLOCK_SIZE, end_offset(size)):
            image.seek(offset)
            saved.append((offset, image.read(SUPERBLOCK_SIZE)))
    return saved


def restore_superblocks(path: str, saved: list[tuple[int, bytes]]) -> None:
    with open(path, "r+b") as image:
        for offset, data in saved:
            image.seek(offset)
            image.write(data)


@pytest.mark.parametrize("level", [0, 5, 6])
def test_one_commit_behind_rolls_forward(
    make_array: Callable[..., ImageArray], level: int
) -> None:
    """A crash between superblock writes leaves members one commit apart: assembled whole."""
    image = make_array(level)
    with image.open() as array:
        write_random(array, random.Random(5), 4)
        array.commit(b"r1")
    saved = [copy_superblocks(p) for p in image.paths[1:]]
    with image.open() as array:
        written = write_random(array, random.Random(6), 6)
        event = array.commit(b"r2").event
    for path, copies in zip(image.paths[1:], saved, strict=True):
        restore_superblocks(path, copies)
    with image.open() as array:
        # Assembly writes the newest superblock to the rolled-forward members as a new commit.
        assert array.event == event + 1
        assert not array.report.degraded
        assert sorted(array.report.rolled_forward) == sorted(image.paths[1:])
        assert array.metadata_root == b"r2"
        for stripe, data in written.items():
            assert array.read(stripe) == data


def test_behind_with_wrong_strips_is_stale(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    saved = copy_superblocks(image.paths[2])
    with image.open() as array:
        written = write_random(array, random.Random(7), 6)
        array.commit(b"r")
        offset = array.io.strip_offset(next(iter(written)))
    restore_superblocks(image.paths[2], saved)
    with open(image.paths[2], "r+b") as member:
        member.seek(offset)
        member.write(b"\x00" * 4096)
    with image.open() as array:
        assert array.report.rolled_forward == []
        assert [s["path"] for s in array.report.stale] == [image.paths[2]]
        for stripe, data in written.items():
            assert array.read(stripe) == data


def test_foreign_member_rejected_untouched(
    make_array: Callable[..., ImageArray], tmp_path: Path
) -> None:
    image = make_array(5)
    other = [str(tmp_path / f"other{i}.img") for i in range(3)]
    foreign = create_array(other, level=5, strip_size=4096, size=16 * 1024 * 1024)
    before = file_digest(other[0])
    with assemble(
        [*image.paths, other[0]], array_uuid=_uuid_of(image), lock_dir=image.lock_dir
    ) as array:
        write_random(array, random.Random(8), 3)
        array.commit(b"r")
        reasons = [item["reason"] for item in array.report.rejected]
        assert reasons == [f"member of another array {foreign.array_uuid}"]
    assert file_digest(other[0]) == before


def _uuid_of(image: ImageArray) -> uuid.UUID:
    with image.open(read_only=True) as array:
        return array.uuid


def test_several_arrays_listed(make_array: Callable[..., ImageArray], tmp_path: Path) -> None:
    image = make_array(5)
    other = [str(tmp_path / f"other{i}.img") for i in range(3)]
    create_array(other, level=5, strip_size=4096, size=16 * 1024 * 1024)
    with pytest.raises(ArrayError, match="several arrays") as raised:
        assemble([*image.paths, *other], lock_dir=image.lock_dir)
    assert other[1] in str(raised.value)
    assert image.paths[0] in str(raised.value)


def test_duplicate_member_uuid_neither_used(
    make_array: Callable[..., ImageArray], tmp_path: Path
) -> None:
    image = make_array(5)
    copy = tmp_path / "copy-of-1.img"
    shutil.copyfile(image.paths[1], copy)
    before = (file_digest(image.paths[1]), file_digest(str(copy)))
    with assemble([*image.paths, str(copy)], lock_dir=image.lock_dir) as array:
        reasons = [item["reason"] for item in array.report.rejected]
        assert len(reasons) == 2
        assert all("found on several devices" in r and str(copy) in r for r in reasons)
        assert array.report.missing_roles == [1]
        write_random(array, random.Random(9), 2)
        array.commit(b"r")
    assert (file_digest(image.paths[1]), file_digest(str(copy))) == before


def test_split_brain_detected(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(1, members=2)
    with image.open() as array:
        write_random(array, random.Random(10), 2)
        array.commit(b"r")
    for path in image.paths:
        with assemble([path], lock_dir=image.lock_dir, search_recorded_paths=False) as half:
            assert half.report.degraded
            write_random(half, random.Random(11), 2)
            half.commit(b"half")
    digests = [file_digest(p) for p in image.paths]
    with pytest.raises(ArrayError, match="split brain") as raised:
        image.open()
    assert image.paths[0] in str(raised.value) or image.paths[1] in str(raised.value)
    assert [file_digest(p) for p in image.paths] == digests


def test_second_open_busy(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    with image.open(), pytest.raises(ArrayBusyError, match=f"pid {os.getpid()}"):
        image.open()
    with image.open(read_only=True) as reader, image.open():
        assert reader.read_only


def test_failed_member_stays_out(make_array: Callable[..., ImageArray]) -> None:
    from raidd.array.faulty import FaultyMember

    image = make_array(5)
    faulty: list[FaultyMember] = []

    def opener(path: str, writable: bool) -> FaultyMember:
        member = FaultyMember.open(path, writable=writable)
        faulty.append(member)
        return member

    with image.open(opener=opener) as array:
        target = next(m for m in faulty if m.path == image.paths[3])
        target.fail_writes(0, target.size)
        written = write_random(array, random.Random(12), 5)
        array.commit(b"r")
        assert array.slots[3].state is MemberState.FAILED
        assert array.slots[3].counters.write >= 1
        for stripe, data in written.items():
            assert array.read(stripe) == data
    with image.open() as array:
        assert "marked failed" in array.report.stale[0]["reason"]
        for stripe, data in written.items():
            assert array.read(stripe) == data


def test_truncated_member_not_used(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(1)
    os.truncate(image.paths[0], 14 * 1024 * 1024)
    with image.open(read_only=True) as array:
        assert array.report.degraded
        assert array.slots[0].member is None
        (item,) = array.report.rejected
        assert item["kind"] == "too_small"
        assert f"member {image.paths[0]} has {14 * 1024 * 1024} bytes" in item["reason"]


def test_loop_and_backing_counted_once(make_array: Callable[..., ImageArray]) -> None:
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("loop devices need root and losetup")
    image = make_array(1)
    device = subprocess.run(
        ["losetup", "-f", "--show", image.paths[0]], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        paths = [device, *image.paths]
        with assemble(paths, lock_dir=image.lock_dir, read_only=True) as array:
            assert not array.report.degraded
            assert array.report.rejected == []
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
