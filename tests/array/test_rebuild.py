"""Rebuild, resync, replace, spares and the administration commands."""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from raidd.array import Array, assemble
from raidd.array.admin import (
    AutoRebuild,
    add_spare,
    fail_member,
    re_add,
    remove_member,
    replace_member,
    resume_job,
)
from raidd.array.faulty import FaultyMember
from raidd.array.jobs import Rebuild
from raidd.array.scrub import Scrub
from raidd.array.superblock import CheckpointKind, MemberState
from raidd.errors import ArrayError, IntegrityError
from tests.array.conftest import ImageArray, MiB, write_random


def blank_image(path: Path, size: int = 16 * MiB) -> str:
    with open(path, "wb") as image:
        image.truncate(size)
    return str(path)


def read_all(array: Array, written: dict[int, bytes]) -> None:
    for stripe, data in written.items():
        assert array.read(stripe) == data, f"stripe {stripe}"


def without(image: ImageArray, *paths: str) -> ImageArray:
    return ImageArray([p for p in image.paths if p not in paths], image.lock_dir, image.level)


@pytest.mark.parametrize("level", [1, 5, 6, 10])
def test_replace_missing_member(
    make_array: Callable[..., ImageArray], tmp_path: Path, level: int
) -> None:
    image = make_array(level)
    with image.open() as array:
        written = write_random(array, random.Random(level), 30)
        array.commit(b"r")
    os.unlink(image.paths[1])
    new = blank_image(tmp_path / "new.img")
    with image.open() as array:
        assert array.report.missing_roles == [1]
        _, job = replace_member(array, image.paths[1], new)
        result = job.run()
        assert result.lost_stripes == []
        assert job.progress().done == job.progress().total > 30
        assert array.slots[1].state is MemberState.ACTIVE
        assert not array.degraded
    # The rebuilt member alone must carry role 1: drop the member paired with it.
    partner = image.paths[0]
    with assemble(
        [new, *[p for p in image.paths if p not in (partner, image.paths[1])]],
        lock_dir=image.lock_dir,
        search_recorded_paths=False,
    ) as array:
        assert array.report.missing_roles == [0]
        read_all(array, written)


def test_rebuild_resumes_from_checkpoint(
    make_array: Callable[..., ImageArray], tmp_path: Path
) -> None:
    image = make_array(5)
    with image.open() as array:
        written = write_random(array, random.Random(2), 60)
        array.commit(b"r")
    os.unlink(image.paths[2])
    new = blank_image(tmp_path / "new.img")
    with image.open() as array:
        _, job = replace_member(array, image.paths[2], new)
        total = len(job.stripes)
        job.run_stripes = 1
        for _ in range(total // 2):
            job.step()
        job.write_checkpoint()
        halfway = job.next_stripe()
        # The process dies here: no further write reaches the members.
    with assemble([*image.paths[:2], image.paths[3], new], lock_dir=image.lock_dir) as array:
        assert array.checkpoint.kind is CheckpointKind.REBUILD
        assert array.checkpoint.next_stripe == halfway
        resumed = resume_job(array)
        assert resumed is not None
        assert int(resumed.stripes[0]) == halfway
        assert len(resumed.stripes) == total - total // 2
        resumed.run()
        assert array.checkpoint.kind is CheckpointKind.NONE
        assert not array.degraded
    with assemble(
        [new, *image.paths[1:2], image.paths[3]],
        lock_dir=image.lock_dir,
        search_recorded_paths=False,
    ) as array:
        read_all(array, written)


def test_rebuild_killed_resumes(make_array: Callable[..., ImageArray], tmp_path: Path) -> None:
    """A rebuild process killed with SIGKILL after a checkpoint resumes there, not at zero."""
    image = make_array(5)
    with image.open() as array:
        written = write_random(array, random.Random(12), 80)
        array.commit(b"r")
    os.unlink(image.paths[2])
    new = blank_image(tmp_path / "new.img")
    with image.open() as array:
        _, job = replace_member(array, image.paths[2], new)
        total = len(job.stripes)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with image.open() as array:
                job = resume_job(array)
                assert job is not None
                job.run_stripes = 1
                job.checkpoint_interval = 0.0
                while job.step():
                    if job.index == total // 2:
                        os.write(write_end, b"c")
                        time.sleep(60)
        finally:
            os._exit(1)
    os.close(write_end)
    assert os.read(read_end, 1) == b"c"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read_end)
    with image.open() as array:
        assert array.checkpoint.kind is CheckpointKind.REBUILD
        assert array.checkpoint.next_stripe > 0
        resumed = resume_job(array)
        assert resumed is not None
        assert total // 2 - 1 <= total - len(resumed.stripes) <= total // 2
        resumed.run()
        assert not array.degraded
    with assemble(
        [new, image.paths[0], image.paths[3]], lock_dir=image.lock_dir, search_recorded_paths=False
    ) as array:
        read_all(array, written)


