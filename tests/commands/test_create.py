"""`raidd create`: validation before the first byte, output, and the key file."""

from __future__ import annotations

import hashlib
import os
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from raidd.array import assemble
from raidd.config import parse_config
from tests.commands.conftest import Result

MiB = 1024 * 1024


def image(path: Path, size: int = 16 * MiB) -> str:
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)


def digest(paths: list[str]) -> list[str]:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


def test_create_prints_uuid_and_stanza(
    raidd: Callable[..., Result], tmp_path: Path, lock_dir: Path
) -> None:
    members = [str(tmp_path / f"m{i}.img") for i in range(4)]
    key = tmp_path / "raidd.key"
    result = raidd(
        "create",
        "--level",
        "5",
        "--strip-size",
        "16KiB",
        "--name",
        "crm",
        "--size",
        "20MiB",
        "--new-keyfile",
        key,
        *members,
    )
    assert result.code == 0, result.err
    assert "[array]" in result.out
    uuid_line = next(line for line in result.out.splitlines() if line.startswith("uuid = "))
    array_uuid = uuid_line.split('"')[1]
    assert f'members = ["{members[0]}"' in result.out
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o400
    with assemble(members, lock_dir=lock_dir) as array:
        assert str(array.uuid) == array_uuid
        assert array.name == "crm"
        assert array.codec.strip_size == 16384
        assert array.level == 5
        import crypto

        area = crypto.KeyslotArea.from_bytes(array.keyslot_area)
        area.unlock_keyfile(crypto.read_keyfile(key)).wipe()


def test_json_before_or_after_command(raidd: Callable[..., Result], tmp_path: Path) -> None:
    first = [str(tmp_path / f"a{i}.img") for i in range(2)]
    second = [str(tmp_path / f"b{i}.img") for i in range(2)]
    before = raidd(
        "--json",
        "create",
        "--level",
        "1",
        "--size",
        "16MiB",
        "--new-keyfile",
        tmp_path / "a.key",
        *first,
    )
    after = raidd(
        "create",
        "--level",
        "1",
        "--size",
        "16MiB",
        "--new-keyfile",
        tmp_path / "b.key",
        "--json",
        *second,
    )
    assert before.code == after.code == 0
    assert before.json()["members"] == first
    assert after.json()["level"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--level", "6"], "RAID6 needs at least 4 members; got 3"),
        (["--level", "5", "--strip-size", "3000"], "power of two"),
        (["--level", "5", "--strip-size", "4MiB"], "at most 2097152"),
        (["--level", "5", "--name", "x" * 65], "longer than 64 bytes"),
    ],
)
def test_invalid_geometry(
    raidd: Callable[..., Result], tmp_path: Path, args: list[str], message: str
) -> None:
    members = [image(tmp_path / f"m{i}.img") for i in range(3)]
    before = digest(members)
    result = raidd("create", *args, "--new-keyfile", tmp_path / "k", *members)
    assert result.code == 2
    assert message in result.err
    assert digest(members) == before
    assert not (tmp_path / "k").exists()


def test_refuses_used_member_then_force(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [image(tmp_path / f"m{i}.img") for i in range(3)]
    assert raidd("create", "--level", "5", "--new-keyfile", tmp_path / "k1", *members).code == 0
    fresh = image(tmp_path / "fresh.img")
    before = digest([fresh])
    result = raidd("create", "--level", "5", "--new-keyfile", tmp_path / "k2", fresh, *members[:2])
    assert result.code == 2
    assert f"member {members[0]} already carries a raidd superblock" in result.err
    assert digest([fresh]) == before
    assert not (tmp_path / "k2").exists()
    forced = raidd("create", "--level", "5", "--force", "--keyfile", tmp_path / "k1", *members)
    assert forced.code == 0, forced.err


def test_refuses_small_member(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [
        image(tmp_path / "m0.img"),
        image(tmp_path / "m1.img"),
        image(tmp_path / "small.img", 8 * MiB),
    ]
    result = raidd("create", "--level", "5", "--new-keyfile", tmp_path / "k", *members)
    assert result.code == 2
    assert f"member {members[2]} has 8388608 bytes" in result.err


def test_refuses_existing_new_keyfile(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [image(tmp_path / f"m{i}.img") for i in range(3)]
    key = tmp_path / "k"
    key.write_bytes(b"x" * 32)
    result = raidd("create", "--level", "5", "--new-keyfile", key, *members)
    assert result.code == 2
    assert "already exists" in result.err
    assert key.read_bytes() == b"x" * 32


def test_refuses_missing_member_without_size(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [image(tmp_path / "m0.img"), image(tmp_path / "m1.img"), str(tmp_path / "m2.img")]
    result = raidd("create", "--level", "5", "--new-keyfile", tmp_path / "k", *members)
    assert result.code == 2
    assert "not found; pass --size" in result.err


def test_refuses_same_device_twice(raidd: Callable[..., Result], tmp_path: Path) -> None:
    first = image(tmp_path / "m0.img")
    os.symlink(first, tmp_path / "alias.img")
    members = [first, image(tmp_path / "m1.img"), str(tmp_path / "alias.img")]
    result = raidd("create", "--level", "5", "--new-keyfile", tmp_path / "k", *members)
    assert result.code == 2
    assert "are the same device" in result.err


def test_different_sizes_warn(
    raidd: Callable[..., Result], tmp_path: Path, lock_dir: Path
) -> None:
    members = [
        image(tmp_path / "m0.img", 20 * MiB),
        image(tmp_path / "m1.img"),
        image(tmp_path / "m2.img", 24 * MiB),
    ]
    result = raidd("create", "--level", "5", "--new-keyfile", tmp_path / "k", *members)
    assert result.code == 1
    assert result.err.count("members differ in size") == 1
    assert f"({members[1]})" in result.err


def test_loose_keyfile_refused(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members = [image(tmp_path / f"m{i}.img") for i in range(3)]
    key = tmp_path / "k"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    before = digest(members)
    result = raidd("create", "--level", "5", "--keyfile", key, *members)
    assert result.code == 2
    assert str(key) in result.err
    assert digest(members) == before


def test_stanza_parses_with_config(
    raidd: Callable[..., Result], tmp_path: Path, lock_dir: Path
) -> None:
    """The printed [array] table loads with raidd.config and names the new array."""
    members = [str(tmp_path / f'm "{i}".img') for i in range(3)]
    spare = str(tmp_path / "späre.img")
    key = tmp_path / "raidd.key"
    result = raidd(
        "create",
        "--level",
        "5",
        "--name",
        "crm-eu",
        "--size",
        "20MiB",
        "--spare",
        spare,
        "--new-keyfile",
        key,
        *members,
    )
    assert result.code == 0, result.err
    stanza = result.out[result.out.index("[array]") :]
    state = tmp_path / "state"
    text = f'{stanza}\n[state]\ndirectory = "{state}"\n\n[[watch]]\npath = "/srv/crm"\n'
    config = parse_config(tomllib.loads(text), tmp_path)
    with assemble(members, lock_dir=lock_dir) as array:
        assert config.array.uuid == array.uuid
    assert config.array.name == "crm-eu"
    assert config.array.members == tuple(members)
    assert config.array.spares == (spare,)
    assert config.array.keyfile == key
