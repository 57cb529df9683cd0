"""`raidd header-backup` and `header-restore`: save and put back every copy."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
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
    member_uuid = raidd("examine", "--json", members[1]).json()[0]["member_uuid"]
    with open(members[1], "r+b") as member:
        member.write(bytes(2 * SUPERBLOCK_SIZE))
        member.seek(-SUPERBLOCK_SIZE, os.SEEK_END)
        member.write(bytes(SUPERBLOCK_SIZE))
    assert raidd("examine", members[1]).code == 1
    unnamed = raidd("header-restore", "--member", members[1], backup)
    assert unnamed.code == 2
    assert f"{members[1]}=MEMBER_UUID" in unnamed.err
    restored = raidd("header-restore", "--member", f"{members[1]}={member_uuid}", backup)
    assert restored.code == 0, restored.err
    assert f"restored member {member_uuid} (role 1" in restored.out
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
    forced = raidd("header-restore", "--force", "--member", members[0], backup)
    assert forced.code == 1
    assert "warning:" in forced.err
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


def create_raid1(raidd: Callable[..., Result], tmp_path: Path, name: str = "m") -> list[str]:
    members = [str(tmp_path / f"{name}{i}.img") for i in range(2)]
    key = tmp_path / f"{name}.key"
    result = raidd("create", "--level", "1", "--size", "16MiB", "--new-keyfile", key, *members)
    assert result.code == 0, result.err
    return members


def test_backup_full_disk_keeps_old(
    raidd: Callable[..., Result], tmp_path: Path, small_fs: Path
) -> None:
    members = create_raid1(raidd, tmp_path)
    target = small_fs / "hb"
    assert raidd("header-backup", "--member", members[0], target).code == 0
    good = target.read_bytes()
    result = raidd(
        "header-backup", "--force", "--member", members[0], "--member", members[1], target
    )
    assert result.code == 2
    assert "No space left on device" in result.err
    assert target.read_bytes() == good
    assert sorted(p.name for p in small_fs.iterdir()) == ["hb"]


def test_backup_target_checks(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = create_raid1(raidd, tmp_path)
    missing = raidd("header-backup", "--member", members[0], tmp_path / "no" / "hb")
    assert missing.code == 2
    assert "not found" in missing.err
    directory = raidd("header-backup", "--force", "--member", members[0], tmp_path)
    assert directory.code == 2
    assert "is a directory" in directory.err
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "link"
    link.symlink_to(victim)
    linked = raidd("header-backup", "--force", "--member", members[0], link)
    assert linked.code == 2
    assert "symbolic link" in linked.err
    assert victim.read_bytes() == b"keep"


def test_backup_json(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = create_raid1(raidd, tmp_path)
    result = raidd("header-backup", "--json", "--member", members[0], tmp_path / "hb")
    assert result.code == 0, result.err
    assert result.json()["members"][0]["path"] == members[0]


def test_restore_over_other_array(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = create_raid1(raidd, tmp_path)
    member_uuid = raidd("examine", "--json", members[0]).json()[0]["member_uuid"]
    backup = tmp_path / "hb"
    assert raidd("header-backup", "--member", members[0], "--member", members[1], backup).code == 0
    saved = headers(members[0])
    again = raidd("create", "--level", "1", "--force", "--keyfile", tmp_path / "m.key", *members)
    assert again.code == 0, again.err
    plain = raidd("header-restore", "--force", "--member", members[0], backup)
    assert plain.code == 2
    assert "does not hold" in plain.err
    named = f"{members[0]}={member_uuid}"
    refused = raidd("header-restore", "--member", named, backup)
    assert refused.code == 2
    assert "pass --force" in refused.err
    forced = raidd("header-restore", "--force", "--json", "--member", named, backup)
    assert forced.code == 1, forced.err
    assert forced.json()["restored"][0]["member_uuid"] == member_uuid
    assert headers(members[0]) == saved


def test_restore_checks_all_first(
    raidd: Callable[..., Result], tmp_path: Path, lock_dir: Path
) -> None:
    members = create_raid1(raidd, tmp_path)
    other = create_raid1(raidd, tmp_path, "o")
    backup = tmp_path / "hb"
    assert raidd("header-backup", "--member", members[0], backup).code == 0
    with assemble(members, lock_dir=lock_dir) as array:
        array.commit_state()
    before = [headers(members[0]), headers(other[0])]
    result = raidd(
        "header-restore", "--force", "--member", members[0], "--member", other[0], backup
    )
    assert result.code == 2
    assert [headers(members[0]), headers(other[0])] == before


def test_restore_refuses_unproven_rollback(
    raidd: Callable[..., Result], tmp_path: Path, lock_dir: Path
) -> None:
    members = create_raid1(raidd, tmp_path)
    member_uuid = raidd("examine", "--json", members[0]).json()[0]["member_uuid"]
    backup = tmp_path / "hb"
    assert raidd("header-backup", "--member", members[0], backup).code == 0
    with assemble(members, lock_dir=lock_dir) as array:
        array.commit_state()
    wipe(members[0])
    result = raidd("header-restore", "--member", f"{members[0]}={member_uuid}", backup)
    assert result.code == 2
    assert "newer than the backup" in result.err
    assert raidd("examine", members[0]).code == 1


def test_restore_rejects_duplicate_uuid(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = create_raid1(raidd, tmp_path)
    first = raidd("examine", "--json", members[0]).json()[0]["member_uuid"]
    backup = tmp_path / "hb"
    assert raidd("header-backup", "--member", members[0], backup).code == 0
    wipe(members[1])
    result = raidd("header-restore", "--member", f"{members[1]}={first}", backup)
    assert result.code == 2
    assert f"already on {members[0]}" in result.err


def wipe(path: str) -> None:
    with open(path, "r+b") as member:
        member.write(bytes(2 * SUPERBLOCK_SIZE))
        member.seek(-SUPERBLOCK_SIZE, os.SEEK_END)
        member.write(bytes(SUPERBLOCK_SIZE))


def crafted(path: Path, body: bytes) -> None:
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_crafted_backups_refused(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = create_raid1(raidd, tmp_path)
    copy = bytes(SUPERBLOCK_SIZE)
    cases = {
        "count": struct.pack("<8sII", b"RAIDDHB\x00", 1, 100_000_000),
        "length": struct.pack("<8sII", b"RAIDDHB\x00", 1, 1)
        + struct.pack("<I", 0xFFFFFFFF)
        + 3 * copy,
        "path": struct.pack("<8sII", b"RAIDDHB\x00", 1, 1)
        + struct.pack("<I", 3)
        + b"\xff\xfe\xfd"
        + 3 * copy,
    }
    for name, body in cases.items():
        crafted(tmp_path / name, body)
        result = raidd("header-restore", "--member", members[0], tmp_path / name)
        assert result.code == 2, name
        assert str(tmp_path / name) in result.err, name


def test_truncated_member_refused(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = create_raid1(raidd, tmp_path)
    backup = tmp_path / "hb"
    assert raidd("header-backup", "--member", members[0], backup).code == 0
    os.truncate(members[0], 14 * 1024 * 1024)
    saved = raidd("header-backup", "--member", members[0], tmp_path / "hb2")
    assert saved.code == 2
    assert "needs 16777216 bytes" in saved.err
    assert not (tmp_path / "hb2").exists()
    before = headers(members[0])
    restored = raidd("header-restore", "--force", "--member", members[0], backup)
    assert restored.code == 2
    assert "needs 16777216 bytes" in restored.err
    assert headers(members[0]) == before
