"""Change detection, hard-link groups and the mapping of versions to restore entries."""

import dataclasses
import os
from pathlib import Path

import pytest

from raidd.errors import UsageError
from raidd.store.catalog_format import Version
from raidd.store.scan import Entry, EntryType, scan_root
from raidd.store.snapshot import (
    HardLinkGroups,
    is_unchanged,
    is_under,
    locate_path,
    restore_entries,
    version_from,
)


def scanned(root: Path) -> dict[bytes, Entry]:
    return {entry.path: entry for entry in scan_root(root)}


def test_unchanged_file_detected(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    entry = scanned(tmp_path)[b"a"]
    version = version_from("crm", entry, None)
    assert is_unchanged(entry, version)
    assert not is_unchanged(entry, None)


@pytest.mark.parametrize(
    "change",
    [
        {"mode": 0o600},
        {"uid": 5},
        {"mtime_ns": 1},
        {"ctime_ns": 1},
        {"inode": 1},
        {"size": 99},
        {"xattrs": ((b"user.x", b"1"),)},
        {"type": EntryType.DIRECTORY},
        {"changed_during_read": True},
    ],
)
def test_any_change_means_read(tmp_path: Path, change: dict[str, object]) -> None:
    (tmp_path / "a").write_bytes(b"a")
    entry = scanned(tmp_path)[b"a"]
    version = dataclasses.replace(version_from("crm", entry, None), **change)
    assert not is_unchanged(entry, version)


def test_symlink_target_change_detected(tmp_path: Path) -> None:
    os.symlink("one", tmp_path / "link")
    entry = scanned(tmp_path)[b"link"]
    version = version_from("crm", entry, None)
    assert is_unchanged(entry, version)
    assert not is_unchanged(entry, dataclasses.replace(version, link_target=b"two"))


def test_write_that_restores_mtime_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"before")
    entry = scanned(tmp_path)[b"a"]
    version = version_from("crm", entry, None)
    path.write_bytes(b"after!")
    os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
    assert not is_unchanged(scanned(tmp_path)[b"a"], version)


def test_hard_link_groups_per_commit(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    os.link(tmp_path / "a", tmp_path / "b")
    (tmp_path / "c").write_bytes(b"c")
    entries = scanned(tmp_path)
    groups = HardLinkGroups(7)
    group_a = groups.assign(entries[b"a"])
    assert group_a == (7 << 24) | 1
    assert groups.assign(entries[b"b"]) == group_a
    assert groups.assign(entries[b"c"]) == 0
    assert HardLinkGroups(8).assign(entries[b"a"]) != group_a


def test_restore_entries_link_later_paths() -> None:
    def file(path: bytes, group: int) -> Version:
        return Version("crm", path, EntryType.FILE, 0o644, 0, 0, 0, hard_link_group=group)

    root = Version("crm", b"", EntryType.DIRECTORY, 0o755, 0, 0, 0)
    versions = [root, file(b"a", 5), file(b"b", 5), file(b"c", 0), file(b"d", 6)]
    entries = [entry for entry, _ in restore_entries(versions, b"crm")]
    assert [entry.path for entry in entries] == [b"crm", b"crm/a", b"crm/b", b"crm/c", b"crm/d"]
    assert [entry.hard_link_to for entry in entries] == [None, None, b"crm/a", None, None]
    kept = [e.path for e, _ in restore_entries(versions, b"x", keep=lambda v: v.path != b"a")]
    assert kept == [b"x", b"x/b", b"x/c", b"x/d"]


ROOTS = {"crm": b"/srv/crm", "exports": b"/srv/exports"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (b"crm", ("crm", b"")),
        (b"exports", ("exports", b"")),
        (b"/srv/crm", ("crm", b"")),
        (b"/srv/crm/", ("crm", b"")),
        (b"/srv/crm/db/northwind.db", ("crm", b"db/northwind.db")),
        (b"/srv/crm//db/../db/x", ("crm", b"db/x")),
        (b"/srv/exports/new\nline\xff", ("exports", b"new\nline\xff")),
    ],
)
def test_locate_path(path: bytes, expected: tuple[str, bytes]) -> None:
    assert locate_path(path, ROOTS) == expected


@pytest.mark.parametrize("path", [b"/srv/crm2/x", b"/srv", b"crm/db", b"other", b"/etc/passwd"])
def test_locate_path_rejects(path: bytes) -> None:
    with pytest.raises(UsageError, match=r"is not a watched root's name or a path under one"):
        locate_path(path, ROOTS)


def test_is_under_whole_components() -> None:
    assert is_under(b"docs/a", b"docs")
    assert is_under(b"docs", b"docs")
    assert not is_under(b"docs2/a", b"docs")
    assert not is_under(b"doc", b"docs")
    assert is_under(b"anything", b"")
