"""`raidd examine`: the JSON schema, invalid paths, and reading beside a holder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from raidd.array import assemble
from raidd.array.superblock import SUPERBLOCK_SIZE
from tests.commands.conftest import Result

SCRIPTS = Path(sys.executable).parent


def create(
    raidd: Callable[..., Result], tmp_path: Path, level: str = "6", count: int = 4
) -> list[str]:
    members = [str(tmp_path / f"m{i}.img") for i in range(count)]
    spare = str(tmp_path / "spare.img")
    result = raidd(
        "create",
        "--level",
        level,
        "--size",
        "16MiB",
        "--spare",
        spare,
        "--new-keyfile",
        tmp_path / "k",
        *members,
    )
    assert result.code == 0, result.err
    return [*members, spare]


def test_json_schema(raidd: Callable[..., Result], tmp_path: Path) -> None:
    paths = create(raidd, tmp_path)
    result = raidd("examine", "--json", *paths)
    assert result.code == 0
    objects = result.json()
    assert [o["path"] for o in objects] == paths
    first = objects[0]
    for key in (
        "array_uuid",
        "member_uuid",
        "level",
        "strip_size",
        "member_count",
        "event_counter",
        "state",
        "superblocks",
    ):
        assert key in first
    assert first["role"] == 0
    assert objects[4]["role"] == "spare"
    assert objects[4]["state"] == "spare"
    assert first["level"] == 6
    assert first["strip_size"] == 65536
    assert first["member_count"] == 4
    assert first["state"] == "active"
    assert {o["array_uuid"] for o in objects} == {first["array_uuid"]}
    assert [c["slot"] for c in first["superblocks"]] == ["0", "1", "end"]
    assert all(c["valid"] for c in first["superblocks"])
    assert [c["event_counter"] for c in first["superblocks"]] == [0, 1, 1]


def test_invalid_path_exits_1(raidd: Callable[..., Result], tmp_path: Path) -> None:
    paths = create(raidd, tmp_path, "5", 3)
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))
    with open(paths[1], "r+b") as member:
        member.seek(SUPERBLOCK_SIZE + 300)
        member.write(b"junk")
    result = raidd("examine", "--json", paths[0], str(blank), str(tmp_path / "missing"), paths[1])
    assert result.code == 1
    objects = result.json()
    assert objects[1]["path"] == str(blank)
    assert "no valid raidd superblock" in objects[1]["error"]
    assert "not found" in objects[2]["error"]
    assert "error" not in objects[3]
    copies = {c["slot"]: c for c in objects[3]["superblocks"]}
    assert copies["1"]["valid"] is False
    assert copies["1"]["error"] == "superblock checksum mismatch"
    assert objects[3]["event_counter"] == 1


def test_text_output(raidd: Callable[..., Result], tmp_path: Path) -> None:
    paths = create(raidd, tmp_path, "5", 3)
    result = raidd("examine", paths[0])
    assert result.code == 0
    assert "level          : RAID5" in result.out
    assert "copy end" in result.out


def test_works_while_held(raidd: Callable[..., Result], tmp_path: Path, lock_dir: Path) -> None:
    """examine only reads, so it runs while another process holds the array."""
    paths = create(raidd, tmp_path, "5", 3)
    with assemble(paths, lock_dir=lock_dir) as array:
        array.write_stripe(b"x")
        array.commit(b"r")
        env = {**os.environ, "RAIDD_LOCK_DIR": str(lock_dir)}
        result = subprocess.run(
            [SCRIPTS / "raidd", "examine", "--json", *paths],
            capture_output=True,
            text=True,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert '"event_counter": 2' in result.stdout
        busy = subprocess.run(
            [SCRIPTS / "raidd", "key", "list", *paths], capture_output=True, text=True, env=env
        )
        assert busy.returncode == 0
        held = subprocess.run(
            [
                SCRIPTS / "raidd",
                "key",
                "add",
                "--keyfile",
                tmp_path / "k",
                "--new-keyfile",
                tmp_path / "k2",
                *paths,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        assert held.returncode == 4
        assert f"held by pid {os.getpid()}" in held.stderr
