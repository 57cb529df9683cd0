"""`raidd key`: member checks, stored paths, key files, passphrase files and prompts."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from raidd.array.member import open_member
from raidd.array.superblock import read_superblocks
from tests.commands.conftest import Result

MiB = 1024 * 1024


def create(
    raidd: Callable[..., Result], directory: Path, level: str = "1"
) -> tuple[list[str], Path]:
    count = 2 if level == "1" else 3
    members = [str(directory / f"m{i}") for i in range(count)]
    key = directory / "k"
    result = raidd("create", "--level", level, "--size", "16MiB", "--new-keyfile", key, *members)
    assert result.code == 0, result.err
    return members, key


def table_paths(path: str) -> list[str]:
    member = open_member(path, writable=False)
    try:
        newest = read_superblocks(member).newest
    finally:
        member.close()
    assert newest is not None
    return [entry.path for entry in newest.members]


def headers(path: str) -> bytes:
    data = Path(path).read_bytes()
    return data[: 2 * 65536] + data[-65536:]


def test_truncated_member_refused(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members, key = create(raidd, tmp_path)
    os.truncate(members[0], 14 * MiB)
    before = [headers(m) for m in members]
    result = raidd("key", "add", "--keyfile", key, "--new-keyfile", tmp_path / "k2", *members)
    assert result.code == 2
    assert f"member {members[0]} has {14 * MiB} bytes" in result.err
    assert "needs 16777216 bytes" in result.err
    assert [headers(m) for m in members] == before
    assert not (tmp_path / "k2").exists()
    examined = raidd("examine", members[0])
    assert examined.code == 1
    assert "needs 16777216 bytes" in examined.err


def test_paths_stored_absolute(
    raidd: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rel").mkdir()
    monkeypatch.chdir(tmp_path)
    relative = [f"rel/m{i}" for i in range(3)]
    result = raidd(
        "create", "--level", "5", "--size", "16MiB", "--new-keyfile", "rel/k", *relative
    )
    assert result.code == 0, result.err
    added = raidd("key", "add", "--keyfile", "rel/k", "--new-keyfile", "rel/k2", *relative)
    assert added.code == 0, added.err
    absolute = [str(tmp_path / p) for p in relative]
    assert table_paths(absolute[0]) == absolute
    monkeypatch.chdir("/")
    listed = raidd("key", "list", absolute[0])
    assert listed.code == 0, listed.err
    partial = raidd(
        "key",
        "add",
        "--keyfile",
        absolute[0].replace("m0", "k"),
        "--new-keyfile",
        tmp_path / "k3",
        absolute[0],
    )
    assert partial.code == 0, partial.err
    assert partial.err == ""
    assert table_paths(absolute[2]) == absolute


def test_add_existing_keyfile(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members, key = create(raidd, tmp_path)
    extra = tmp_path / "extra"
    extra.write_bytes(os.urandom(32))
    extra.chmod(0o600)
    result = raidd("key", "add", "--json", "--keyfile", key, "--add-keyfile", extra, *members)
    assert result.code == 0, result.err
    assert result.json()["slot"] == 1
    removed = raidd("key", "remove", "--json", "--keyfile", extra, "--slot", "0", *members)
    assert removed.code == 0, removed.err
    assert removed.json()["slot"] == 0
    listed = raidd("key", "list", "--json", *members)
    assert [row["slot"] for row in listed.json()] == [1]


def test_full_slots_create_no_file(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members, key = create(raidd, tmp_path)
    for number in range(1, 8):
        added = raidd(
            "key", "add", "--keyfile", key, "--new-keyfile", tmp_path / f"k{number}", *members
        )
        assert added.code == 0, added.err
    result = raidd("key", "add", "--keyfile", key, "--new-keyfile", tmp_path / "k8", *members)
    assert result.code == 2
    assert "all 8 keyslots are in use" in result.err
    assert not (tmp_path / "k8").exists()


def test_passphrase_file_checks(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members, key = create(raidd, tmp_path)
    cases = {
        "open": (b"secret\n", 0o644, "has mode 0644"),
        "empty": (b"", 0o600, "empty passphrase"),
        "newline": (b"\n", 0o600, "empty passphrase"),
        "latin1": (b"caf\xe9 pass", 0o600, "is not UTF-8"),
    }
    for name, (content, mode, expected) in cases.items():
        phrase = tmp_path / name
        phrase.write_bytes(content)
        phrase.chmod(mode)
        result = raidd("key", "add", "--keyfile", key, "--new-passphrase-file", phrase, *members)
        assert result.code == 2, name
        assert expected in result.err, name
        assert str(phrase) in result.err, name
        unlock = raidd(
            "key",
            "add",
            "--passphrase-file",
            phrase,
            "--new-keyfile",
            tmp_path / f"{name}.key",
            *members,
        )
        assert unlock.code == 2, name
        assert not (tmp_path / f"{name}.key").exists(), name


def run_raidd(args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from raidd.cli import main; sys.exit(main())", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,  # type: ignore[arg-type]
    )


def test_prompt_without_terminal(
    raidd: Callable[..., Result], tmp_path: Path, lock_dir: Path
) -> None:
    members, key = create(raidd, tmp_path)
    process = run_raidd(
        ["key", "add", "--keyfile", str(key), *members],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert b"no terminal" in err
    assert b"--passphrase-file" in err
    assert b"Traceback" not in err


def test_interrupt_at_prompt(raidd: Callable[..., Result], tmp_path: Path, lock_dir: Path) -> None:
    members, key = create(raidd, tmp_path)
    master, slave = pty.openpty()

    def take_terminal() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    process = run_raidd(
        ["key", "add", "--keyfile", str(key), *members],
        stdin=slave,
        preexec_fn=take_terminal,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while b"passphrase: " not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            seen += os.read(master, 1024)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    os.close(master)
    assert b"New passphrase" in seen
    assert process.returncode == 130
    assert err.strip().splitlines() == [b"raidd key add: interrupted"]


def test_stale_member_named_stale(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members, key = create(raidd, tmp_path, level="5")
    aside = Path(members[2]).read_bytes()
    added = raidd("key", "add", "--keyfile", key, "--new-keyfile", tmp_path / "k2", *members)
    assert added.code == 0, added.err
    Path(members[2]).write_bytes(aside)
    refused = raidd("key", "add", "--keyfile", key, "--new-keyfile", tmp_path / "k3", *members)
    assert refused.code == 2
    assert f"at {members[2]}) is not used: stale" in refused.err
    assert "not found" not in refused.err
    forced = raidd(
        "key", "add", "--degraded", "--keyfile", key, "--new-keyfile", tmp_path / "k3", *members
    )
    assert forced.code == 1, forced.err
    assert forced.err.count("warning:") == 1
    assert "now marked absent" in forced.err


def test_list_degraded_warns(raidd: Callable[..., Result], tmp_path: Path) -> None:
    members, _ = create(raidd, tmp_path, level="5")
    healthy = raidd("key", "list", members[0])
    assert healthy.code == 0
    assert healthy.err == ""
    os.rename(members[2], tmp_path / "moved")
    degraded = raidd("key", "list", members[0])
    assert degraded.code == 1
    assert degraded.out == "slot 0: keyfile\n"
    assert "role 2" in degraded.err
    assert "degraded" in degraded.err
