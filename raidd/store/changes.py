"""Scan only the changed paths of a root, as a full scan would see them.

The daemon's watcher names the paths that changed; scanning only those
keeps a commit's cost proportional to the change, not to the root. The
result must be what a full scan would commit, so the set of paths grows
until it contains everything whose version the change can move:

- a path that is new, gone or replaced by another inode: its parent
  directory too (its mtime moved);
- a path ending in -journal, -wal or -shm: the database file beside it,
  and for any path, side files of it that the catalog has;
- a directory that is new or replaced (another inode, or a non-directory
  before): its whole subtree, because a directory renamed or moved in
  brings its contents without an event for each of them;
- a directory that is the same one as before: the names that are new in
  it or gone from it, by comparing its listing with the catalog;
- a path that is gone, or no longer reached (a parent excluded, replaced
  by a symlink): its previous version and everything under it;
- a file with more than one link, or whose previous version was in a
  hard-link group: every current path of the catalog with its inode or
  group, because a new or removed link moves the ctime of all of them
  and a snapshot must not mix group ids.

Every other path keeps its current version. The periodic rescans remain
the guarantee for changes that no event reported.

NOTE: a file that the backup skips (a large SQLite database copied
recently, an unreadable file) keeps its version until an event names it
again or the next full rescan, whereas a full scan retries it at every
commit.
"""

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from raidd.store.catalog import CatalogIndex
from raidd.store.catalog_format import Version
from raidd.store.scan import Entry, EntryType, Excluder, ScanProblem, SubsetScanner
from raidd.store.sqlite_copy import SIDECAR_SUFFIXES

__all__ = ["ChangeScan", "scan_changes"]


@dataclass
class ChangeScan:
    """The entries found at the changed paths, and the previous versions they cover.

    `previous` contains the current catalog version of every path whose
    presence the scan decided, so that a covered path missing from
    `entries` is a deletion, exactly as in a full scan.
    """

    entries: list[Entry]
    previous: dict[bytes, Version]


def parent_of(path: bytes) -> bytes:
    """Return the parent's relative path (b"" for the root's children)."""
    return path.rpartition(b"/")[0]


def _ancestors(path: bytes) -> Iterable[bytes]:
    while path:
        path = parent_of(path)
        yield path


def _database_of(path: bytes) -> bytes | None:
    """Return the database path that a -journal, -wal or -shm path belongs to, or None."""
    for suffix in SIDECAR_SUFFIXES:
        if path.endswith(suffix):
            base = path[: -len(suffix)]
            if base and not base.endswith(b"/"):
                return base
    return None


def _is_in_any(path: bytes, trees: Collection[bytes]) -> bool:
    """Return True when `path` or one of its ancestors is in `trees`."""
    return path in trees or any(ancestor in trees for ancestor in _ancestors(path))


