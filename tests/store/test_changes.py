"""Backups of changed paths only, each checked against a full rescan of the same tree.

Two stores watch one data directory: after each change the first commits
only the changed paths the watcher would report, the second rescans the
whole root. Both must commit at the same steps, and each commit must leave
both catalogs with the same versions (the same paths, metadata, commit
that wrote them and hard-link partition). Chunk ids differ between the two,
because each array has its own keys.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from raidd.store.catalog import CatalogIndex
from raidd.store.catalog_format import CommitDelta
from raidd.store.changes import scan_changes
from raidd.store.pipeline import run_backup
from raidd.store.restore import restore, select
from raidd.store.scan import Excluder, SubsetScanner, scan_root
from raidd.store.snapshot import HardLinkGroups, version_from
from raidd.store.store import Store
from tests.store.storekit import make_setup

ROOT = "data"


class Twins:
    """A store that commits changed paths and a store that rescans, over one directory."""

    def __init__(self, subset: Store, full: Store, data: Path) -> None:
        self.subset = subset
        self.full = full
        self.data = data

    def commit(self, *changed: str) -> int | None:
        """Commit `changed` in the subset store and a full rescan in the other; compare."""
        paths = {os.fsencode(path) for path in changed}
        partial = run_backup(self.subset, changed_paths={ROOT: paths})
        rescan = run_backup(self.full)
        assert partial.problems == rescan.problems
        assert partial.sequence == rescan.sequence
        assert catalog_state(self.subset) == catalog_state(self.full)
        return partial.sequence


def catalog_state(store: Store) -> dict[bytes, tuple[object, ...]]:
    """Return each current path's version, the commit that wrote it and its link partners."""
    current = store.catalog.current(ROOT)
    groups: dict[int, set[bytes]] = {}
    for path, version in current.items():
        if version.hard_link_group:
            groups.setdefault(version.hard_link_group, set()).add(path)
    state = {}
    for path, version in current.items():
        ((first, _last, _),) = [row for row in store.catalog.history(ROOT, path) if row[1] is None]
        partners = frozenset(groups.get(version.hard_link_group, ()))
        state[path] = (
            first,
            version.type,
            version.mode,
            version.mtime_ns,
            version.ctime_ns,
            version.inode,
            version.size,
            version.link_target,
            version.xattrs,
            version.extents,
            version.sqlite_copy,
            partners,
        )
    return state


@pytest.fixture
def twins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Twins]:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    (data / "docs").mkdir()
    (data / "docs" / "b.txt").write_text("bravo\n")
    (data / "docs" / "c.txt").write_text("charlie\n")
    (data / "many").mkdir()
    for index in range(60):
        (data / "many" / f"f{index:02}.txt").write_text(f"file {index}\n")
    exclude = 'exclude = ["*.tmp", "cache/"]\n'
    subset = make_setup(tmp_path / "subset", data=data, retention=exclude, size=16 << 20)
    full = make_setup(tmp_path / "full", data=data, retention=exclude, size=16 << 20)
    with Store.open(subset.config()) as first, Store.open(full.config()) as second:
        assert run_backup(first).sequence == 1
        assert run_backup(second).sequence == 1
        yield Twins(first, second, data)


def test_edit_create_delete_rename(twins: Twins) -> None:
    data = twins.data
    (data / "a.txt").write_text("alpha, edited\n")
    assert twins.commit("a.txt", "") == 2
    (data / "docs" / "new.txt").write_text("new\n")
    (data / "docs" / "c.txt").unlink()
    assert twins.commit("docs/new.txt", "docs/c.txt", "docs") == 3
    (data / "a.txt").rename(data / "z.txt")
    assert twins.commit("a.txt", "z.txt", "") == 4
    assert b"a.txt" not in twins.subset.catalog.current(ROOT)


def test_unchanged_paths_commit_nothing(twins: Twins) -> None:
    assert twins.commit("docs/b.txt", "docs", "", "no/such/file") is None


def test_directory_renamed_with_its_files(twins: Twins) -> None:
    """Only the old and new names are reported; the 60 files move with the directory."""
    data = twins.data
    (data / "many").rename(data / "renamed")
    assert twins.commit("many", "renamed") == 2
    current = twins.subset.catalog.current(ROOT)
    assert sum(path.startswith(b"renamed/") for path in current) == 60
    assert not any(path.startswith(b"many") for path in current)