def test_scrub_resumes_from_checkpoint(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(6)
    with image.open() as array:
        write_random(array, random.Random(13), 40)
        array.commit(b"r")
        job = Scrub(array, min_rate=0, max_rate=0)
        job.run_stripes = 1
        for _ in range(10):
            job.step()
        job.write_checkpoint()
        stopped = job.next_stripe()
    with image.open() as array:
        resumed = resume_job(array)
        assert isinstance(resumed, Scrub)
        assert int(resumed.stripes[0]) == stopped
        assert resumed.run().errors == 0
        assert array.checkpoint.kind is CheckpointKind.NONE


def test_second_read_error_loses_one_stripe(
    make_array: Callable[..., ImageArray], tmp_path: Path
) -> None:
    """RAID5 rebuild with a read error on another member: that stripe is lost, the rest rebuilt."""
    image = make_array(5)
    with image.open() as array:
        written = write_random(array, random.Random(3), 20)
        array.commit(b"r")
        victim = sorted(written)[5]
        offset = array.io.strip_offset(victim)
    os.unlink(image.paths[0])
    new = blank_image(tmp_path / "new.img")
    members: dict[str, FaultyMember] = {}

    def opener(path: str, writable: bool) -> FaultyMember:
        members[path] = FaultyMember.open(path, writable=writable)
        return members[path]

    with image.open(opener=opener) as array:
        members[image.paths[1]].fail_reads(offset, 4096)
        _, job = replace_member(array, image.paths[0], new)
        result = job.run()
        assert result.lost_stripes == [victim]
        assert array.map.entries[victim]["lost"] == 0b11
        lost_index = next(
            i for i, roles in enumerate(array.codec.data_roles(victim)) if roles[0] in (0, 1)
        )
        with pytest.raises(IntegrityError, match=f"stripe {victim} bytes"):
            array.read(victim, lost_index * 4096, 10)
        read_all(array, {s: d for s, d in written.items() if s != victim})
    with image.open() as array:
        assert array.map.entries[victim]["lost"] == 0b11
        with pytest.raises(IntegrityError, match="recorded as lost"):
            array.read(victim)


def test_transient_read_error_retried(
    make_array: Callable[..., ImageArray], tmp_path: Path
) -> None:
    image = make_array(5)
    with image.open() as array:
        written = write_random(array, random.Random(4), 10)
        array.commit(b"r")
    os.unlink(image.paths[3])
    members: dict[str, FaultyMember] = {}

    def opener(path: str, writable: bool) -> FaultyMember:
        members[path] = FaultyMember.open(path, writable=writable)
        return members[path]

    new = blank_image(tmp_path / "new.img")
    with image.open(opener=opener) as array:
        members[image.paths[1]].plan.transient_read_errors = 1
        _, job = replace_member(array, image.paths[3], new)
        assert job.run().lost_stripes == []
        read_all(array, written)


def test_stale_member_resynced_since(
    make_array: Callable[..., ImageArray], tmp_path: Path
) -> None:
    """A stale member that comes back is resynced for the stripes it missed only."""
    image = make_array(5)
    aside = tmp_path / "aside.img"
    with image.open() as array:
        old = write_random(array, random.Random(5), 40)
        array.commit(b"r")
    shutil.copyfile(image.paths[1], aside)
    with image.open() as array:
        new = write_random(array, random.Random(6), 7)
        array.commit(b"r")
        array.free(list(old)[:3])
        array.commit(b"r")
    shutil.copyfile(aside, image.paths[1])
    with image.open() as array:
        assert array.report.stale[0]["path"] == image.paths[1]
        job = re_add(array, image.paths[1])
        assert job.kind is CheckpointKind.RESYNC
        assert 7 <= len(job.stripes) < 20
        job.run()
        assert not array.degraded
    with assemble(
        [image.paths[1], *image.paths[2:]], lock_dir=image.lock_dir, search_recorded_paths=False
    ) as array:
        read_all(array, new)
        read_all(array, {s: d for s, d in old.items() if s not in list(old)[:3]})


def test_resync_resumes_after_restart(
    make_array: Callable[..., ImageArray], tmp_path: Path
) -> None:
    image = make_array(5)
    aside = tmp_path / "aside.img"
    with image.open() as array:
        write_random(array, random.Random(14), 30)
        array.commit(b"r")
    shutil.copyfile(image.paths[0], aside)
    with image.open() as array:
        new = write_random(array, random.Random(15), 20)
        array.commit(b"r")
    shutil.copyfile(aside, image.paths[0])
    with image.open() as array:
        job = re_add(array, image.paths[0])
        total = len(job.stripes)
        job.run_stripes = 1
        for _ in range(total // 2):
            job.step()
        job.write_checkpoint()
    with image.open() as array:
        assert array.checkpoint.kind is CheckpointKind.RESYNC
        resumed = resume_job(array)
        assert resumed is not None
        assert resumed.kind is CheckpointKind.RESYNC
        assert len(resumed.stripes) <= total - total // 2
        resumed.run()
        assert not array.degraded
    with assemble(
        [image.paths[0], image.paths[2], image.paths[3]],
        lock_dir=image.lock_dir,
        search_recorded_paths=False,
    ) as array:
        read_all(array, new)


def test_fail_beyond_tolerance_refused(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5)
    with image.open() as array:
        fail_member(array, image.paths[0])
        assert array.slots[0].state is MemberState.FAILED
        with pytest.raises(ArrayError, match="beyond the array's tolerance of 1"):
            fail_member(array, image.paths[1])
        with pytest.raises(ArrayError, match="fail it first"):
            remove_member(array, image.paths[1])
        remove_member(array, image.paths[0])
        assert array.slots[0].member is None
    with image.open() as array:
        assert "marked removed" in array.report.stale[0]["reason"] or array.report.rejected


def test_member_named_by_uuid(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(6)
    with image.open() as array:
        target = str(array.slots[3].member_uuid)
        assert fail_member(array, target).role == 3
        with pytest.raises(ArrayError, match="is not a member"):
            fail_member(array, "/nonexistent")


def test_spare_rebuilds_by_itself(make_array: Callable[..., ImageArray]) -> None:
    image = make_array(5, spares=1)
    with image.open() as array:
        assert len(array.spares) == 1
        written = write_random(array, random.Random(7), 20)
        array.commit(b"r")
        auto = AutoRebuild(array, {"min_rate": 0, "max_rate": 0})
        fail_member(array, image.paths[2])
        auto.join(30)
        assert array.slots[2].state is MemberState.ACTIVE
        assert array.slots[2].path == image.paths[-1]
        assert array.spares == []
        read_all(array, written)
    spare_only = [image.paths[0], image.paths[1], image.paths[-1]]
    with assemble(spare_only, lock_dir=image.lock_dir, search_recorded_paths=False) as array:
        assert array.report.missing_roles == [3]
        read_all(array, written)


def test_add_spare_checks(make_array: Callable[..., ImageArray], tmp_path: Path) -> None:
    image = make_array(5)
    small = blank_image(tmp_path / "small.img", 8 * MiB)
    used = tmp_path / "used.img"
    shutil.copyfile(image.paths[0], used)
    with image.open() as array:
        with pytest.raises(ArrayError, match=r"small\.img has 8388608 bytes"):
            add_spare(array, small)
        with pytest.raises(ArrayError, match="already carries a raidd superblock"):
            add_spare(array, str(used))
        add_spare(array, str(used), force=True)
        spare = add_spare(array, blank_image(tmp_path / "spare.img"))
    with assemble([*image.paths, str(used), spare.path], lock_dir=image.lock_dir) as array:
        assert sorted(s.path for s in array.spares) == sorted([str(used), spare.path])


def test_hot_replace_keeps_serving(make_array: Callable[..., ImageArray], tmp_path: Path) -> None:
    image = make_array(5)
    with image.open() as array:
        written = write_random(array, random.Random(8), 25)
        array.commit(b"r")
        new = blank_image(tmp_path / "new.img")
        old, job = replace_member(array, image.paths[1], new)
        for _ in range(5):
            job.step()
        assert array.slots[1] is old
        more = write_random(array, random.Random(9), 3)
        array.commit(b"r")
        assert not array.degraded
        job.run()
        assert array.slots[1].path == new
        assert array.slots[1].state is MemberState.ACTIVE
        written.update(more)
    with assemble(
        [new, image.paths[0], image.paths[2]], lock_dir=image.lock_dir, search_recorded_paths=False
    ) as array:
        read_all(array, written)
    with image.open() as array:
        assert any("marked removed" in item["reason"] for item in array.report.stale)


def test_rates_and_progress(make_array: Callable[..., ImageArray], tmp_path: Path) -> None:
    image = make_array(5)
    with image.open() as array:
        write_random(array, random.Random(10), 10)
        array.commit(b"r")
        fail_member(array, image.paths[0])
        _, job = replace_member(array, image.paths[0], blank_image(tmp_path / "n.img"))
        assert isinstance(job, Rebuild)
        with pytest.raises(ArrayError, match="invalid rate limits"):
            job.set_rates(5, 1)
        job.set_rates(0, 0)
        job.run_stripes = 1
        job.step()
        progress = job.progress()
        assert progress.done == 1
        assert progress.total == len(job.stripes)
        assert progress.eta_seconds is not None
        assert progress.rate_mib_s > 0


def test_re_add_diverged_needs_force(make_array: Callable[..., ImageArray]) -> None:
    """A member written while away (split brain) is not resynced from its old base."""
    image = make_array(1, members=2)
    with image.open() as array:
        write_random(array, random.Random(16), 3)
        array.commit(b"r")
    with assemble([image.paths[0]], lock_dir=image.lock_dir, search_recorded_paths=False) as a:
        kept = write_random(a, random.Random(17), 3)
        a.commit(b"kept")
    with assemble([image.paths[1]], lock_dir=image.lock_dir, search_recorded_paths=False) as b:
        write_random(b, random.Random(18), 3)
        b.commit(b"other half")
    with assemble([image.paths[0]], lock_dir=image.lock_dir, search_recorded_paths=False) as a:
        with pytest.raises(ArrayError, match="was written while away"):
            re_add(a, image.paths[1])
        job = re_add(a, image.paths[1], force=True)
        assert job.kind is CheckpointKind.REBUILD
        job.run()
        assert not a.degraded
    with assemble([image.paths[1]], lock_dir=image.lock_dir, search_recorded_paths=False) as b:
        assert b.metadata_root == b"kept"
        read_all(b, kept)


def test_interrupted_hot_replace_resumes(
    make_array: Callable[..., ImageArray], tmp_path: Path
) -> None:
    image = make_array(5)
    with image.open() as array:
        written = write_random(array, random.Random(19), 10)
        array.commit(b"r")
        new = blank_image(tmp_path / "new.img")
        _, job = replace_member(array, image.paths[1], new)
        job.run_stripes = 1
        job.step()
        job.write_checkpoint()
    with image.open() as array:
        assert not array.report.degraded
        assert array.report.rejected == []
        assert array.slots[1].path == image.paths[1]
        resumed = resume_job(array)
        assert resumed is not None
        assert len(resumed.stripes) < len(job.stripes)
        resumed.run()
        assert array.slots[1].path == new
    with assemble(
        [new, image.paths[0], image.paths[2]], lock_dir=image.lock_dir, search_recorded_paths=False
    ) as array:
        read_all(array, written)


def test_uncommitted_stripe_rebuilt(make_array: Callable[..., ImageArray], tmp_path: Path) -> None:
    """A stripe written before a replace and committed after it still reaches the new member."""
    image = make_array(5)
    os.unlink(image.paths[3])
    new = blank_image(tmp_path / "new.img")
    with image.open() as array:
        early = write_random(array, random.Random(22), 3)
        array.flush()
        _, job = replace_member(array, image.paths[3], new)
        array.commit(b"r")
        job.run()
    with assemble(
        [new, *image.paths[1:3]], lock_dir=image.lock_dir, search_recorded_paths=False
    ) as array:
        read_all(array, early)
