"""Walking a root: bytes names, metadata, xattrs and ACLs, excludes, problems."""

import json
import os
import socket
from pathlib import Path

import pytest

from raidd.store.scan import (
    Entry,
    EntryType,
    Excluder,
    ScanProblem,
    data_extents,
    read_xattrs,
    scan_root,
)
from tests.store.conftest import posix_acl, run_as_nobody

ODD_NAMES = [b"new\nline", b"\xff\xfe latin", b"caf\xc3\xa9", b" leading space", b"-dash"]


def scan(
    root: Path, patterns: tuple[str, ...] = ()
) -> tuple[dict[bytes, Entry], list[ScanProblem]]:
    problems: list[ScanProblem] = []
    entries = {entry.path: entry for entry in scan_root(root, Excluder(patterns), problems)}
    return entries, problems


def test_tree_entries_and_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "inner.txt").write_bytes(b"inner")
    (tmp_path / "a.txt").write_bytes(b"hello")
    (tmp_path / "empty").mkdir()
    paths = [entry.path for entry in scan_root(tmp_path)]
    assert paths == [b"", b"a.txt", b"b", b"b/inner.txt", b"empty"]


def test_file_metadata(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 1000)
    os.chown(path, 1234, 5678)
    os.chmod(path, 0o4751)
    os.utime(path, ns=(1_000_000_007, 1_700_000_000_123_456_789))
    entries, problems = scan(tmp_path)
    entry = entries[b"data.bin"]
    assert problems == []
    assert entry.type is EntryType.FILE
    assert entry.mode == 0o4751
    assert entry.uid == 1234
    assert entry.gid == 5678
    assert entry.mtime_ns == 1_700_000_000_123_456_789
    assert entry.size == 1000
    assert entry.inode == path.stat().st_ino
    assert entry.name == b"data.bin"


def test_odd_names_round_trip(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path)
    for name in ODD_NAMES:
        with open(root + b"/" + name, "wb") as handle:
            handle.write(name)
    entries, problems = scan(tmp_path)
    assert problems == []
    assert set(entries) == {b"", *ODD_NAMES}
    for name in ODD_NAMES:
        with open(root + b"/" + entries[name].path, "rb") as handle:
            assert handle.read() == name


def test_symlinks_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "to-outside")
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    os.symlink("missing-target", root / "dangling")
    entries, problems = scan(root)
    assert problems == []
    assert set(entries) == {b"", b"to-outside", b"loop-a", b"loop-b", b"dangling"}
    assert entries[b"to-outside"].type is EntryType.SYMLINK
    assert entries[b"to-outside"].link_target == os.fsencode(outside)
    assert entries[b"loop-a"].link_target == b"loop-b"
    assert entries[b"dangling"].link_target == b"missing-target"


