"""`raidd header-backup` and `header-restore`: save and put back every copy."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from raidd.array import assemble
from raidd.array.superblock import SUPERBLOCK_SIZE
from tests.commands.conftest import Result


def headers(path: str) -> str:
    data = Path(path).read_bytes()
    return hashlib.sha256(data[: 2 * SUPERBLOCK_SIZE] + data[-SUPERBLOCK_SIZE:]).hexdigest()


def test_backup_and_restore(raidd: Callable[..., Result], tmp_path: Path, lock_dir: Path) -> None:
    members = [str(tmp_path / f"m{i}.img") for i in range(3)]
    assert (
        raidd(
            "create", "--level", "5", "--size", "16MiB", "--new-keyfile", tmp_path / "k", *members
        ).code
        == 0
    )
    backup = tmp_path / "headers.bin"
    result = raidd("header-backup", *[a for m in members for a in ("--member", m)], backup)
    assert result.code == 0, result.err
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    saved = [headers(m) for m in members]
    with open(members[1], "r+b") as member:
        member.write(bytes(2 * SUPERBLOCK_SIZE))
        member.seek(-SUPERBLOCK_SIZE, os.SEEK_END)
        member.write(bytes(SUPERBLOCK_SIZE))
    assert raidd("examine", members[1]).code == 1
    restored = raidd("header-restore", "--member", members[1], backup)
    assert restored.code == 0, restored.err
    assert headers(members[1]) == saved[1]
    with assemble(members, lock_dir=lock_dir) as array:
        assert not array.report.degraded


def test_restore_refuses_rollback(
    raidd: Callable[..., Result], tmp_path: Path, lock_dir: Path
) -> None:
    members = [str(tmp_path / f"m{i}.img") for i in range(3)]
    assert (
        raidd(
            "create", "--level", "5", "--size", "16MiB", "--new-keyfile", tmp_path / "k", *members
        ).code
        == 0
    )
    backup = tmp_path / "headers.bin"
    assert raidd("header-backup", "--member", members[0], backup).code == 0
    assert raidd("header-backup", "--member", members[0], backup).code == 2
    with assemble(members, lock_dir=lock_dir) as array:
        array.write_stripe(b"x")
        array.commit(b"r")
    before = headers(members[0])
    result = raidd("header-restore", "--member", members[0], backup)
    assert result.code == 2
    assert "newer than the backup" in result.err
    assert headers(members[0]) == before
    assert raidd("header-restore", "--force", "--member", members[0], backup).code == 0
    assert headers(members[0]) != before


def test_damaged_backup_refused(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [str(tmp_path / f"m{i}.img") for i in range(3)]
    assert (
        raidd(
            "create", "--level", "5", "--size", "16MiB", "--new-keyfile", tmp_path / "k", *members
        ).code
        == 0
    )
    backup = tmp_path / "headers.bin"
    assert raidd("header-backup", "--member", members[0], backup).code == 0
    data = bytearray(backup.read_bytes())
    data[5000] ^= 1
    backup.write_bytes(bytes(data))
    result = raidd("header-restore", "--member", members[0], backup)
    assert result.code == 2
    assert "damaged" in result.err
