"""Restoring into a target: fidelity, nothing outside the target, conflicts, idempotence."""

import os
import stat
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raidd.errors import UsageError
from raidd.store.restore_writer import RestoreEntry, RestoreWriter, split_catalog_path
from raidd.store.scan import Entry, EntryType, data_extents, scan_root
from tests.store.conftest import posix_acl

ODD = [b"new\nline", b"\xff\xfe", b"tab\tname"]


def build_source(root: Path) -> None:
    raw = os.fsencode(root)
    (root / "docs" / "empty").mkdir(parents=True)
    (root / "docs" / "report.txt").write_bytes(b"quarterly numbers\n" * 500)
    os.chmod(root / "docs" / "report.txt", 0o640)
    (root / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o4755)
    os.link(root / "docs" / "report.txt", root / "report-link.txt")
    os.symlink("docs/report.txt", root / "latest")
    os.symlink("/nonexistent/target", root / "dangling")
    for name in ODD:
        with open(raw + b"/" + name, "wb") as handle:
            handle.write(name * 10)
    with open(root / "sparse.img", "wb") as handle:
        handle.truncate(64 << 20)
        handle.seek(8 << 20)
        handle.write(b"\x5a" * (1 << 20))
    os.setxattr(root / "docs" / "report.txt", "user.origin", b"crm")
    os.setxattr(root / "docs" / "report.txt", "system.posix_acl_access", posix_acl(1000))
    os.chown(root / "docs" / "report.txt", 1000, 1001)
    os.chmod(root / "docs" / "report.txt", 0o640)
    os.utime(root / "docs" / "empty", ns=(5, 1_600_000_000_000_000_000))
    os.utime(root / "docs", ns=(5, 1_500_000_000_000_000_000))
    os.utime(root / "latest", ns=(5, 1_400_000_000_000_000_000), follow_symlinks=False)