def test_root_symlink_rejected(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(OSError):
        list(scan_root(tmp_path / "link"))


def test_special_files_skipped_with_note(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock"))
    try:
        entries, problems = scan(tmp_path)
    finally:
        server.close()
    assert set(entries) == {b""}
    kinds = {problem.path: (problem.kind, problem.message) for problem in problems}
    assert kinds[b"pipe"] == ("special", "FIFO not backed up")
    assert kinds[b"sock"] == ("special", "socket not backed up")


def test_hard_links_share_key(tmp_path: Path) -> None:
    (tmp_path / "one").write_bytes(b"shared")
    os.link(tmp_path / "one", tmp_path / "two")
    (tmp_path / "single").write_bytes(b"alone")
    entries, _ = scan(tmp_path)
    assert entries[b"one"].hard_link_key is not None
    assert entries[b"one"].hard_link_key == entries[b"two"].hard_link_key
    assert entries[b"single"].hard_link_key is None
    assert entries[b""].hard_link_key is None


def test_xattrs_and_acls(tmp_path: Path) -> None:
    path = tmp_path / "doc"
    path.write_bytes(b"doc")
    os.setxattr(path, "user.origin", b"crm\x00export")
    os.setxattr(path, "user.a", b"")
    acl = posix_acl(named_user=1000)
    os.setxattr(path, "system.posix_acl_access", acl)
    directory = tmp_path / "dir"
    directory.mkdir()
    os.setxattr(directory, "system.posix_acl_default", acl)
    entries, problems = scan(tmp_path)
    assert problems == []
    xattrs = dict(entries[b"doc"].xattrs)
    assert xattrs[b"user.origin"] == b"crm\x00export"
    assert xattrs[b"user.a"] == b""
    assert xattrs[b"system.posix_acl_access"] == acl
    assert [name for name, _ in entries[b"doc"].xattrs] == sorted(xattrs)
    assert dict(entries[b"dir"].xattrs)[b"system.posix_acl_default"] == acl


def test_symlink_xattrs_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"t")
    os.setxattr(target, "user.only-on-target", b"1")
    os.symlink(target, tmp_path / "link")
    assert b"user.only-on-target" not in dict(read_xattrs(os.fsencode(tmp_path / "link")))


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (
            ("*.tmp",),
            {b"", b"keep.txt", b"cache", b"cache/data", b"logs", b"logs/app.log", b"logs/old"},
        ),
        (
            ("cache/**",),
            {
                b"",
                b"keep.txt",
                b"x.tmp",
                b"cache",
                b"logs",
                b"logs/app.log",
                b"logs/old",
                b"logs/old/y.tmp",
            },
        ),
        (
            ("cache",),
            {b"", b"keep.txt", b"x.tmp", b"logs", b"logs/app.log", b"logs/old", b"logs/old/y.tmp"},
        ),
        (
            ("logs/*.log", "**/y.tmp"),
            {b"", b"keep.txt", b"x.tmp", b"cache", b"cache/data", b"logs", b"logs/old"},
        ),
        (("logs/",), {b"", b"keep.txt", b"x.tmp", b"cache", b"cache/data"}),
        (
            ("keep.txt/",),
            {
                b"",
                b"keep.txt",
                b"x.tmp",
                b"cache",
                b"cache/data",
                b"logs",
                b"logs/app.log",
                b"logs/old",
                b"logs/old/y.tmp",
            },
        ),
        (
            ("[kx]*",),
            {
                b"",
                b"cache",
                b"cache/data",
                b"logs",
                b"logs/app.log",
                b"logs/old",
                b"logs/old/y.tmp",
            },
        ),
    ],
)
def test_excludes(tmp_path: Path, patterns: tuple[str, ...], expected: set[bytes]) -> None:
    (tmp_path / "keep.txt").write_bytes(b"k")
    (tmp_path / "x.tmp").write_bytes(b"x")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "data").write_bytes(b"c")
    (tmp_path / "logs" / "old").mkdir(parents=True)
    (tmp_path / "logs" / "app.log").write_bytes(b"l")
    (tmp_path / "logs" / "old" / "y.tmp").write_bytes(b"y")
    entries, _ = scan(tmp_path, patterns)
    assert set(entries) == expected


def test_exclude_matches_odd_bytes() -> None:
    excluder = Excluder([os.fsdecode(b"\xff*")])
    assert excluder.excludes(b"dir/\xffname", is_directory=False)
    assert not excluder.excludes(b"dir/name\xff", is_directory=False)
    assert Excluder(["a*"]).excludes(b"a\nb", is_directory=False)


def test_sparse_extents(tmp_path: Path) -> None:
    path = tmp_path / "sparse"
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)
        handle.seek(1 << 20)
        handle.write(b"\x01" * (1 << 20))
        handle.seek((1 << 30) - 4096)
        handle.write(b"\x02" * 4096)
    entries, _ = scan(tmp_path)
    assert entries[b"sparse"].may_be_sparse
    fd = os.open(path, os.O_RDONLY)
    try:
        assert data_extents(fd, 1 << 30) == [(1 << 20, 1 << 20), ((1 << 30) - 4096, 4096)]
        assert data_extents(fd, 3 << 20) == [(1 << 20, 1 << 20)]
    finally:
        os.close(fd)


def test_dense_file_one_extent(tmp_path: Path) -> None:
    path = tmp_path / "dense"
    path.write_bytes(b"d" * 100_000)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert data_extents(fd, 100_000) == [(0, 100_000)]
        assert data_extents(fd, 0) == []
    finally:
        os.close(fd)


def test_unreadable_entries_reported(shared_tmp: Path) -> None:
    """As an unprivileged user, a closed directory is reported and the walk goes on."""
    root = shared_tmp / "root"
    (root / "closed").mkdir(parents=True)
    (root / "closed" / "hidden").write_bytes(b"h")
    (root / "open").mkdir()
    (root / "open" / "file").write_bytes(b"o")
    os.chmod(root / "closed", 0o000)
    os.chmod(root / "open" / "file", 0o000)
    code = (
        "problems = []\n"
        f"paths = [e.path.decode() for e in scan_root({str(root)!r}, None, problems)]\n"
        "print(json.dumps({'paths': paths, 'problems': [[p.path.decode(), p.kind, p.message] "
        "for p in problems]}))\n"
    )
    result = run_as_nobody("from raidd.store.scan import scan_root", code)
    assert isinstance(result, dict)
    assert result["paths"] == ["", "open", "open/file"]
    assert result["problems"] == [["closed", "unreadable", "Permission denied"]]
    json.dumps(result)
