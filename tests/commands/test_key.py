"""`raidd key`: add, list and remove keyslots in every copy of every member."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import crypto
from raidd.array.member import open_member
from raidd.array.superblock import read_superblocks
from tests.commands.conftest import Result


def create(raidd: Callable[..., Result], tmp_path: Path) -> tuple[list[str], Path]:
    members = [str(tmp_path / f"m{i}.img") for i in range(3)]
    key = tmp_path / "first.key"
    result = raidd(
        "create",
        "--level",
        "5",
        "--size",
        "16MiB",
        "--spare",
        tmp_path / "spare.img",
        "--new-keyfile",
        key,
        *members,
    )
    assert result.code == 0, result.err
    return [*members, str(tmp_path / "spare.img")], key


def areas(paths: list[str]) -> list[list[str]]:
    """Return the slot kinds of every superblock copy of every member."""
    found = []
    for path in paths:
        member = open_member(path, writable=False)
        for copy in read_superblocks(member).copies:
            assert copy.superblock is not None
            area = crypto.KeyslotArea.from_bytes(copy.superblock.keyslot_area)
            found.append([f"{s.number}:{s.kind}" for s in area.slots()])
        member.close()
    return found


def test_add_list_remove(raidd: Callable[..., Result], tmp_path: Path) -> None:
    paths, key = create(raidd, tmp_path)
    members = paths[:3]
    second = tmp_path / "second.key"
    added = raidd("key", "add", "--keyfile", key, "--new-keyfile", second, *members)
    assert added.code == 0, added.err
    assert "added keyslot 1" in added.out
    listed = raidd("key", "list", "--json", *members)
    assert [row["kind"] for row in listed.json()] == ["keyfile", "keyfile"]
    phrase = tmp_path / "phrase"
    phrase.write_text("correct horse battery staple\n")
    phrase.chmod(0o600)
    assert (
        raidd("key", "add", "--keyfile", second, "--new-passphrase-file", phrase, *members).code
        == 0
    )
    listed = raidd("key", "list", members[0])
    assert "slot 2: passphrase  scrypt N=2^16 r=8 p=1" in listed.out
    removed = raidd("key", "remove", "--slot", "0", "--passphrase-file", phrase, *members)
    assert removed.code == 0, removed.err
    assert areas(paths) == [["1:keyfile", "2:passphrase"]] * 12
    refused = raidd("key", "add", "--keyfile", key, "--new-keyfile", tmp_path / "k3", *members)
    assert refused.code == 5
    assert "no keyslot opens" in refused.err


def test_remove_last_refused(raidd: Callable[..., Result], tmp_path: Path) -> None:
    paths, key = create(raidd, tmp_path)
    result = raidd("key", "remove", "--slot", "0", "--keyfile", key, *paths[:3])
    assert result.code == 2
    assert "last intact keyslot" in result.err
    assert areas(paths) == [["0:keyfile"]] * 12


def test_remove_warns_about_absent_member(raidd: Callable[..., Result], tmp_path: Path) -> None:
    paths, key = create(raidd, tmp_path)
    second = tmp_path / "second.key"
    assert raidd("key", "add", "--keyfile", key, "--new-keyfile", second, *paths[:3]).code == 0
    absent = tmp_path / "absent.img"
    Path(paths[2]).rename(absent)
    refused = raidd("key", "remove", "--slot", "0", "--keyfile", second, *paths[:2])
    assert refused.code == 2
    assert "--degraded" in refused.err
    assert areas(paths[:2]) == [["0:keyfile", "1:keyfile"]] * 6
    result = raidd("key", "remove", "--degraded", "--slot", "0", "--keyfile", second, *paths[:2])
    assert result.code == 1
    assert result.err.count("role 2") == 1
    assert "now marked absent" in result.err
    assert "still contains the old keyslots" in result.err
    assert areas([paths[0], paths[1], paths[3]]) == [["1:keyfile"]] * 9
    assert areas([str(absent)]) == [["0:keyfile", "1:keyfile"]] * 3


def _run_on_terminal(args: list[str], answers: list[bytes]) -> tuple[int, str]:
    """Run `raidd ARGS` on a pseudo-terminal, typing one answer after each prompt."""
    pid, fd = pty.fork()
    if pid == 0:
        code = "import sys; from raidd.cli import main; sys.exit(main(sys.argv[1:]))"
        os.execv(sys.executable, [sys.executable, "-c", code, *args])
    output = b""
    answered = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        # Each prompt ends with "passphrase: "; answer each one once.
        while answered < min(output.count(b"passphrase: "), len(answers)):
            os.write(fd, answers[answered] + b"\n")
            answered += 1
    finished, status = os.waitpid(pid, os.WNOHANG)
    while finished == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        finished, status = os.waitpid(pid, os.WNOHANG)
    if finished == 0:  # still waiting for input after the deadline
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_add_passphrase_from_prompt(raidd: Callable[..., Result], tmp_path: Path) -> None:
    """`key add` prompts twice on the terminal, and the typed passphrase then unlocks."""
    paths, key = create(raidd, tmp_path)
    members = paths[:3]
    code, output = _run_on_terminal(
        ["key", "add", "--keyfile", str(key), *members], [b"typed phrase", b"typed phrase"]
    )
    assert code == 0, output
    assert "New passphrase:" in output
    assert "Repeat the new passphrase:" in output
    assert "typed phrase" not in output
    assert "added keyslot 1" in output
    phrase = tmp_path / "phrase"
    phrase.write_text("typed phrase\n")
    phrase.chmod(0o600)
    removed = raidd("key", "remove", "--slot", "0", "--passphrase-file", phrase, *members)
    assert removed.code == 0, removed.err
    assert areas(paths) == [["1:passphrase"]] * 12


def test_add_passphrase_mismatch(raidd: Callable[..., Result], tmp_path: Path) -> None:
    paths, key = create(raidd, tmp_path)
    code, output = _run_on_terminal(
        ["key", "add", "--keyfile", str(key), *paths[:3]], [b"first", b"second"]
    )
    assert code == 2, output
    assert "the passphrases differ; nothing was changed" in output
    assert areas(paths) == [["0:keyfile"]] * 12
