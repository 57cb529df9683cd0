"""The offline store commands through raidd.cli.main, on image-file arrays."""

import base64
import hashlib
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import crypto
from raidd.store.store import Store
from tests.commands.conftest import Result
from tests.store.storekit import Setup, describe_tree, make_setup

Run = Callable[..., Result]


@pytest.fixture
def setup(tmp_path: Path, lock_dir: Path) -> Setup:
    made = make_setup(tmp_path / "array")
    (made.data / "notes.txt").write_text("first version\n")
    (made.data / "sub").mkdir()
    (made.data / "sub" / "deep.bin").write_bytes(os.urandom(200_000))
    return made


def member_digests(setup: Setup) -> list[str]:
    return [hashlib.sha256(Path(m).read_bytes()).hexdigest() for m in setup.members]


def test_backup_snapshots_ls_restore(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    first = raidd("backup", "--config", setup.config_path)
    assert first.code == 0, first.err
    assert "Commit 1 of data" in first.out
    (setup.data / "notes.txt").write_text("second version, longer\n")
    second = raidd("--json", "--config", setup.config_path, "backup")
    assert second.code == 0, second.err
    assert second.json()["commit"] == 2
    listing = raidd("snapshots", "--json", "--config", setup.config_path)
    assert [row["commit"] for row in listing.json()] == [2, 1]
    limited = raidd("snapshots", "--limit", "1", "--json", "--config", setup.config_path)
    assert [row["commit"] for row in limited.json()] == [2]
    entries = raidd("ls", "data/sub", "--json", "--config", setup.config_path).json()["entries"]
    assert [e["path"] for e in entries] == ["data/sub", "data/sub/deep.bin"]
    by_path = raidd("ls", str(setup.data / "sub"), "--json", "--config", setup.config_path)
    assert by_path.json()["entries"] == entries
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first_ns = listing.json()[1]["time_ns"]
    first_time = (epoch + timedelta(microseconds=first_ns // 1000)).isoformat()
    first_second = (epoch + timedelta(seconds=first_ns // 10**9)).isoformat()
    at_second = raidd("ls", "--at", first_second, "--json", "--config", setup.config_path)
    assert at_second.json()["commit"] in (1, 2)
    at_first = raidd("ls", "--at", first_time, "--json", "--config", setup.config_path)
    assert at_first.json()["commit"] == 1
    since = raidd("snapshots", "--since", first_time, "--json", "--config", setup.config_path)
    assert [row["commit"] for row in since.json()] == [2, 1]
    too_early = raidd("ls", "--at", "2000-01-01T00:00Z", "--config", setup.config_path)
    assert too_early.code == 2
    assert "no commit" in too_early.err
    old = raidd("restore", "--config", setup.config_path, "--to", tmp_path / "old", "--commit", 1)
    assert old.code == 0, old.err
    assert (tmp_path / "old" / "data" / "notes.txt").read_text() == "first version\n"
    new = raidd("restore", "--to", tmp_path / "new", "--config", setup.config_path)
    assert new.code == 0, new.err
    assert describe_tree(tmp_path / "new" / "data") == describe_tree(setup.data)


def test_ls_missing_root_or_path(raidd: Run, setup: Setup) -> None:
    """`raidd ls` of a root or path not in the commit exits 2 and names it."""
    assert raidd("backup", "--config", setup.config_path).code == 0
    no_root = raidd("ls", "nosuchroot", "--config", setup.config_path)
    assert no_root.code == 2
    assert "'nosuchroot' is not a watched root's name" in no_root.err
    assert "roots: data (" in no_root.err
    no_path = raidd("ls", "data/sub/nosuch", "--config", setup.config_path)
    assert no_path.code == 2
    assert "'data/sub/nosuch' not found in commit 1" in no_path.err
    assert no_path.out == ""


def test_restore_parents_get_recorded_mode(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    """The directories above a restored path, created in DIR, get their recorded metadata."""
    mtime_ns = 1_700_000_000_000_000_000
    os.chmod(setup.data / "sub", 0o750)
    os.chmod(setup.data, 0o755)
    for directory in (setup.data / "sub", setup.data):
        os.utime(directory, ns=(mtime_ns, mtime_ns))
    assert raidd("backup", "--config", setup.config_path).code == 0
    target = tmp_path / "new"
    restored = raidd("restore", "data/sub/deep.bin", "--to", target, "--config", setup.config_path)
    assert restored.code == 0, restored.err
    for directory, mode in ((target / "data", 0o755), (target / "data" / "sub", 0o750)):
        info = os.stat(directory)
        assert stat.S_IMODE(info.st_mode) == mode, directory
        assert info.st_mtime_ns == mtime_ns, directory
    assert (target / "data" / "sub" / "deep.bin").read_bytes() == (
        setup.data / "sub" / "deep.bin"
    ).read_bytes()
    assert not (target / "data" / "notes.txt").exists()

    # A parent that exists already is the caller's: it is left as it is.
    existing = tmp_path / "existing"
    (existing / "data").mkdir(parents=True, mode=0o700)
    again = raidd("restore", "data/sub", "--to", existing, "--config", setup.config_path)
    assert again.code == 0, again.err
    assert stat.S_IMODE(os.stat(existing / "data").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(existing / "data" / "sub").st_mode) == 0o750


def test_json_names_not_utf8(raidd: Run, setup: Setup) -> None:
    with open(os.fsencode(setup.data) + b"/bad\xffname", "wb") as handle:
        handle.write(b"x")
    assert raidd("backup", "--config", setup.config_path).code == 0
    entries = raidd("ls", "--json", "--config", setup.config_path).json()["entries"]
    encoded = base64.b64encode(b"data/bad\xffname").decode()
    assert {"base64": encoded} in [e["path"] for e in entries]


def test_read_only_commands_write_nothing(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    assert raidd("backup", "--config", setup.config_path).code == 0
    before = member_digests(setup)
    assert raidd("snapshots", "--config", setup.config_path).code == 0
    assert raidd("ls", "--config", setup.config_path).code == 0
    assert raidd("check", "--read-data", "--config", setup.config_path).code == 0
    assert raidd("restore", "--to", tmp_path / "out", "--config", setup.config_path).code == 0
    assert raidd("forget", "--dry-run", "--config", setup.config_path).code == 0
    assert raidd("gc", "--dry-run", "--config", setup.config_path).code == 0
    assert member_digests(setup) == before


def test_busy_array_names_holder(raidd: Run, setup: Setup) -> None:
    with Store.open(setup.config()):
        result = raidd("backup", "--config", setup.config_path)
        assert result.code == 4
        assert f"pid {os.getpid()}" in result.err
        assert "raidctl" in result.err
        # Reading commands work beside the holder.
        assert raidd("snapshots", "--config", setup.config_path).code == 0


def test_wrong_key_exits_5(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    crypto.write_new_keyfile(other)
    before = member_digests(setup)
    members = [arg for m in setup.members for arg in ("--member", m)]
    result = raidd("restore", *members, "--keyfile", other, "--to", tmp_path / "out")
    assert result.code == 5
    assert "keyslot" in result.err
    assert member_digests(setup) == before


def test_disaster_recovery_restore(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    assert raidd("backup", "--config", setup.config_path).code == 0
    members = [arg for m in setup.members[:3] for arg in ("--member", m)]
    result = raidd(
        "restore", *members, "--keyfile", setup.keyfile, "--to", tmp_path / "out", "data/sub"
    )
    assert result.code == 0, result.err
    assert not (setup.base / "state" / "unused").exists()
    restored = tmp_path / "out" / "data"
    assert sorted(os.listdir(restored)) == ["sub"]
    assert (restored / "sub" / "deep.bin").read_bytes() == (
        setup.data / "sub/deep.bin"
    ).read_bytes()


def test_restore_safety(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    assert raidd("backup", "--config", setup.config_path).code == 0
    target = tmp_path / "target"
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "data").mkdir(parents=True)
    os.symlink(outside, target / "data" / "sub")
    (target / "data" / "notes.txt").write_text("someone else's file\n")
    first = raidd("restore", "--config", setup.config_path, "--to", target)
    assert first.code == 1
    assert os.listdir(outside) == []
    assert (target / "data" / "notes.txt").read_text() == "someone else's file\n"
    assert "--overwrite" in first.err
    forced = raidd("restore", "--config", setup.config_path, "--to", target, "--overwrite")
    assert (target / "data" / "notes.txt").read_text() == "first version\n"
    assert os.listdir(outside) == []
    assert forced.code == 1  # the symlinked directory is still not followed
    clean = tmp_path / "clean"
    assert raidd("restore", "--config", setup.config_path, "--to", clean).code == 0
    twice = raidd("restore", "--json", "--config", setup.config_path, "--to", clean)
    assert twice.code == 0
    assert twice.json()["written"] == []
    dry = raidd("restore", "--config", setup.config_path, "--to", tmp_path / "dry", "--dry-run")
    assert dry.code == 0
    assert "would write: data/notes.txt" in dry.out
    assert not (tmp_path / "dry").exists()


def test_restore_rebuilds_corrupt_strip(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    """One corrupt strip under a chunk is rebuilt from parity on the way out (exit 0)."""
    assert raidd("backup", "--config", setup.config_path).code == 0
    with Store.open(setup.config(), read_only=True) as store:
        (version,) = [v for v in store.ls("data", 1) if v.path == b"sub/deep.bin"]
        entry = store.objects.get(version.chunks[0].chunk_id)
        assert entry is not None
        offset = store.array.io.strip_offset(entry.pieces[0].stripe)
        strip = store.array.geometry.strip_size
    with open(setup.members[1], "r+b") as member:
        member.seek(offset)
        member.write(os.urandom(strip))
    result = raidd("restore", "--config", setup.config_path, "--to", tmp_path / "out")
    assert result.code == 0, result.err
    restored = (tmp_path / "out" / "data" / "sub" / "deep.bin").read_bytes()
    assert restored == (setup.data / "sub" / "deep.bin").read_bytes()
    assert raidd("check", "--read-data", "--config", setup.config_path).code == 0


def test_restore_reports_lost_file(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    """A chunk damaged on two members of a RAID5 is lost; the other files restore (exit 3)."""
    assert raidd("backup", "--config", setup.config_path).code == 0
    with Store.open(setup.config(), read_only=True) as store:
        (version,) = [v for v in store.ls("data", 1) if v.path == b"sub/deep.bin"]
        entry = store.objects.get(version.chunks[0].chunk_id)
        assert entry is not None
        offset = store.array.io.strip_offset(entry.pieces[len(entry.pieces) // 2].stripe)
        strip = store.array.geometry.strip_size
    # Roles 0 and 1 were created as members 0 and 1; two bad strips exceed RAID5.
    for member_path in setup.members[:2]:
        with open(member_path, "r+b") as member:
            member.seek(offset)
            member.write(os.urandom(strip))
    result = raidd("restore", "--config", setup.config_path, "--to", tmp_path / "out")
    assert result.code == 3
    assert "deep.bin" in result.err
    assert (tmp_path / "out" / "data" / "notes.txt").read_text() == "first version\n"
    assert not (tmp_path / "out" / "data" / "sub" / "deep.bin").exists()


def test_check_forget_gc_scrub(raidd: Run, tmp_path: Path, lock_dir: Path) -> None:
    setup = make_setup(tmp_path / "array", retention="[watch.retention]\nkeep_last = 1\n")
    for index in range(3):
        (setup.data / "file").write_bytes(os.urandom(100_000 + index))
        assert raidd("backup", "--config", setup.config_path).code == 0
    plan = raidd("forget", "--dry-run", "--json", "--config", setup.config_path).json()
    assert plan["roots"]["data"]["forget"] == [1, 2]
    assert plan["commit"] is None
    done = raidd("forget", "--json", "--config", setup.config_path)
    assert done.json()["commit"] == 4
    assert [
        r["commit"] for r in raidd("snapshots", "--json", "--config", setup.config_path).json()
    ] == [3]
    gc = raidd("gc", "--json", "--config", setup.config_path)
    assert gc.code == 0, gc.err
    assert gc.json()["dead_chunks"] == 2
    assert gc.json()["freed_stripes"] > 0
    check = raidd("check", "--read-data", "--json", "--config", setup.config_path)
    assert check.code == 0, check.err
    assert check.json()["errors"] == []
    scrub = raidd("scrub", "--check-only", "--json", "--config", setup.config_path)
    assert scrub.code == 0
    assert scrub.json()["lost_stripes"] == []
    restored = raidd("restore", "--config", setup.config_path, "--to", tmp_path / "out")
    assert restored.code == 0
    assert (tmp_path / "out" / "data" / "file").read_bytes() == (setup.data / "file").read_bytes()


def test_missing_config_exits_2(raidd: Run, tmp_path: Path) -> None:
    result = raidd("snapshots", "--config", tmp_path / "absent.toml")
    assert result.code == 2
    assert "absent.toml" in result.err


def test_degraded_array_exits_0(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    assert raidd("backup", "--config", setup.config_path).code == 0
    os.unlink(setup.members[2])
    restored = raidd("restore", "--config", setup.config_path, "--to", tmp_path / "out")
    assert restored.code == 0, restored.err
    assert "degraded" in restored.err
    assert describe_tree(tmp_path / "out" / "data") == describe_tree(setup.data)
    checked = raidd("check", "--read-data", "--config", setup.config_path)
    assert checked.code == 0, checked.err
    assert "degraded" in checked.err


def test_backup_names_roots(raidd: Run, setup: Setup) -> None:
    by_name = raidd("backup", "data", "--json", "--config", setup.config_path)
    assert by_name.json()["roots"] == ["data"]
    unknown = raidd("backup", "elsewhere", "--config", setup.config_path)
    assert unknown.code == 2
    assert "'elsewhere' is not a watched root" in unknown.err


def test_read_only_without_state_directory(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    assert raidd("backup", "--config", setup.config_path).code == 0
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    text = setup.config_path.read_text().replace(str(setup.base / "state"), str(blocker))
    setup.config_path.write_text(text)
    listing = raidd("snapshots", "--json", "--config", setup.config_path)
    assert listing.code == 0, listing.err
    assert [row["commit"] for row in listing.json()] == [1]
    assert raidd("backup", "--config", setup.config_path).code == 2


def test_restore_path_not_in_commit(raidd: Run, setup: Setup, tmp_path: Path) -> None:
    assert raidd("backup", "--config", setup.config_path).code == 0
    target = tmp_path / "out"
    missing = raidd("restore", "--config", setup.config_path, "--to", str(target), "data/nosuch")
    assert missing.code == 2
    assert "'data/nosuch' not found in commit 1" in missing.err
    assert not target.exists()
    wrong = raidd("restore", "--config", setup.config_path, "--to", str(target), "--commit", "9")
    assert wrong.code == 2
    assert "commit 9 not found; the oldest commit is 1" in wrong.err
    assert not target.exists()
    early = raidd(
        "restore", "--config", setup.config_path, "--to", str(target), "--at", "2000-01-01T00:00Z"
    )
    assert early.code == 2
    assert "no commit at or before 2000-01-01T00:00:00Z; the oldest commit is 1 at" in early.err
    both = raidd(
        "restore",
        "--json",
        "--config",
        setup.config_path,
        "--to",
        str(target),
        "data/nosuch",
        "data/notes.txt",
    )
    assert both.code == 2
    assert both.json()["missing"] == ["data/nosuch"]
    assert (target / "data" / "notes.txt").read_text() == "first version\n"


def test_json_error_on_stdout(raidd: Run, tmp_path: Path) -> None:
    result = raidd("snapshots", "--json", "--config", str(tmp_path / "none.toml"))
    assert result.code == 2
    assert result.json()["error"]["exit_code"] == 2
    assert str(tmp_path / "none.toml") in result.json()["error"]["message"]
    assert result.err.startswith("raidd snapshots: ")


def test_backup_of_failed_roots_exit_codes(raidd: Run, tmp_path: Path, lock_dir: Path) -> None:
    """Exit 2 when no root could be backed up, 1 when another root was committed."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "kept.txt").write_text("kept\n")
    setup = make_setup(
        tmp_path / "array",
        retention=f'pre_backup = "exit 3"\n\n[[watch]]\npath = "{other}"\n',
    )
    alone = raidd("backup", "--config", setup.config_path, "data")
    assert alone.code == 2, alone.err
    assert "pre_backup failed: exit status 3" in alone.err
    both = raidd("backup", "--config", setup.config_path)
    assert both.code == 1, both.err
    assert "Commit 1 of other" in both.out