def test_new_nested_directories_from_deepest_path(twins: Twins) -> None:
    nested = twins.data / "x" / "y" / "z"
    nested.mkdir(parents=True)
    (nested / "deep.txt").write_text("deep\n")
    (twins.data / "x" / "side.txt").write_text("side\n")
    assert twins.commit("x/y/z/deep.txt") == 2
    shutil.rmtree(twins.data / "x")
    assert twins.commit("x") == 3


def test_type_changes(twins: Twins) -> None:
    data = twins.data
    (data / "docs" / "b.txt").unlink()
    (data / "docs" / "b.txt").mkdir()
    (data / "docs" / "b.txt" / "inner.txt").write_text("inner\n")
    assert twins.commit("docs/b.txt") == 2
    (data / "many").rename(data / "many2")
    (data / "many").symlink_to("many2")
    # The root's listing brings in many2, which no event named.
    assert twins.commit("many") == 3
    assert twins.commit("many2") is None
    shutil.rmtree(data / "docs")
    (data / "docs").write_text("a file where a directory was\n")
    assert twins.commit("docs") == 4


def test_directory_listing_finds_unreported_names(twins: Twins) -> None:
    """A directory event alone finds the names created and removed in it."""
    data = twins.data
    (data / "docs" / "unreported.txt").write_text("no event of its own\n")
    (data / "docs" / "c.txt").unlink()
    assert twins.commit("docs") == 2
    assert b"docs/unreported.txt" in twins.subset.catalog.current(ROOT)


def test_excluded_paths(twins: Twins) -> None:
    data = twins.data
    (data / "cache").mkdir()
    (data / "cache" / "blob").write_text("cached\n")
    (data / "scratch.tmp").write_text("temporary\n")
    assert twins.commit("cache", "cache/blob", "scratch.tmp", "") == 2
    current = twins.subset.catalog.current(ROOT)
    assert b"cache" not in current
    assert b"scratch.tmp" not in current
    (data / "docs" / "b.txt").rename(data / "docs" / "b.tmp")
    assert twins.commit("docs/b.txt", "docs/b.tmp", "docs") == 3
    assert b"docs/b.txt" not in twins.subset.catalog.current(ROOT)


def test_hard_links_version_together(twins: Twins) -> None:
    data = twins.data
    os.link(data / "a.txt", data / "docs" / "link.txt")
    assert twins.commit("docs/link.txt", "docs") == 2
    versions = twins.subset.catalog.current(ROOT)
    group = versions[b"a.txt"].hard_link_group
    assert group != 0
    assert versions[b"docs/link.txt"].hard_link_group == group
    with open(data / "a.txt", "a") as handle:
        handle.write("written through one name\n")
    assert twins.commit("a.txt", "") == 3
    (data / "docs" / "link.txt").unlink()
    assert twins.commit("docs/link.txt", "docs") == 4
    assert twins.subset.catalog.current(ROOT)[b"a.txt"].hard_link_group == 0