class _ChangeScanner:
    def __init__(self, catalog: CatalogIndex, root_name: str, scanner: SubsetScanner) -> None:
        self.catalog = catalog
        self.root_name = root_name
        self.scanner = scanner
        self.entries: dict[bytes, Entry] = {}
        # Paths whose presence was decided, alone or with everything under them.
        self.covered: set[bytes] = set()
        self.covered_trees: set[bytes] = set()
        self.walked: set[bytes] = set()
        self.done: set[bytes] = set()
        self.known: dict[bytes, Version | None] = {}
        self.inodes: set[int] = set()
        self.groups: set[int] = set()

    def fetch(self, paths: Iterable[bytes]) -> None:
        """Fetch the current versions of `paths` that are not fetched yet."""
        missing = [path for path in set(paths) if path not in self.known]
        found = self.catalog.current_versions(self.root_name, missing)
        for path in missing:
            self.known[path] = found.get(path)

    def expand(self, paths: Collection[bytes]) -> set[bytes]:
        """Add to `paths` the database files of side files, and side files the catalog has."""
        wanted = set(paths)
        candidates = set()
        for path in paths:
            database = _database_of(path)
            if database is not None:
                wanted.add(database)
            elif path:
                candidates.update(path + suffix for suffix in SIDECAR_SUFFIXES)
        self.fetch(candidates)
        wanted.update(path for path in candidates if self.known[path] is not None)
        return wanted

    def run(self, changed: Collection[bytes]) -> None:
        pending = set(changed)
        while pending:
            batch = sorted(self.expand(pending) - self.done)
            self.fetch([*batch, *(a for path in batch for a in _ancestors(path))])
            pending = set()
            for path in batch:
                if path in self.done or _is_in_any(path, self.walked):
                    continue
                self.done.add(path)
                pending |= self.visit(path)
            # One query per round for the links of everything this round found.
            pending |= self.catalog.current_linked(self.root_name, self.inodes, self.groups)
            self.inodes.clear()
            self.groups.clear()
            pending -= self.done

    def visit(self, path: bytes) -> set[bytes]:
        """Scan one path and return the further paths that its change can have moved."""
        more: set[bytes] = set()
        # An ancestor the catalog does not have is new, and scanning it covers this path.
        more.update(a for a in _ancestors(path) if self.known.get(a) is None)
        previous = self.known.get(path)
        if previous is not None and previous.hard_link_group:
            self.groups.add(previous.hard_link_group)
        found = self.scanner.lookup(path)
        replaced = (
            found is None
            or previous is None
            or previous.type is not found[0].type
            or previous.inode != found[0].inode
        )
        if replaced and path:
            # Creating, removing or replacing a name moves its directory's mtime.
            more.add(parent_of(path))
        if found is None or found[0].type is not EntryType.DIRECTORY:
            self.cover(path, previous)
            if found is not None:
                self.add(found[0], more)
            return more
        entry, names = found
        if replaced:
            self.walked.add(path)
            self.covered_trees.add(path)
            for each in self.scanner.walk(path):
                self.add(each, more)
            return more
        self.covered.add(path)
        self.add(entry, more)
        known = self.catalog.current_child_names(self.root_name, path)
        for name in known.symmetric_difference(names):
            more.add(path + b"/" + name if path else name)
        return more

    def cover(self, path: bytes, previous: Version | None) -> None:
        """Mark a path that is no directory now as decided, and what was under it before."""
        # Only a directory has versions under it: a full scan records parents first.
        if previous is not None and previous.type is EntryType.DIRECTORY:
            self.covered_trees.add(path)
        else:
            self.covered.add(path)

    def add(self, entry: Entry, more: set[bytes]) -> None:
        self.entries[entry.path] = entry
        if entry.hard_link_key is not None:
            self.inodes.add(entry.inode)
        database = _database_of(entry.path)
        if database is not None:
            more.add(database)

    def result(self) -> ChangeScan:
        previous = self.catalog.current_versions(self.root_name, self.covered)
        for tree in self.covered_trees:
            if not any(ancestor in self.covered_trees for ancestor in _ancestors(tree)):
                previous.update(self.catalog.current_under(self.root_name, tree))
        entries = [self.entries[path] for path in sorted(self.entries)]
        return ChangeScan(entries, previous)


def scan_changes(
    catalog: CatalogIndex,
    root_name: str,
    root: bytes | str | os.PathLike[str],
    excluder: Excluder,
    changed: Collection[bytes],
    problems: list[ScanProblem] | None = None,
) -> ChangeScan:
    """Scan the changed paths of one root and what their change can have moved.

    Args:
        catalog: the catalog index, for the root's current versions.
        root_name: the root's name in the catalog.
        root: the root's directory (absolute path).
        excluder: the root's exclude patterns.
        changed: paths relative to the root (b"" for the root itself), as
            the watcher reported them.
        problems: receives a ScanProblem for each skipped entry.

    Raises:
        OSError: the root itself cannot be opened; the caller reports the root.
    """
    with SubsetScanner(root, excluder, problems) as scanner:
        state = _ChangeScanner(catalog, root_name, scanner)
        state.run(changed)
        return state.result()