def file_data(path: bytes, size: int) -> Iterable[tuple[int, bytes]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset, length in data_extents(fd, size):
            yield offset, os.pread(fd, length, offset)
    finally:
        os.close(fd)


def to_restore(entry: Entry, prefix: bytes, links: dict[tuple[int, int], bytes]) -> RestoreEntry:
    path = prefix + (b"/" + entry.path if entry.path else b"")
    link_to = None
    key = entry.hard_link_key
    if key is not None:
        link_to = links.get(key)
        links.setdefault(key, path)
    return RestoreEntry(
        path=path,
        type=entry.type,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        mtime_ns=entry.mtime_ns,
        size=entry.size,
        link_target=entry.link_target,
        xattrs=entry.xattrs,
        hard_link_to=link_to,
    )


def restore_tree(source: Path, target: Path, **options: object):
    raw = os.fsencode(source)
    links: dict[tuple[int, int], bytes] = {}
    with RestoreWriter(target, **options) as writer:  # type: ignore[arg-type]
        for entry in scan_root(source):
            item = to_restore(entry, b"crm", links)
            full = raw + b"/" + entry.path
            source_data = None
            if entry.type is EntryType.FILE:
                size = entry.size

                def source_data(
                    full: bytes = full, size: int = size
                ) -> Iterable[tuple[int, bytes]]:
                    return file_data(full, size)

            writer.restore(item, source_data)
        return writer.finish()


def snapshot(root: Path) -> dict[bytes, tuple[object, ...]]:
    raw = os.fsencode(root)
    result = {}
    for entry in scan_root(root):
        content = None
        if entry.type is EntryType.FILE:
            with open(raw + b"/" + entry.path, "rb") as handle:
                content = handle.read()
        result[entry.path] = (
            entry.type,
            entry.mode,
            entry.uid,
            entry.gid,
            entry.mtime_ns,
            entry.size,
            entry.link_target,
            entry.xattrs,
            content,
        )
    return result


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    root.mkdir()
    build_source(root)
    return root


def test_round_trip_is_exact(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    report = restore_tree(source, target)
    assert report.ok, (report.conflicts, report.errors)
    original = snapshot(source)
    restored = snapshot(target / "crm")
    assert set(restored) == set(original)
    for path in original:
        if path == b"":
            continue
        assert restored[path] == original[path], path


def test_hard_links_restored_as_links(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    restore_tree(source, target)
    first = (target / "crm" / "docs" / "report.txt").stat()
    second = (target / "crm" / "report-link.txt").stat()
    assert first.st_ino == second.st_ino
    assert first.st_nlink == 2


def test_sparse_holes_restored(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    restore_tree(source, target)
    info = (target / "crm" / "sparse.img").stat()
    assert info.st_size == 64 << 20
    assert info.st_blocks * 512 <= 2 << 20
    fd = os.open(target / "crm" / "sparse.img", os.O_RDONLY)
    try:
        assert data_extents(fd, info.st_size) == [(8 << 20, 1 << 20)]
    finally:
        os.close(fd)


def test_setuid_and_ownership(source: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("ownership is restored only as root")
    target = tmp_path / "target"
    restore_tree(source, target)
    info = (target / "crm" / "run.sh").stat()
    assert stat.S_IMODE(info.st_mode) == 0o4755
    report = (target / "crm" / "docs" / "report.txt").stat()
    assert (report.st_uid, report.st_gid) == (1000, 1001)


def test_restore_twice_is_noop(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    restore_tree(source, target)
    before = {path: os.lstat(path).st_ino for path in (target / "crm").rglob("*")}
    second = restore_tree(source, target)
    assert second.written == []
    assert second.conflicts == []
    assert second.errors == []
    assert len(second.unchanged) == len(snapshot(source))
    after = {path: os.lstat(path).st_ino for path in (target / "crm").rglob("*")}
    assert after == before
    assert not [p for p in (target / "crm").rglob("*") if p.name.startswith(".raidd-restore-")]


def test_different_file_left_alone(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "crm").mkdir(parents=True)
    (target / "crm" / "run.sh").write_bytes(b"local edit\n")
    report = restore_tree(source, target)
    assert (target / "crm" / "run.sh").read_bytes() == b"local edit\n"
    assert (b"crm/run.sh", "a file with another mode exists there") in report.conflicts
    assert not report.ok


def test_same_metadata_other_content_is_conflict(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    restore_tree(source, target)
    path = target / "crm" / "docs" / "report.txt"
    info = path.stat()
    with open(path, "r+b") as handle:
        handle.write(b"Q")
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    report = restore_tree(source, target)
    assert (b"crm/docs/report.txt", "a file with other content exists there") in report.conflicts


def test_overwrite_replaces(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "crm").mkdir(parents=True)
    (target / "crm" / "run.sh").write_bytes(b"local edit\n")
    report = restore_tree(source, target, overwrite=True)
    assert report.ok
    assert (target / "crm" / "run.sh").read_bytes() == (source / "run.sh").read_bytes()


def test_symlink_to_outside_not_followed(source: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "report.txt").write_bytes(b"victim")
    target = tmp_path / "target"
    (target / "crm").mkdir(parents=True)
    os.symlink(outside, target / "crm" / "docs")
    report = restore_tree(source, target, overwrite=True)
    assert (outside / "report.txt").read_bytes() == b"victim"
    assert sorted(os.listdir(outside)) == ["report.txt"]
    assert (
        b"crm/docs/report.txt",
        "'crm/docs' is a symlink or not a directory; it is not followed",
    ) in report.conflicts
    assert report.errors == []
    assert (target / "crm" / "docs").is_symlink()


def test_symlink_at_file_name_replaced_not_followed(source: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"victim")
    target = tmp_path / "target"
    (target / "crm").mkdir(parents=True)
    os.symlink(outside / "victim", target / "crm" / "run.sh")
    report = restore_tree(source, target)
    assert (b"crm/run.sh", "a different kind of entry exists there") in report.conflicts
    restore_tree(source, target, overwrite=True)
    assert (outside / "victim").read_bytes() == b"victim"
    assert not (target / "crm" / "run.sh").is_symlink()
    assert (target / "crm" / "run.sh").read_bytes() == (source / "run.sh").read_bytes()


def test_symlink_swapped_in_during_restore(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    entry = RestoreEntry(b"crm/d/a", EntryType.FILE, 0o644, 0, 0, 0, size=1)
    with RestoreWriter(target) as writer:
        assert writer.restore(entry, lambda: [(0, b"a")]) == "written"
        os.rename(target / "crm" / "d", tmp_path / "moved")
        os.symlink(outside, target / "crm" / "d")
        second = RestoreEntry(b"crm/d/b", EntryType.FILE, 0o644, 0, 0, 0, size=1)
        assert writer.restore(second, lambda: [(0, b"b")]) == "conflict"
        writer.finish()
    assert os.listdir(outside) == []


@pytest.mark.parametrize(
    "path",
    [b"../escape", b"/etc/passwd", b"crm/../../escape", b"crm//x", b"crm/./x", b"a\0b", b""],
)
def test_unsafe_catalog_paths_rejected(tmp_path: Path, path: bytes) -> None:
    target = tmp_path / "target"
    entry = RestoreEntry(path, EntryType.FILE, 0o644, 0, 0, 0, size=4)
    with RestoreWriter(target) as writer:
        assert writer.restore(entry, lambda: [(0, b"evil")]) == "error"
        report = writer.finish()
    assert report.errors[0][0] == path
    assert "unsafe path" in report.errors[0][1]
    assert os.listdir(target) == []
    assert not (tmp_path / "escape").exists()


def test_split_catalog_path() -> None:
    assert split_catalog_path(b"crm/a\nb/\xff") == [b"crm", b"a\nb", b"\xff"]
    with pytest.raises(UsageError, match=r"component '\.\.' is not allowed"):
        split_catalog_path(b"crm/..")


def test_dry_run_writes_nothing(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    report = restore_tree(source, target, dry_run=True)
    assert not target.exists()
    assert len(report.written) == len(snapshot(source))
    assert b"crm/docs/report.txt" in report.written


def test_empty_directory_mtime_kept(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    restore_tree(source, target)
    assert (target / "crm" / "docs" / "empty").stat().st_mtime_ns == 1_600_000_000_000_000_000
    assert (target / "crm" / "docs").stat().st_mtime_ns == 1_500_000_000_000_000_000


def test_one_gib_sparse_file_restored_with_holes(tmp_path: Path) -> None:
    """1 GiB with 1 MiB of data restores with its holes, and a second restore is a no-op."""
    data = os.urandom(1 << 20)
    entry = RestoreEntry(
        b"crm/big.img",
        EntryType.FILE,
        0o600,
        0,
        0,
        1_700_000_000_000_000_000,
        size=1 << 30,
        extents=((600 << 20, 1 << 20),),
    )
    target = tmp_path / "target"
    for expected in ("written", "unchanged"):
        with RestoreWriter(target) as writer:
            assert writer.restore(entry, lambda: [(600 << 20, data)]) == expected
            writer.finish()
    path = target / "crm" / "big.img"
    info = path.stat()
    assert info.st_size == 1 << 30
    assert info.st_blocks * 512 <= 2 << 20
    fd = os.open(path, os.O_RDONLY)
    try:
        assert data_extents(fd, 1 << 30) == [(600 << 20, 1 << 20)]
        assert os.pread(fd, 1 << 20, 600 << 20) == data
    finally:
        os.close(fd)


COMPONENTS = [b"..", b".", b"", b"a", b"\xff", b"b\nc", b"link", b"a\0b"]


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=4).map(b"/".join),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_nothing_written_outside_target(tmp_path: Path, names: list[bytes], lead: bool) -> None:
    """Whatever the catalog paths, every write lands inside the target."""
    base = tmp_path / f"case-{abs(hash((tuple(names), lead)))}"
    outside = base / "outside"
    outside.mkdir(parents=True)
    target = base / "target"
    (target / "link").parent.mkdir(parents=True)
    os.symlink(outside, target / "link")
    before = sorted(os.listdir(base))
    with RestoreWriter(target, overwrite=True) as writer:
        for name in names:
            path = b"/" + name if lead else name
            entry = RestoreEntry(path, EntryType.FILE, 0o644, 0, 0, 0, size=1)
            writer.restore(entry, lambda: [(0, b"x")])
            link = RestoreEntry(path + b"-l", EntryType.SYMLINK, 0o777, 0, 0, 0, link_target=b"/")
            writer.restore(link)
        writer.finish()
    assert os.listdir(outside) == []
    assert sorted(os.listdir(base)) == before
