"""`raidd create`: checks that run before the first write, and cleanup after a failed one."""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from tests.commands.conftest import Result, needs_loop

MiB = 1024 * 1024


def image(path: Path, size: int = 16 * MiB) -> str:
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)


def digest(paths: list[str]) -> list[str]:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


@needs_loop
def test_loop_and_backing_file_refused(
    raidd: Callable[..., Result], tmp_path: Path, loop: Callable[..., str]
) -> None:
    backing = image(tmp_path / "img")
    device = loop(Path(backing))
    key = tmp_path / "k"
    result = raidd("create", "--level", "1", "--new-keyfile", key, device, backing)
    assert result.code == 2
    assert f"members {device} and {backing} are the same device" in result.err
    assert not key.exists()


@needs_loop
def test_read_only_member_refused_first(
    raidd: Callable[..., Result], tmp_path: Path, loop: Callable[..., str]
) -> None:
    writable = image(tmp_path / "rw")
    device = loop(Path(image(tmp_path / "ro")), read_only=True)
    before = digest([writable])
    result = raidd("create", "--level", "1", "--new-keyfile", tmp_path / "k", writable, device)
    assert result.code == 2
    assert f"{device} is a read-only block device" in result.err
    assert digest([writable]) == before


def test_huge_size_leaves_nothing(raidd: Callable[..., Result], tmp_path: Path) -> None:
    key = tmp_path / "k"
    members = [tmp_path / "a", tmp_path / "b"]
    result = raidd("create", "--level", "1", "--size", "100000T", "--new-keyfile", key, *members)
    assert result.code == 2
    assert "choose a smaller --size" in result.err
    assert not any(p.exists() for p in [key, *members])


def test_non_utf8_path_refused(raidd: Callable[..., Result], tmp_path: Path) -> None:
    odd = os.fsdecode(bytes(tmp_path) + b"/a\xff")
    result = raidd(
        "create",
        "--level",
        "1",
        "--size",
        "16MiB",
        "--new-keyfile",
        tmp_path / "k",
        odd,
        tmp_path / "b",
    )
    assert result.code == 2
    assert "not valid UTF-8" in result.err
    assert not (tmp_path / "b").exists()


def test_failed_write_cleans_up(
    raidd: Callable[..., Result], tmp_path: Path, small_fs: Path
) -> None:
    existing = [image(small_fs / "m0"), image(small_fs / "m1")]
    created = tmp_path / "m2"
    key = tmp_path / "k"
    result = raidd(
        "create", "--level", "1", "--size", "16MiB", "--new-keyfile", key, *existing, created
    )
    assert result.code == 2
    assert "No space left on device" in result.err
    assert f"already hold the new array's superblocks: {existing[0]}" in result.err
    assert not created.exists()
    assert not key.exists()


def test_images_are_private(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [tmp_path / "a", tmp_path / "b"]
    result = raidd(
        "create", "--level", "1", "--size", "16MiB", "--new-keyfile", tmp_path / "k", *members
    )
    assert result.code == 0, result.err
    assert [stat.S_IMODE(os.stat(m).st_mode) for m in members] == [0o600, 0o600]


SIGNATURES = {
    "ext2/3/4": (1080, b"\x53\xef"),
    "XFS": (0, b"XFSB"),
    "btrfs": (65600, b"_BHRfS_M"),
    "LUKS": (0, b"LUKS\xba\xbe"),
    "GPT": (512, b"EFI PART"),
    "swap": (4086, b"SWAPSPACE2"),
}


def test_signatures_refused(raidd: Callable[..., Result], tmp_path: Path) -> None:
    other = image(tmp_path / "other")
    for name, (offset, magic) in SIGNATURES.items():
        target = image(tmp_path / "target")
        with open(target, "r+b") as handle:
            handle.seek(offset)
            handle.write(magic)
        before = digest([target, other])
        result = raidd("create", "--level", "1", "--keyfile", key_file(tmp_path), target, other)
        assert result.code == 2, name
        assert name in result.err, name
        assert digest([target, other]) == before, name
    forced = raidd(
        "create", "--level", "1", "--force", "--keyfile", key_file(tmp_path), target, other
    )
    assert forced.code == 0, forced.err


def test_mbr_refused(raidd: Callable[..., Result], tmp_path: Path) -> None:
    target = image(tmp_path / "target")
    with open(target, "r+b") as handle:
        handle.seek(446 + 4)
        handle.write(b"\x83")
        handle.seek(510)
        handle.write(b"\x55\xaa")
    result = raidd(
        "create",
        "--level",
        "1",
        "--keyfile",
        key_file(tmp_path),
        target,
        image(tmp_path / "other"),
    )
    assert result.code == 2
    assert "MBR partition table" in result.err


def key_file(tmp_path: Path) -> Path:
    key = tmp_path / "key"
    if not key.exists():
        key.write_bytes(os.urandom(32))
        key.chmod(0o600)
    return key


def test_locked_member_busy(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [image(tmp_path / "a"), image(tmp_path / "b")]
    with open(members[1], "rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        result = raidd("create", "--level", "1", "--keyfile", key_file(tmp_path), *members)
    assert result.code == 4
    assert members[1] in result.err


def test_name_with_control_refused(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [image(tmp_path / "a"), image(tmp_path / "b")]
    result = raidd(
        "create",
        "--level",
        "1",
        "--name",
        "a\x1b[31mRED",
        "--keyfile",
        key_file(tmp_path),
        *members,
    )
    assert result.code == 2
    assert "control characters" in result.err


def test_spare_count_message(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [str(tmp_path / f"m{i}") for i in range(30)]
    spares = [a for i in range(3) for a in ("--spare", str(tmp_path / f"s{i}"))]
    result = raidd("create", "--level", "5", *spares, "--keyfile", key_file(tmp_path), *members)
    assert result.code == 2
    assert "got 30 members and 3 spares" in result.err


def test_no_command_exits_2(raidd: Callable[..., Result]) -> None:
    result = raidd()
    assert result.code == 2
    assert "usage:" in result.err


def test_sparse_overcommit_warns(raidd: Callable[..., Result], medium_fs: Path) -> None:
    members = [medium_fs / "a", medium_fs / "b"]
    key = medium_fs / "k"
    result = raidd("create", "--level", "1", "--size", "16MiB", "--new-keyfile", key, *members)
    assert result.code == 1, result.err
    assert "may grow to 33554432 bytes" in result.err


def test_fractional_size_accepted(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [tmp_path / "a", tmp_path / "b"]
    result = raidd(
        "create", "--level", "1", "--size", "16.5MiB", "--new-keyfile", tmp_path / "k", *members
    )
    assert result.code == 0, result.err
    assert [os.path.getsize(m) for m in members] == [16 * MiB + MiB // 2] * 2


@needs_loop
def test_exclusive_block_device_busy(
    raidd: Callable[..., Result], tmp_path: Path, loop: Callable[..., str]
) -> None:
    device = loop(Path(image(tmp_path / "img")))
    holder = os.open(device, os.O_RDONLY | os.O_EXCL)
    try:
        result = raidd(
            "create",
            "--level",
            "1",
            "--keyfile",
            key_file(tmp_path),
            device,
            image(tmp_path / "other"),
        )
    finally:
        os.close(holder)
    assert result.code == 4
    assert f"member {device} is in use" in result.err
