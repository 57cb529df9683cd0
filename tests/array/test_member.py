"""Members: size, pread/pwrite, claims, the lock file and vanished image files."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from raidd.array.lock import ArrayLock
from raidd.array.member import (
    MemberClaimedError,
    MemberIOError,
    MemberVanishedError,
    identify,
    open_member,
)
from raidd.errors import ArrayBusyError, MemberError


def make_image(path: Path, size: int = 1 << 20) -> str:
    with open(path, "wb") as image:
        image.truncate(size)
    return str(path)


def test_file_member_size_and_io(tmp_path: Path) -> None:
    member = open_member(make_image(tmp_path / "a.img"), writable=True)
    assert member.size == 1 << 20
    member.pwrite(b"abc" * 100, 4096)
    member.fsync()
    assert member.pread(300, 4096) == b"abc" * 100
    member.close()


def test_short_read_raises(tmp_path: Path) -> None:
    member = open_member(make_image(tmp_path / "a.img", 8192), writable=False)
    with pytest.raises(MemberIOError, match="short read"):
        member.pread(4096, 8192 - 100)
    member.close()


def test_missing_path_named(tmp_path: Path) -> None:
    with pytest.raises(MemberError, match=r"nope\.img not found"):
        open_member(tmp_path / "nope.img", writable=False)


def test_directory_rejected(tmp_path: Path) -> None:
    with pytest.raises(MemberError, match="neither a regular file nor a block device"):
        open_member(tmp_path, writable=False)


def test_second_claim_refused(tmp_path: Path) -> None:
    path = make_image(tmp_path / "a.img")
    first = open_member(path, writable=True)
    with pytest.raises(MemberClaimedError, match=r"a\.img is locked"):
        open_member(path, writable=True)
    reader = open_member(path, writable=False)
    assert reader.pread(16, 0) == bytes(16)
    reader.close()
    first.close()
    open_member(path, writable=True).close()


def test_deleted_image_vanishes(tmp_path: Path) -> None:
    path = make_image(tmp_path / "a.img")
    member = open_member(path, writable=True)
    os.unlink(path)
    with pytest.raises(MemberVanishedError, match="deleted"):
        member.pread(16, 0)
    with pytest.raises(MemberVanishedError):
        member.pwrite(b"x", 0)
    member.close()


def test_identity_same_through_symlink(tmp_path: Path) -> None:
    path = make_image(tmp_path / "a.img")
    os.symlink(path, tmp_path / "link.img")
    assert identify(path) == identify(tmp_path / "link.img")
    assert identify(path) != identify(make_image(tmp_path / "b.img"))


def test_lock_file_names_holder_pid(tmp_path: Path) -> None:
    """A second process is refused with the lock file path and the holder's pid."""
    array_uuid = uuid.uuid4()
    lock = ArrayLock.acquire(tmp_path, array_uuid, "crm")
    script = (
        "import sys, uuid, pathlib\n"
        "from raidd.array.lock import ArrayLock\n"
        "from raidd.errors import ArrayBusyError\n"
        "try:\n"
        f"    ArrayLock.acquire(pathlib.Path({str(tmp_path)!r}), uuid.UUID({str(array_uuid)!r}))\n"
        "except ArrayBusyError as error:\n"
        "    print(error)\n"
        "    sys.exit(4)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 4
    assert f"pid {os.getpid()}" in result.stdout
    assert f"array-{array_uuid}.lock" in result.stdout
    lock.release()
    again = ArrayLock.acquire(tmp_path, array_uuid)
    again.release()


def test_lock_file_removed_on_release(tmp_path: Path) -> None:
    array_uuid = uuid.uuid4()
    lock = ArrayLock.acquire(tmp_path, array_uuid)
    path = tmp_path / f"array-{array_uuid}.lock"
    assert path.read_text() == f"{os.getpid()}\n"
    lock.release()
    assert not path.exists()


def test_lock_on_unlinked_file_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An open that races with the holder's unlink locks the file the path names now."""
    import raidd.array.lock as lock_module

    array_uuid = uuid.uuid4()
    path = tmp_path / f"array-{array_uuid}.lock"
    real_open = ArrayLock._open
    opened: list[int] = []

    def open_then_lose_race(lock_path: Path) -> int:
        fd = real_open(lock_path)
        if not opened:
            # The holder releases between this open and the flock: its file goes away.
            os.unlink(lock_path)
        opened.append(fd)
        return fd

    monkeypatch.setattr(lock_module.ArrayLock, "_open", staticmethod(open_then_lose_race))
    lock = ArrayLock.acquire(tmp_path, array_uuid)
    assert len(opened) == 2
    assert os.stat(path).st_ino == os.fstat(opened[1]).st_ino
    with pytest.raises(ArrayBusyError):
        ArrayLock.acquire(tmp_path, array_uuid)
    lock.release()
    assert not path.exists()


def test_lock_same_process_refused(tmp_path: Path) -> None:
    array_uuid = uuid.uuid4()
    lock = ArrayLock.acquire(tmp_path, array_uuid)
    with pytest.raises(ArrayBusyError, match=f"pid {os.getpid()}"):
        ArrayLock.acquire(tmp_path, array_uuid)
    lock.release()
