"""`raidctl restore` through a running daemon: every entry kind, safety rules, non-root callers."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from raidd.raidctl import build_parser as build_raidctl_parser
from tests.control.conftest import run_as
from tests.serve.conftest import Daemon
from tests.store.conftest import posix_acl

MiB = 1024 * 1024
NOBODY = 65534
MTIME_NS = 1_700_000_000_123_456_789


def build_tree(data: Path) -> None:
    """Write nested and empty directories, links, a sparse file, xattrs, an ACL, odd names."""
    os.makedirs(data / "nested" / "deeper" / "deepest")
    (data / "nested" / "deeper" / "deepest" / "leaf.txt").write_text("leaf\n")
    (data / "nested" / "ledger.bin").write_bytes(os.urandom(300_000))
    (data / "empty").mkdir(mode=0o750)
    os.symlink("/etc/passwd", data / "outside")
    os.symlink("loop-b", data / "loop-a")
    os.symlink("loop-a", data / "loop-b")
    (data / "hard-1").write_bytes(b"linked twice\n")
    os.link(data / "hard-1", data / "hard-2")
    with open(data / "sparse.img", "wb") as sparse:
        sparse.truncate(64 * MiB)
        sparse.seek(32 * MiB)
        sparse.write(os.urandom(MiB))
    (data / "docs").mkdir()
    report = data / "docs" / "report.txt"
    report.write_text("quarterly\n")
    report.chmod(0o640)
    os.chown(report, 1000, 1001)
    os.setxattr(report, "user.comment", b"checked \x00\xff")
    os.setxattr(report, "system.posix_acl_access", posix_acl(named_user=1000))
    os.setxattr(data / "docs", "system.posix_acl_default", posix_acl(named_user=1000))
    os.makedirs(os.fsencode(data) + b"/new\nline")
    Path(os.fsdecode(os.fsencode(data) + b"/new\nline/\xffname.csv")).write_bytes(b"id\n1\n")
    for path in [*walk(data)][::-1]:
        os.utime(path, ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)


def walk(root: Path) -> list[Path]:
    """List every path under `root`, parents before children, without following links."""
    paths = []
    for directory, subdirectories, files in os.walk(os.fsencode(root)):
        paths += [Path(os.fsdecode(os.path.join(directory, name))) for name in subdirectories]
        paths += [Path(os.fsdecode(os.path.join(directory, name))) for name in files]
    return paths


def describe(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Map each path under `root` to its type, mode, mtime, content, xattrs, link and owner."""
    inodes: dict[int, bytes] = {}
    described = {}
    for path in walk(root):
        info = path.lstat()
        relative = os.fsencode(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            content: object = os.readlink(os.fsencode(path))
            xattrs: object = None
        else:
            content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
            xattrs = sorted((name, os.getxattr(path, name)) for name in os.listxattr(path))
        # Hard links are named by the first path of their inode.
        first_link = inodes.setdefault(info.st_ino, relative) if info.st_nlink > 1 else None
        described[relative] = (
            stat.S_IFMT(info.st_mode),
            stat.S_IMODE(info.st_mode),
            info.st_mtime_ns,
            content,
            xattrs,
            first_link if not stat.S_ISDIR(info.st_mode) else None,
            (info.st_uid, info.st_gid),
        )
    return described


def raidctl(daemon: Daemon, *args: str) -> tuple[int, str, str]:
    """Run `raidctl restore ARGS` in this process; return its exit code, stdout and stderr."""
    result = daemon.raidctl("restore", *args)
    return result.returncode, result.stdout, result.stderr


def test_raidctl_restores_every_entry_kind(make_daemon, tmp_path: Path) -> None:
    """Directories, links, holes, xattrs and ACLs arrive as they were; a second run is a no-op."""
    build_tree(tmp_path / "data")
    daemon = make_daemon()
    daemon.start()
    target = tmp_path / "restored"
    code, out, err = raidctl(daemon, "data", "--to", str(target), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["lost"] == []
    assert result["conflicts"] == []
    assert result["errors"] == []
    assert (result["files"], result["hard_links"], result["symlinks"]) == (6, 1, 3)
    assert result["directories"] == 7
    assert result["bytes"] == 300_000 + MiB + 5 + 13 + 10 + 5
    assert describe(target / "data") == describe(tmp_path / "data")
    sparse = (target / "data" / "sparse.img").stat()
    assert sparse.st_size == 64 * MiB
    assert sparse.st_blocks * 512 <= 2 * MiB
    assert (target / "data" / "hard-1").stat().st_ino == (target / "data" / "hard-2").stat().st_ino

    before = {path: path.lstat() for path in walk(target)}
    code, out, err = raidctl(daemon, "data", "--to", str(target), "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["written"] == []
    assert len(again["unchanged"]) == len(result["written"])
    after = {path: path.lstat() for path in walk(target)}
    assert after.keys() == before.keys()
    for path, info in after.items():
        assert (info.st_ino, info.st_mtime_ns, info.st_ctime_ns) == (
            before[path].st_ino,
            before[path].st_mtime_ns,
            before[path].st_ctime_ns,
        ), path
    assert daemon.stop() == 0


def test_raidctl_restore_safety(make_daemon, tmp_path: Path) -> None:
    """A symlink in the target is not followed; a different file needs --overwrite."""
    data = tmp_path / "data"
    data.mkdir()
    ledger = os.urandom(300_000)
    (data / "ledger.bin").write_bytes(ledger)
    os.utime(data / "ledger.bin", ns=(MTIME_NS, MTIME_NS))
    (data / "sub").mkdir()
    (data / "sub" / "note.txt").write_text("note\n")
    daemon = make_daemon()
    daemon.start()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    linked = tmp_path / "linked"
    (linked / "data").mkdir(parents=True)
    os.symlink(elsewhere, linked / "data" / "sub")
    code, out, err = raidctl(daemon, "data", "--to", str(linked), "--json")
    assert code == 1
    assert "'data/sub' left alone" in err
    conflicts = json.loads(out)["conflicts"]
    assert [item["path"] for item in conflicts] == ["data/sub", "data/sub/note.txt"]
    assert list(elsewhere.iterdir()) == []
    assert (linked / "data" / "sub").is_symlink()
    assert (linked / "data" / "ledger.bin").read_bytes() == ledger

    # Same size, mode and mtime, other bytes past the first chunks: only the content differs.
    target = tmp_path / "target"
    (target / "data").mkdir(parents=True)
    changed = bytearray(ledger)
    changed[250_000] ^= 0xFF
    (target / "data" / "ledger.bin").write_bytes(changed)
    (target / "data" / "ledger.bin").chmod(stat.S_IMODE((data / "ledger.bin").stat().st_mode))
    os.utime(target / "data" / "ledger.bin", ns=(MTIME_NS, MTIME_NS))
    code, out, err = raidctl(daemon, "data", "--to", str(target), "--dry-run")
    assert code == 1
    assert "would write: data/sub/note.txt" in out
    assert not (target / "data" / "sub").exists()
    code, _, err = raidctl(daemon, "data", "--to", str(target))
    assert code == 1
    assert "'data/ledger.bin' left alone: a file with other content" in err
    assert (target / "data" / "ledger.bin").read_bytes() == bytes(changed)
    code, out, err = raidctl(daemon, "data", "--to", str(target), "--overwrite")
    assert code == 0, err
    assert (target / "data" / "ledger.bin").read_bytes() == ledger
    assert "0 conflicts" in out
    assert daemon.stop() == 0


def test_non_root_restore(make_daemon, tmp_path: Path) -> None:
    """A group member restores with its own permissions, and cannot write where it may not."""
    shared = Path(tempfile.mkdtemp(prefix="raidd-restore-"))
    shared.chmod(0o755)
    try:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "customers.csv").write_text("id,name\n1,Alfreds\n")
        setuid = tmp_path / "data" / "tool"
        setuid.write_text("#!/bin/sh\n")
        setuid.chmod(0o4755)
        socket_path = shared / "ctl.sock"
        daemon = make_daemon(control=f'socket = "{socket_path}"\ngroup = "nogroup"')
        daemon.socket = socket_path
        daemon.start()
        mine = shared / "mine"
        mine.mkdir()
        os.chown(mine, NOBODY, NOBODY)
        rootdir = shared / "root-owned"
        (rootdir / "data").mkdir(parents=True)
        rootdir.chmod(0o777)  # writable, but its data/ is root's 0755
        build_raidctl_parser()  # imports every module now: the child may not read them

        def child() -> list[object]:
            return [
                raidctl(daemon, "data", "--to", "/var")[::2],
                raidctl(daemon, "data", "--to", str(rootdir))[::2],
                raidctl(daemon, "data", "--to", str(mine))[::2],
                raidctl(daemon, "data", "--to", "/var/raidd-no-such/restore")[::2],
            ]

        denied, blocked, written, uncreatable = run_as(NOBODY, NOBODY, [], child)
        assert uncreatable[0] == 2
        assert "cannot create it, because you may not write to /var" in uncreatable[1]
        assert not Path("/var/raidd-no-such").exists()
        assert denied[0] == 2
        assert "you may not write there" in denied[1]
        assert blocked[0] == 1
        assert "Permission denied" in blocked[1]
        assert list((rootdir / "data").iterdir()) == []
        assert written[0] == 0, written[1]
        restored = mine / "data" / "customers.csv"
        assert restored.read_text() == "id,name\n1,Alfreds\n"
        assert restored.stat().st_uid == NOBODY
        assert stat.S_IMODE((mine / "data" / "tool").stat().st_mode) == 0o755
        assert daemon.stop() == 0
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_lost_file_reported_and_others_restored(make_daemon, tmp_path: Path) -> None:
    """On RAID0 a corrupted member loses the files on it: exit 3, the rest still restores."""
    data = tmp_path / "data"
    (data / "empty").mkdir(parents=True)
    (data / "big.bin").write_bytes(os.urandom(400_000))
    os.symlink("big.bin", data / "latest")
    daemon = make_daemon(level=0, members=2)
    daemon.start()
    # Every strip of member 1 after its superblocks: the data area starts at 1 MiB.
    with open(daemon.members[1], "r+b") as member:
        member.seek(MiB)
        member.write(os.urandom(8 * MiB))
    target = tmp_path / "restored"
    code, out, err = raidctl(daemon, "data", "--to", str(target), "--json")
    assert code == 3, err
    result = json.loads(out)
    assert [item["path"] for item in result["lost"]] == ["data/big.bin"]
    assert "data/big.bin' is lost" in err
    assert sorted(os.listdir(target / "data")) == ["empty", "latest"]
    assert os.readlink(target / "data" / "latest") == "big.bin"
    assert daemon.stop() == 0