class SqliteWriter:
    """A database application in a process of its own, running one SQL statement per line.

    It must not share the store's process: closing any descriptor of the
    database there would drop the application's POSIX locks, and the
    store's copy would then check the WAL in as if it were the last user.
    """

    SCRIPT = (
        "import sqlite3, sys\n"
        "connection = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "for line in sys.stdin:\n"
        "    connection.execute(line)\n"
        "    print('done', flush=True)\n"
    )

    def __init__(self, database: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(database)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def execute(self, statement: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(statement + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "done\n"

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_sqlite_side_files_map_to_database(twins: Twins, journal_mode: str) -> None:
    writer = SqliteWriter(twins.data / "crm.db")
    try:
        writer.execute(f"PRAGMA journal_mode = {journal_mode}")
        writer.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        assert twins.commit("crm.db", "crm.db-journal", "crm.db-wal", "") == 2
        writer.execute("INSERT INTO customers (name) VALUES ('Alfreds')")
        # Rollback mode rewrites crm.db; WAL mode only appends to crm.db-wal.
        twins.commit("crm.db-journal", "crm.db-wal", "crm.db-shm")
        names = set(twins.subset.catalog.current(ROOT))
        assert b"crm.db" in names
        assert not {b"crm.db-journal", b"crm.db-wal", b"crm.db-shm"} & names
    finally:
        writer.close()


def test_subset_commit_restores(twins: Twins, tmp_path: Path) -> None:
    (twins.data / "many" / "f07.txt").write_text("changed content\n")
    sequence = twins.commit("many/f07.txt", "many")
    assert sequence == 2
    target = tmp_path / "out"
    result = restore(twins.subset, target, select(twins.subset, []), sequence)
    assert result.report.ok
    assert (target / ROOT / "many" / "f07.txt").read_text() == "changed content\n"
    assert (target / ROOT / "many" / "f08.txt").read_text() == "file 8\n"


def test_subset_scanner_matches_scan_root(tmp_path: Path) -> None:
    """Lookups reach what scan_root reaches: not under excluded dirs or through symlinks."""
    (tmp_path / "keep" / "deep").mkdir(parents=True)
    (tmp_path / "keep" / "deep" / "file").write_text("x")
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "file").write_text("x")
    (tmp_path / "via").symlink_to("keep")
    os.mkfifo(tmp_path / "keep" / "pipe")
    excluder = Excluder(["skip/"])
    everything = {entry.path: entry for entry in scan_root(tmp_path, excluder)}
    problems: list = []
    with SubsetScanner(tmp_path, excluder, problems) as scanner:
        for path in [b"keep/deep/file", b"keep", b"", b"via"]:
            found = scanner.lookup(path)
            assert found is not None
            assert found[0] == everything[path]
        for path in [b"skip/file", b"skip", b"via/deep/file", b"missing", b"keep/pipe"]:
            assert scanner.lookup(path) is None
        assert [entry.path for entry in scanner.walk(b"keep")] == [
            path for path in everything if path.startswith(b"keep")
        ]
    assert {(problem.path, problem.kind) for problem in problems} == {(b"keep/pipe", "special")}


def test_scan_changes_without_catalog_walks_root(tmp_path: Path) -> None:
    """With nothing committed yet, a changed path brings in the whole root."""
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "two.txt").write_text("2")
    (tmp_path / "three.txt").write_text("3")
    with CatalogIndex(":memory:") as catalog:
        found = scan_changes(catalog, ROOT, tmp_path, Excluder(()), {b"one/two.txt"})
    assert [entry.path for entry in found.entries] == [b"", b"one", b"one/two.txt", b"three.txt"]
    assert found.previous == {}


def test_catalog_queries_for_subsets(tmp_path: Path) -> None:
    """Child names and subtrees match whole components, whatever bytes sort near b"/"."""
    for name in ["a", "a-b", "a0", "b"]:
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "x").write_text("x")
    (tmp_path / "a" / "y").mkdir()
    (tmp_path / "a" / "y" / "z").write_text("z")
    (tmp_path / "a-b" / "w").write_text("w")
    os.link(tmp_path / "a" / "x", tmp_path / "b" / "x-link")
    entries = list(scan_root(tmp_path))
    groups = HardLinkGroups(1)
    records = tuple(version_from(ROOT, entry, None, groups.assign(entry)) for entry in entries)
    with CatalogIndex(":memory:") as catalog:
        catalog.apply(CommitDelta(1, 0, 1, (ROOT,), records))
        assert catalog.current_child_names(ROOT, b"") == {b"a", b"a-b", b"a0", b"b"}
        assert catalog.current_child_names(ROOT, b"a") == {b"x", b"y"}
        assert catalog.current_child_names(ROOT, b"a/y") == {b"z"}
        assert catalog.current_child_names(ROOT, b"a/x") == set()
        assert set(catalog.current_under(ROOT, b"a")) == {b"a", b"a/x", b"a/y", b"a/y/z"}
        assert set(catalog.current_versions(ROOT, [b"a0", b"nope", b"b/x-link"])) == {
            b"a0",
            b"b/x-link",
        }
        inode = os.stat(tmp_path / "a" / "x").st_ino
        assert catalog.current_linked(ROOT, [inode], ()) == {b"a/x", b"b/x-link"}
        group = catalog.current_versions(ROOT, [b"a/x"])[b"a/x"].hard_link_group
        assert catalog.current_linked(ROOT, (), [group]) == {b"a/x", b"b/x-link"}
        assert catalog.current_linked(ROOT, (), [0]) == set()
